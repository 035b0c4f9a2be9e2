"""Human 2AFC evaluation: schedule, statistics, store, server, report, and a real browser.

The generate run is a real MLflow run in the temporary store, in the contract's layout
(``generated/<sample>/rank<r>_<wnid>_<n>.png``, ``stimuli/<sample>.png``, ``generation.csv``),
with small drawn images.  The browser test drives Debian's Chromium with selenium; it is
skipped (saying why) only when chromium/chromedriver or selenium are missing.  Set
``SBD_UPDATE_DOCS=1`` to refresh ``docs/humaneval.png`` from it.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from sbd.humaneval import report as report_mod
from sbd.humaneval.__main__ import main as cli_main
from sbd.humaneval.schedule import build_trials, check_relative_path, rater_schedule, read_generation_table
from sbd.humaneval.server import LOOPBACK_HOSTS, create_app, is_loopback, valid_rater
from sbd.humaneval.stats import binomial_summary, fleiss_kappa, pairwise_agreement, summarize
from sbd.humaneval.store import OutOfOrder
from sbd.humaneval.study import open_study, study_dir

REPO = Path(__file__).resolve().parents[1]
SHAPES = ["triangle", "square", "pentagon", "hexagon", "octagon", "star", "circle", "ring",
          "cross", "diamond", "bar", "crescent"]
COLORS = ["#c0392b", "#2471a3", "#229954", "#d4ac0d", "#7d3c98", "#ca6f1e"]


# --------------------------------------------------------------------------- fixtures
def _draw(shape: str, color: str, seed: int, size: int = 96, blur: float = 0.0) -> Image.Image:
    """A small picture of ``shape`` on a light, slightly noisy background."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(215, 250, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    c = size / 2 + rng.uniform(-6, 6, 2)
    r = size * rng.uniform(0.3, 0.38)
    rot = rng.uniform(0, 360)
    sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6, "octagon": 8, "diamond": 4}
    if shape in sides:
        d.regular_polygon((c[0], c[1], r), sides[shape], rotation=rot if shape != "diamond" else 45, fill=color)
    elif shape == "star":
        pts = [(c[0] + (r if i % 2 == 0 else r / 2.4) * math.cos(math.radians(rot + 36 * i)),
                c[1] + (r if i % 2 == 0 else r / 2.4) * math.sin(math.radians(rot + 36 * i))) for i in range(10)]
        d.polygon(pts, fill=color)
    elif shape in ("circle", "ring", "crescent"):
        d.ellipse((c[0] - r, c[1] - r, c[0] + r, c[1] + r), fill=color)
        if shape == "ring":
            d.ellipse((c[0] - r / 2, c[1] - r / 2, c[0] + r / 2, c[1] + r / 2), fill=bg)
        if shape == "crescent":
            d.ellipse((c[0] - r / 2, c[1] - r, c[0] + 1.5 * r, c[1] + r), fill=bg)
    elif shape == "cross":
        d.rectangle((c[0] - r, c[1] - r / 3, c[0] + r, c[1] + r / 3), fill=color)
        d.rectangle((c[0] - r / 3, c[1] - r, c[0] + r / 3, c[1] + r), fill=color)
    elif shape == "bar":
        d.rectangle((c[0] - r, c[1] - r / 4, c[0] + r, c[1] + r / 4), fill=color)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur else img


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    """A generate run (12 samples, top-2 images each) + its evaluate run + a small bank."""
    n = len(SHAPES)
    wnids = [f"n{1000001 + 7 * i:08d}" for i in range(n)]
    bank = tmp_path_factory.mktemp("data") / "imagenet" / "train"
    for i, w in enumerate(wnids):
        (bank / w).mkdir(parents=True)
        _draw(SHAPES[i], COLORS[(i + 3) % len(COLORS)], 500 + i).save(bank / w / f"{w}_1.JPEG")
    rows = []
    with mlflow.start_run(run_name="generate") as run:
        mlflow.log_params({"dataset": "phantom", "data_dir": str(bank.parents[1]), "generator": "tiny", "top_k": 2})
        mlflow.set_tags({"sbd.entry_point": "generate", "sbd.dataset": "phantom"})
        for i in range(n):
            sid = f"s{i:02d}"
            color = COLORS[i % len(COLORS)]
            mlflow.log_image(_draw(SHAPES[i], color, i), artifact_file=f"stimuli/{sid}.png")
            decoded = [wnids[i], wnids[(i + 1) % n]]
            paths = []
            for r, (w, shape) in enumerate([(decoded[0], SHAPES[i]), (decoded[1], SHAPES[(i + 1) % n])], start=1):
                p = f"generated/{sid}/rank{r}_{w}_0.png"
                mlflow.log_image(_draw(shape, color, 100 + 10 * i + r, blur=1.2), artifact_file=p)
                paths.append(p)
            rows.append({"sample_id": sid, "image_id": f"{wnids[i]}_{i + 1}", "true_wnid": wnids[i],
                         "true_name": SHAPES[i], "decoded_wnids": ";".join(decoded),
                         "decoded_names": ";".join([SHAPES[i], SHAPES[(i + 1) % n]]), "scores": "0.9;0.1",
                         "image_paths": ";".join(paths), "stimulus_path": f"stimuli/{sid}.png"})
        csv_dir = tmp_path_factory.mktemp("csv")
        pd.DataFrame(rows).to_csv(csv_dir / "generation.csv", index=False)
        mlflow.log_artifact(str(csv_dir / "generation.csv"))
    with mlflow.start_run(run_name="evaluate") as ev:
        mlflow.log_param("generate_run", run.info.run_id)
        mlflow.set_tag("sbd.entry_point", "evaluate")
        mlflow.log_metrics({"test/judge2afc_acc": 0.75, "test/judge2afc_n": 12})
    return {"run_id": run.info.run_id, "n": n, "bank": bank, "rows": rows, "eval_run_id": ev.info.run_id}


