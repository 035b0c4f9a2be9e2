"""The rating web page (Flask, which MLflow already brings).

Routes::

    GET  /                  start page: rater name (+ access token when one is set)
    POST /start             opens the rater's session (signed cookie) → /rate
    GET  /rate              the trial page (static/rate.js drives it)
    GET  /api/next          JSON: the rater's current trial and progress
    POST /api/answer        JSON {trial_id, choice: "left"|"right", rt_ms} → next trial
    GET  /img/<trial_id>/<stimulus|left|right>   the images of one of the rater's trials
    POST /logout            ends the session

Images are looked up by (rater, trial id, slot) in the study database and sent from the
study's cache; no client-supplied path ever reaches the file system.  Which slot holds the
target is known only to the server.  The session cookie is signed with a key stored in
the study database (sessions survive restarts), HttpOnly and SameSite=Strict; answers
must be JSON posts (no cross-site form posts).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import socket
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, send_file, session, url_for

from sbd.humaneval.store import OutOfOrder
from sbd.humaneval.study import Study

log = logging.getLogger(__name__)

RATER_RE = re.compile(r"^\w[\w .@-]{0,39}$")
SLOTS = ("stimulus", "left", "right")
MAX_RT_MS = 24 * 3600 * 1000
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def valid_rater(name: str) -> str:
    """The stripped rater name, or ValueError: 1–40 letters, digits, space, ``_ . @ -``."""
    name = (name or "").strip()
    if not RATER_RE.fullmatch(name):
        raise ValueError("A rater name is 1–40 letters, digits, spaces or _ . @ - and starts with a letter or digit.")
    return name


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1", "[::1]"]


class _Raters:
    """The rater side of a study's app: who is asking (session + token) and their next trial."""

    def __init__(self, study: Study, token: str | None):
        self.study, self.store = study, study.store
        self.token_digest = _token_digest(token) if token else None
        self.n_trials = self.store.n_trials()

    def current(self) -> str | None:
        rater = session.get("rater")
        if not isinstance(rater, str) or not self.store.has_rater(rater):
            return None
        if self.token_digest and not hmac.compare_digest(session.get("auth", ""), self.token_digest):
            return None
        return rater

    def next_trial(self, rater: str) -> dict[str, Any]:
        prog = self.store.progress(rater)
        out: dict[str, Any] = {"rater": rater, "answered": prog["answered"], "total": prog["total"],
                               "done": prog["trial_id"] is None}
        if not out["done"]:
            tid = prog["trial_id"]
            self.store.mark_served(rater, tid)
            out.update(trial_id=tid, position=prog["position"],
                       images={s: url_for("image", trial_id=tid, slot=s) for s in SLOTS})
        return out

    def start_page(self, error: str | None = None, token: str = ""):
        return render_template("start.html", needs_token=bool(self.token_digest), error=error,
                               token=token, n_trials=self.n_trials, foil=self.study.foil)


def _api_error(status: int, message: str, **extra: Any):
    return jsonify({"error": message, **extra}), status