@pytest.fixture
def study(gen_run, tmp_path):
    return open_study(gen_run["run_id"], store_dir=tmp_path / "study")


@contextmanager
def live_server(app):
    """``app`` on a threaded WSGI server on a free loopback port; yields its base URL."""
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)


def _login(client, rater: str, token: str | None = None):
    data = {"rater": rater} if token is None else {"rater": rater, "token": token}
    return client.post("/start", data=data)


# --------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("n", [1, 2, 7, 12, 51])
def test_schedule_balanced_seeded_each_trial_once(n):
    raters = ["alice", "bob", "carol", "dave"]
    for rater in raters:
        sched = rater_schedule(n, rater, seed=3)
        assert sorted(t for t, _ in sched) == list(range(n))           # every pair once
        n_left = sum(s == "left" for _, s in sched)
        assert n_left in (n // 2, (n + 1) // 2)                        # balanced sides
        assert sched == rater_schedule(n, rater, seed=3)                # seeded
    if n >= 7:
        assert rater_schedule(n, "alice", 3) != rater_schedule(n, "bob", 3)
        assert rater_schedule(n, "alice", 3) != rater_schedule(n, "alice", 4)
    with pytest.raises(ValueError, match="n_trials"):
        rater_schedule(0, "alice")


def test_odd_count_extra_side_is_drawn():
    extra_left = [sum(s == "left" for _, s in rater_schedule(7, f"r{i}", 0)) == 4 for i in range(60)]
    assert 10 < sum(extra_left) < 50


def test_trials_generated_foils(gen_run):
    table = pd.DataFrame(gen_run["rows"])
    trials = build_trials(table, foil="generated", seed=0)
    assert [t.trial_id for t in trials] == list(range(gen_run["n"]))
    targets = {t.sample_id: t.target for t in trials}
    for t in trials:
        assert t.target.startswith(f"generated/{t.sample_id}/rank1_")
        assert t.foil_sample_id != t.sample_id and t.foil == targets[t.foil_sample_id]
    assert sorted(t.foil_sample_id for t in trials) == sorted(targets)  # each target once as a foil
    assert trials == build_trials(table, foil="generated", seed=0)
    assert trials != build_trials(table, foil="generated", seed=1)
    with pytest.raises(ValueError, match="Unknown foil"):
        build_trials(table, foil="random")


def test_trials_bank_foils(gen_run):
    table = pd.DataFrame(gen_run["rows"])
    trials = build_trials(table, foil="bank", seed=0, bank_dir=gen_run["bank"])
    for t in trials:
        wnid = t.foil.split("/")[0]
        assert wnid != t.true_wnid and (gen_run["bank"] / t.foil).is_file()
    with pytest.raises(ValueError, match="bank folder"):
        build_trials(table, foil="bank", bank_dir=gen_run["bank"] / "missing")


@pytest.mark.parametrize("bad", ["../x.png", "/etc/passwd.png", "a/../../b.png", "a\\b.png", "stimuli/x.txt",
                                 "", "a//b.png", "./a.png"])
def test_unsafe_artifact_paths_refused(gen_run, bad, tmp_path):
    with pytest.raises(ValueError, match="Unsafe"):
        check_relative_path(bad, "stimulus")
    table = pd.DataFrame(gen_run["rows"])
    table.loc[0, "stimulus_path"] = bad or "x"
    with pytest.raises(ValueError):
        build_trials(table)
    table.drop(columns="stimulus_path").to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match="missing columns"):
        read_generation_table(tmp_path / "g.csv")


# --------------------------------------------------------------------------- statistics
def test_binomial_against_hand_values():
    b = binomial_summary(8, 10)
    assert b.acc == 0.8
    assert b.p == pytest.approx((45 + 10 + 1) / 1024)                  # P(X >= 8), X ~ Bin(10, 1/2)
    assert (b.ci_low, b.ci_high) == pytest.approx((0.44390454, 0.97478927), abs=1e-7)  # Clopper-Pearson
    b = binomial_summary(10, 10)
    assert b.p == pytest.approx(1 / 1024) and b.ci_high == 1.0 and b.ci_low == pytest.approx(0.025 ** 0.1)
    assert binomial_summary(0, 4).p == 1.0 and binomial_summary(0, 4).ci_low == 0.0
    assert math.isnan(binomial_summary(0, 0).acc)
    with pytest.raises(ValueError):
        binomial_summary(5, 4)


def test_fleiss_kappa_against_hand_values():
    # Wikipedia's worked example (10 items, 14 raters, 5 categories): P = 0.378, Pe = 0.213, kappa = 0.210
    wiki = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(wiki) == pytest.approx(0.20993, abs=1e-5)
    # 2 raters, 4 items: P_i = 1, 1, 0, 1 -> 3/4; p = (5/8, 3/8) -> Pe = 34/64; kappa = (3/4 - 17/32) / (15/32) = 7/15
    assert fleiss_kappa([[2, 0], [0, 2], [1, 1], [2, 0]]) == pytest.approx(7 / 15)
    assert fleiss_kappa([[1, 0], [2, 0], [3, 0]]) != fleiss_kappa([[1, 0], [2, 0], [3, 0]])  # NaN: one category only
    assert fleiss_kappa([[2, 0], [0, 2], [1, 1], [2, 0], [1, 0]]) == pytest.approx(7 / 15)  # 1-rater item dropped