def _answer_fields(data: Any, n_trials: int) -> tuple[int, str, int | None]:
    """``(trial_id, choice, rt_ms)`` of an answer's JSON body; ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("Expected a JSON object {trial_id, choice, rt_ms}.")
    trial_id, choice, rt_ms = data.get("trial_id"), data.get("choice"), data.get("rt_ms")
    if not isinstance(trial_id, int) or isinstance(trial_id, bool) or not 0 <= trial_id < n_trials:
        raise ValueError(f"trial_id must be an integer in [0, {n_trials}).")
    if choice not in ("left", "right"):
        raise ValueError("choice must be 'left' or 'right'.")
    if rt_ms is not None:
        if not isinstance(rt_ms, (int, float)) or isinstance(rt_ms, bool) or not 0 <= rt_ms <= MAX_RT_MS:
            raise ValueError(f"rt_ms must be a number of milliseconds in [0, {MAX_RT_MS}] or null.")
        rt_ms = int(round(rt_ms))
    return trial_id, choice, rt_ms


def _secure_headers(resp):
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self'; script-src 'self'; "
                                               "style-src 'self'; frame-ancestors 'none'")
    return resp


def create_app(study: Study, token: str | None = None, trusted_hosts: list[str] | None = None) -> Flask:
    """The Flask app serving ``study``: the pages (:func:`_add_pages`) and the rating API
    (:func:`_add_api`).

    ``token`` (optional) is required from every rater; ``trusted_hosts`` (optional) are the
    only ``Host`` headers answered (others get 400: no DNS rebinding onto a loopback server).
    """
    app = Flask(__name__)
    meta = study.store.meta()
    app.config.update(TRUSTED_HOSTS=trusted_hosts, SECRET_KEY=bytes.fromhex(meta["secret_key"]), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_NAME=f"sbd_humaneval_{study.foil}",
                      PERMANENT_SESSION_LIFETIME=timedelta(days=30), MAX_CONTENT_LENGTH=16 * 1024)
    app.after_request(_secure_headers)
    raters = _Raters(study, token)
    _add_pages(app, raters)
    _add_api(app, raters)
    return app


def _add_pages(app: Flask, raters: _Raters) -> None:
    """``/`` (start form), ``/start``, ``/logout`` and ``/rate`` (the rating page)."""
    @app.get("/")
    def index():
        if raters.current():
            return redirect(url_for("rate"))
        return raters.start_page(token=request.args.get("token", ""))

    @app.post("/start")
    def start():
        given = request.form.get("token", "")
        try:
            rater = valid_rater(request.form.get("rater", ""))
            if raters.token_digest and not hmac.compare_digest(_token_digest(given),
                                                               raters.token_digest):
                raise PermissionError("Wrong or missing access token.")
        except (ValueError, PermissionError) as e:
            status = 403 if isinstance(e, PermissionError) else 400
            return raters.start_page(error=str(e), token=given), status
        raters.store.ensure_rater(rater, raters.study.seed)
        session.clear()
        session.permanent = True
        session["rater"] = rater
        if raters.token_digest:
            session["auth"] = raters.token_digest
        log.info("rater %r started (%s)", rater, request.remote_addr)
        return redirect(url_for("rate"), code=303)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("index"), code=303)

    @app.get("/rate")
    def rate():
        rater = raters.current()
        if not rater:
            return redirect(url_for("index"))
        return render_template("rate.html", rater=rater, n_trials=raters.n_trials)


def _add_api(app: Flask, raters: _Raters) -> None:
    """``/api/next``, ``/api/answer`` (JSON) and ``/img/<trial>/<slot>`` (a trial's images)."""
    store = raters.store

    @app.get("/api/next")
    def api_next():
        rater = raters.current()
        if not rater:
            return _api_error(401, "No rater session; open / first.")
        return jsonify(raters.next_trial(rater))

    @app.post("/api/answer")
    def api_answer():
        rater = raters.current()
        if not rater:
            return _api_error(401, "No rater session; open / first.")
        try:
            if not request.is_json:
                raise ValueError("Expected a JSON object {trial_id, choice, rt_ms}.")
            trial_id, choice, rt_ms = _answer_fields(request.get_json(silent=True), raters.n_trials)
        except ValueError as e:
            return _api_error(400, str(e))
        try:
            store.record_answer(rater, trial_id, choice, rt_ms, request.headers.get("User-Agent", ""))
        except OutOfOrder as e:
            return _api_error(409, str(e), next=raters.next_trial(rater))
        return jsonify(raters.next_trial(rater))

    @app.get("/img/<int:trial_id>/<slot>")
    def image(trial_id: int, slot: str):
        rater = raters.current()
        if not rater:
            return _api_error(401, "No rater session.")
        side = store.target_side(rater, trial_id) if slot in SLOTS else None
        trial = store.trial(trial_id) if side else None
        if trial is None:
            return _api_error(404, "No such image.")
        role = "stimulus" if slot == "stimulus" else ("target" if slot == side else "foil")
        path = raters.study.image_file(trial, role)
        resp = send_file(path, mimetype=MIME.get(path.suffix.lower(), "application/octet-stream"),
                         max_age=0, conditional=False, etag=False)
        resp.headers["Cache-Control"] = "no-store"
        return resp


def serve(study: Study, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve ``study`` until interrupted (threaded WSGI server; fine for a few raters).

    Beyond loopback an access token is required: without ``token`` one is generated
    and printed with the URL to hand to raters.
    """
    from werkzeug.serving import make_server

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(12)
    app = create_app(study, token, trusted_hosts=LOOPBACK_HOSTS if is_loopback(host) else None)
    server = make_server(host, port, app, threaded=True)
    shown_host = socket.getfqdn() if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    url = f"http://{shown_host}:{server.server_port}/" + (f"?token={token}" if token else "")
    print(f"Human 2AFC study of run {study.run_id} (foil={study.foil}, {study.store.n_trials()} trials, "
          f"answers in {study.store.path})\nRaters open: {url}\nCtrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