def test_pairwise_agreement_and_summary():
    nan = float("nan")
    chosen = pd.DataFrame([[1, 1, 0, nan], [1, 0, 0, 1], [nan, 0, 0, 1]], index=["a", "b", "c"])
    # a-b: trials 0,1,2 -> same, differ, same (2/3); a-c: trials 1,2 -> differ, same (1/2); b-c: 1,2,3 -> 3/3
    agreement, pairs, n = pairwise_agreement(chosen)
    assert (pairs, n) == (3, 8) and agreement == pytest.approx(6 / 8)

    answers = pd.DataFrame([(r, t, c) for r, row in chosen.iterrows() for t, c in row.items() if c == c],
                           columns=["rater", "trial_id", "correct"])
    per_rater, overall = summarize(answers)
    assert per_rater["rater"].tolist() == ["a", "b", "c"]
    assert per_rater["k"].tolist() == [2, 2, 1] and per_rater["n"].tolist() == [3, 4, 3]
    assert per_rater["p"].tolist() == pytest.approx([4 / 8, 11 / 16, 7 / 8])   # P(X >= k), X ~ Bin(n, 1/2)
    assert overall["k"] == 5 and overall["n"] == 10 and overall["acc"] == 0.5
    assert overall["p"] == pytest.approx((252 + 210 + 120 + 45 + 10 + 1) / 1024)
    assert overall["agreement"] == pytest.approx(0.75) and overall["n_trials"] == 4 and overall["n_raters"] == 3
    # Fleiss over trials with >= 2 raters: counts (target, foil) = (2,0), (1,2), (0,3), (2,0)
    assert overall["fleiss_kappa"] == pytest.approx(fleiss_kappa([[2, 0], [1, 2], [0, 3], [2, 0]]))


# --------------------------------------------------------------------------- store
def test_store_append_only_wal_and_order(study):
    store = study.store
    with store.connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.ensure_rater("alice", study.seed)
    store.ensure_rater("alice", study.seed)                             # idempotent
    prog = store.progress("alice")
    assert prog["answered"] == 0 and prog["total"] == 12 and prog["position"] == 0
    with pytest.raises(OutOfOrder):
        store.record_answer("alice", (prog["trial_id"] + 1) % 12, "left")
    with pytest.raises(ValueError, match="Unknown choice"):
        store.record_answer("alice", prog["trial_id"], "up")
    with pytest.raises(ValueError, match="Unknown rater"):
        store.record_answer("mallory", prog["trial_id"], "left")
    row = store.record_answer("alice", prog["trial_id"], prog["target_side"], rt_ms=812)
    assert row["correct"] == 1 and row["chosen"] == "target" and row["position"] == 0
    trial = store.trial(prog["trial_id"])
    assert (row["left_image"], row["right_image"]) == ((trial.target, trial.foil) if prog["target_side"] == "left"
                                                       else (trial.foil, trial.target))
    with pytest.raises(OutOfOrder):                                    # a double key press
        store.record_answer("alice", prog["trial_id"], "left")
    con = sqlite3.connect(store.path)
    for sql in ("UPDATE answers SET correct = 0", "DELETE FROM answers"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    assert len(store.answers()) == 1


def test_store_refuses_other_seed_and_missing(gen_run, study, tmp_path):
    with pytest.raises(ValueError, match="seed=0"):
        open_study(gen_run["run_id"], seed=5, store_dir=study.root)
    assert open_study(gen_run["run_id"], store_dir=study.root).seed == 0   # reopened, same trials
    with pytest.raises(ValueError, match="serve it first"):
        open_study(gen_run["run_id"], store_dir=tmp_path / "none", create=False)
    with pytest.raises(ValueError, match="No MLflow run"):
        open_study("0" * 32, store_dir=tmp_path / "x")


def test_study_folder_beside_local_artifacts(gen_run, monkeypatch):
    monkeypatch.delenv("SBD_HUMANEVAL_DIR", raising=False)
    run = mlflow.MlflowClient().get_run(gen_run["run_id"])
    root = study_dir(gen_run["run_id"])
    assert root.name == "humaneval" and (root.parent / "artifacts").is_dir()
    assert run.info.run_id in str(root)
    monkeypatch.setenv("SBD_HUMANEVAL_DIR", "/somewhere")
    assert study_dir(gen_run["run_id"]) == Path("/somewhere") / gen_run["run_id"]


# --------------------------------------------------------------------------- server
def test_start_page_and_validation(study):
    client = create_app(study).test_client()
    assert b"Your name" in client.get("/").data
    for bad in ["", " ", "-x", "a" * 41, "<script>", "a/b", "x\ny"]:
        assert _login(client, bad).status_code == 400
    assert client.get("/rate").status_code == 302                     # no session yet
    assert client.get("/api/next").status_code == 401
    assert client.get("/img/0/left").status_code == 401
    assert valid_rater("  Zoë K. ") == "Zoë K."
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    local = create_app(study, trusted_hosts=LOOPBACK_HOSTS).test_client()
    assert local.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert local.get("/", headers={"Host": "evil.example:8765"}).status_code == 400   # DNS rebinding


def test_token_required(study):
    client = create_app(study, token="s3cret").test_client()
    assert b"Access token" in client.get("/").data
    assert _login(client, "alice").status_code == 403
    assert _login(client, "alice", token="wrong").status_code == 403
    assert client.get("/api/next").status_code == 401
    assert _login(client, "alice", token="s3cret").status_code == 303
    assert client.get("/api/next").status_code == 200
    # the same cookie is refused by a server started with another token
    other = create_app(study, token="other").test_client()
    other.set_cookie("sbd_humaneval_generated", client.get_cookie("sbd_humaneval_generated").value)
    assert other.get("/api/next").status_code == 401


def test_answer_flow_images_and_resume(study):
    app = create_app(study)
    client = app.test_client()
    assert _login(client, "bob").status_code == 303
    nxt = client.get("/api/next").get_json()
    assert nxt["answered"] == 0 and nxt["total"] == 12 and not nxt["done"]
    tid = nxt["trial_id"]
    trial = study.store.trial(tid)
    side = study.store.target_side("bob", tid)
    left = client.get(nxt["images"]["left"])
    assert left.status_code == 200 and left.mimetype == "image/png" and left.headers["Cache-Control"] == "no-store"
    expected = study.image_file(trial, "target" if side == "left" else "foil").read_bytes()
    assert left.data == expected
    assert client.get(nxt["images"]["stimulus"]).data == study.image_file(trial, "stimulus").read_bytes()
    assert "target" not in json.dumps(nxt) and "foil" not in json.dumps(nxt)   # the page cannot tell
    for body, status in [("{", 400), (json.dumps([1]), 400), (json.dumps({"trial_id": tid, "choice": "up"}), 400),
                         (json.dumps({"trial_id": True, "choice": "left"}), 400),
                         (json.dumps({"trial_id": 99, "choice": "left"}), 400),
                         (json.dumps({"trial_id": tid, "choice": "left", "rt_ms": -5}), 400),
                         (json.dumps({"trial_id": tid, "choice": "left", "rt_ms": "fast"}), 400)]:
        assert client.post("/api/answer", data=body, content_type="application/json").status_code == status
    assert client.post("/api/answer", data={"trial_id": tid, "choice": "left"}).status_code == 400  # form post
    r = client.post("/api/answer", json={"trial_id": tid, "choice": "left", "rt_ms": 640.4})
    assert r.status_code == 200 and r.get_json()["answered"] == 1
    dup = client.post("/api/answer", json={"trial_id": tid, "choice": "right"})
    assert dup.status_code == 409 and dup.get_json()["next"]["answered"] == 1
    row = study.store.answers().iloc[0]
    assert row["rt_ms"] == 640 and row["choice"] == "left" and row["shown_at"] <= row["answered_at"]
    # a new browser (no cookie) with the same name continues where bob stopped
    again = app.test_client()
    _login(again, "bob")
    assert again.get("/api/next").get_json()["answered"] == 1


TRAVERSALS = ["/img/0/../../../../etc/passwd", "/img/0/..%2F..%2F..%2Fetc%2Fpasswd",
              "/img/..%2F..%2Fanswers-generated.sqlite/left", "/img/0/target", "/img/0/foil", "/img/-1/left",
              "/img/99/left", "/img/0/left/../../../answers-generated.sqlite", "/static/../store.py",
              "/static/..%2Fstore.py", "/static/%2e%2e/study.py", "/img/0/%2e%2e%2f%2e%2e%2fetc%2fpasswd"]


def test_path_traversal_refused(study):
    app = create_app(study)
    with live_server(app) as base:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(base + "/start", data=urllib.parse.urlencode({"rater": "eve"}).encode()).read()
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        host = urllib.parse.urlparse(base).netloc
        for path in TRAVERSALS:
            con = http.client.HTTPConnection(host, timeout=10)
            con.request("GET", path, headers={"Cookie": cookie})     # sent raw, not normalised
            resp = con.getresponse()
            body = resp.read()
            con.close()
            assert resp.status in (400, 404), (path, resp.status)
            assert b"root:" not in body and b"SQLite format" not in body and b"import" not in body


def test_concurrent_raters_lose_no_answer(study):
    app = create_app(study)
    raters = [f"rater{i}" for i in range(4)]
    errors: list[Exception] = []

    def rate(name: str) -> None:
        try:
            jar = CookieJar()
            op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            op.open(base + "/start", data=urllib.parse.urlencode({"rater": name}).encode()).read()
            nxt = json.loads(op.open(base + "/api/next").read())
            while not nxt["done"]:
                body = json.dumps({"trial_id": nxt["trial_id"], "choice": "left"}).encode()
                req = urllib.request.Request(base + "/api/answer", data=body,
                                             headers={"Content-Type": "application/json"})
                # the same answer twice at once (a double click): exactly one must count
                results = []
                pair = [threading.Thread(target=lambda: results.append(_post(op, req))) for _ in range(2)]
                for t in pair:
                    t.start()
                for t in pair:
                    t.join()
                assert sorted(s for s, _ in results) == [200, 409], results
                nxt = next(d for s, d in results if s == 200)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    with live_server(app) as base:
        threads = [threading.Thread(target=rate, args=(r,)) for r in raters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors, errors
    answers = study.store.answers()
    assert len(answers) == 4 * 12
    assert answers.groupby("rater")["trial_id"].nunique().tolist() == [12] * 4
    assert answers.groupby("rater")["position"].apply(sorted).tolist() == [list(range(12))] * 4


def _post(opener, req) -> tuple[int, dict]:
    try:
        with opener.open(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --------------------------------------------------------------------------- report
def test_report_logs_to_run(gen_run, study):
    store = study.store
    correct = {"ann": [1] * 10 + [0] * 2, "ben": [1] * 9 + [0] * 3}
    for rater, pattern in correct.items():
        store.ensure_rater(rater, study.seed)
        for c in pattern:
            p = store.progress(rater)
            side = p["target_side"] if c else ("right" if p["target_side"] == "left" else "left")
            store.record_answer(rater, p["trial_id"], side)
    result = report_mod.report(gen_run["run_id"], store_dir=study.root)
    m = mlflow.MlflowClient().get_run(gen_run["run_id"]).data.metrics
    assert m["human/n_answers"] == 24 and m["human/n_raters"] == 2
    assert m["human/2afc_acc"] == pytest.approx(19 / 24)
    from scipy.stats import binom

    assert m["human/2afc_p"] == pytest.approx(binom.sf(18, 24, 0.5))
    assert m["human/2afc_ci_low"] < 19 / 24 < m["human/2afc_ci_high"]
    assert 0 <= m["human/agreement"] <= 1 and "human/fleiss_kappa" in m
    assert result["judge_run_id"] == gen_run["eval_run_id"] and result["judge_acc"] == 0.75
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(gen_run["run_id"], "humaneval")}
    assert {"humaneval/2afc_generated.png", "humaneval/answers_generated.csv",
            "humaneval/raters_generated.csv", "humaneval/report_generated.json"} <= arts
    # CLI: export and a print-only report
    out = study.root / "export.csv"
    assert cli_main(["export", "--run-id", gen_run["run_id"], "--store", str(study.root), "--out", str(out)]) == 0
    exported = pd.read_csv(out)
    assert len(exported) == 24 and {"target_side", "left_image", "right_image", "shown_at",
                                    "answered_at", "position"} <= set(exported.columns)
    assert cli_main(["report", "--run-id", gen_run["run_id"], "--store", str(study.root), "--no-log"]) == 0
    assert cli_main(["report", "--run-id", gen_run["run_id"], "--store", str(study.root / "none")]) == 2


def test_bank_foil_study(gen_run, tmp_path):
    st = open_study(gen_run["run_id"], foil="bank", store_dir=tmp_path)   # data_dir from the run's params
    assert st.store.path.name == "answers-bank.sqlite"
    t = st.store.trial(0)
    assert t.foil_kind == "bank" and st.image_file(t, "foil").is_file()
    assert st.image_file(t, "foil").is_relative_to(tmp_path / "cache" / "bank")


# --------------------------------------------------------------------------- browser
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=900,780"]


@pytest.fixture
def browser(tmp_path, monkeypatch):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium + chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")                           # never let selenium-manager download
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_keyboard_resume_and_report(gen_run, study, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException

    # a loaded 2-core CI machine; a page being replaced (login, reload) leaves the body
    # element found a moment before stale: look again instead of failing
    wait = WebDriverWait(browser, 30, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,))

    def ready(answered: int) -> None:
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
                   and d.find_element(By.TAG_NAME, "body").get_attribute("data-answered") == str(answered))
        assert browser.find_element(By.ID, "progress").text == f"{answered + 1} / 12"

    def login(name: str) -> None:
        browser.find_element(By.ID, "rater").send_keys(name)
        browser.find_element(By.ID, "start").click()

    with live_server(create_app(study)) as base:
        browser.get(base + "/")
        login("alice")
        keys = []
        for i in range(10):
            ready(i)
            if i == 2:
                shot = tmp_path / "humaneval.png"
                browser.save_screenshot(str(shot))
            key = "left" if i % 3 else "right"
            ActionChains(browser).send_keys(Keys.ARROW_LEFT if key == "left" else Keys.ARROW_RIGHT).perform()
            keys.append(key)
        ready(10)
        browser.refresh()                                               # reload: resumes at trial 11
        ready(10)
        browser.delete_all_cookies()                                    # tab closed, cookie gone: same name resumes
        browser.get(base + "/")
        login("alice")
        ready(10)
        for i in (10, 11):
            ready(i)
            browser.find_element(By.ID, "choice-left").click()
            keys.append("left")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        assert browser.find_element(By.ID, "done").is_displayed()
        assert browser.find_element(By.ID, "progress").text == "done 12 / 12"

    answers = study.store.answers()
    assert len(answers) == 12 and set(answers["rater"]) == {"alice"}
    assert answers["position"].tolist() == list(range(12))
    assert answers["choice"].tolist() == keys
    assert answers["trial_id"].tolist() == [t for t, _ in rater_schedule(12, "alice", study.seed)]
    assert (answers["correct"] == (answers["choice"] == answers["target_side"])).all()
    assert answers["rt_ms"].notna().all() and answers["shown_at"].notna().all()
    result = report_mod.report(gen_run["run_id"], store_dir=study.root, log=False)
    assert result["metrics"]["human/n_answers"] == 12
    assert result["metrics"]["human/2afc_acc"] == pytest.approx(answers["correct"].mean())

    img = Image.open(shot).convert("RGB")
    assert img.size[0] >= 800
    small = tmp_path / "humaneval_small.png"
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(small, optimize=True)
    if os.environ.get("SBD_UPDATE_DOCS"):
        shutil.copyfile(small, REPO / "docs" / "humaneval.png")
