"""SQLite store of a human study: its trials, each rater's schedule, and the answers.

One file per (generate run, foil), in WAL mode so that readers never block the writer.
Every request opens its own connection; every write is one ``BEGIN IMMEDIATE``
transaction, so concurrent raters never lose an answer.  The ``answers`` table is
append-only (triggers refuse UPDATE and DELETE); one row per answer with the trial's
position in the rater's order, the displayed order (target side, left and right images),
the choice, server timestamps (first shown, answered) and the client's reaction time.
"""

from __future__ import annotations

import csv
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from sbd.files import staged_path
from sbd.humaneval.schedule import SIDES, Trial, rater_schedule

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY, sample_id TEXT NOT NULL, image_id TEXT NOT NULL,
    true_wnid TEXT NOT NULL, true_name TEXT NOT NULL, stimulus TEXT NOT NULL,
    target TEXT NOT NULL, foil TEXT NOT NULL, foil_kind TEXT NOT NULL, foil_sample_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (rater TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedule (
    rater TEXT NOT NULL REFERENCES raters(rater), position INTEGER NOT NULL,
    trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    target_side TEXT NOT NULL CHECK (target_side IN ('left', 'right')),
    PRIMARY KEY (rater, position), UNIQUE (rater, trial_id));
CREATE TABLE IF NOT EXISTS served (
    rater TEXT NOT NULL, trial_id INTEGER NOT NULL, served_at TEXT NOT NULL,
    PRIMARY KEY (rater, trial_id));
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, trial_id INTEGER NOT NULL,
    position INTEGER NOT NULL, sample_id TEXT NOT NULL, foil_kind TEXT NOT NULL,
    target_side TEXT NOT NULL, left_image TEXT NOT NULL, right_image TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    chosen TEXT NOT NULL CHECK (chosen IN ('target', 'foil')),
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    rt_ms INTEGER, shown_at TEXT, answered_at TEXT NOT NULL, client TEXT NOT NULL,
    UNIQUE (rater, trial_id),
    FOREIGN KEY (rater, position) REFERENCES schedule(rater, position));
CREATE TRIGGER IF NOT EXISTS answers_no_update BEFORE UPDATE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
CREATE TRIGGER IF NOT EXISTS answers_no_delete BEFORE DELETE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are append-only'); END;
"""

ANSWER_COLUMNS = ("id", "rater", "trial_id", "position", "sample_id", "foil_kind", "target_side",
                  "left_image", "right_image", "choice", "chosen", "correct", "rt_ms",
                  "shown_at", "answered_at", "client")


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class OutOfOrder(Exception):
    """An answer to a trial that is not the rater's current one (a double key press, a stale tab)."""


class AnswerStore:
    """The SQLite file of one study.

    Parameters
    ----------
    path : path
        The ``.sqlite`` file; created by :meth:`create`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- connections -------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection (autocommit; transactions are explicit)."""
        if not self.path.exists():
            raise FileNotFoundError(f"No study database at {self.path}.")
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA busy_timeout = 30000")
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self.connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self.connect()
        try:
            yield con
        finally:
            con.close()

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any], trials: list[Trial]) -> "AnswerStore":
        """Write a new study file (to a temporary name, then renamed) with its trials."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"Study database {path} exists already.")
        with staged_path(path) as tmp:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode = WAL")
                con.executescript(SCHEMA)
                con.execute("BEGIN")
                con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
                names = [f.name for f in fields(Trial)]
                con.executemany(f"INSERT INTO trials ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                [tuple(asdict(t)[n] for n in names) for t in trials])
                con.execute("COMMIT")
            finally:
                con.close()
        return cls(path)

    # -- reading -------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._read() as con:
            return {r["key"]: r["value"] for r in con.execute("SELECT key, value FROM meta")}

    def trials(self) -> list[Trial]:
        with self._read() as con:
            return [Trial(**dict(r)) for r in con.execute("SELECT * FROM trials ORDER BY trial_id")]

    def trial(self, trial_id: int) -> Trial | None:
        with self._read() as con:
            r = con.execute("SELECT * FROM trials WHERE trial_id = ?", (int(trial_id),)).fetchone()
        return Trial(**dict(r)) if r else None

    def n_trials(self) -> int:
        with self._read() as con:
            return con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    def raters(self) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute("SELECT rater FROM raters ORDER BY created_at, rater")]

    # -- raters and their schedules ------------------------------------------------------
    def ensure_rater(self, rater: str, seed: int) -> None:
        """Register ``rater`` with its schedule, once; a returning rater keeps the stored one."""
        with self._write() as con:
            if con.execute("SELECT 1 FROM raters WHERE rater = ?", (rater,)).fetchone():
                return
            n = con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            con.execute("INSERT INTO raters VALUES (?, ?)", (rater, now()))
            con.executemany("INSERT INTO schedule VALUES (?, ?, ?, ?)",
                            [(rater, pos, tid, side) for pos, (tid, side)
                             in enumerate(rater_schedule(n, rater, seed))])

    def has_rater(self, rater: str) -> bool:
        with self._read() as con:
            return con.execute("SELECT 1 FROM raters WHERE rater = ?", (rater,)).fetchone() is not None

    @staticmethod
    def _next(con: sqlite3.Connection, rater: str) -> sqlite3.Row | None:
        return con.execute(
            "SELECT s.position, s.trial_id, s.target_side FROM schedule s WHERE s.rater = ? AND NOT EXISTS "
            "(SELECT 1 FROM answers a WHERE a.rater = s.rater AND a.trial_id = s.trial_id) "
            "ORDER BY s.position LIMIT 1", (rater,)).fetchone()

    def progress(self, rater: str) -> dict[str, Any]:
        """``{"answered", "total", "position", "trial_id", "target_side"}`` (the last three None when done)."""
        with self._read() as con:
            total = con.execute("SELECT COUNT(*) FROM schedule WHERE rater = ?", (rater,)).fetchone()[0]
            answered = con.execute("SELECT COUNT(*) FROM answers WHERE rater = ?", (rater,)).fetchone()[0]
            nxt = self._next(con, rater)
        out = {"answered": answered, "total": total, "position": None, "trial_id": None, "target_side": None}
        if nxt is not None:
            out.update(position=nxt["position"], trial_id=nxt["trial_id"], target_side=nxt["target_side"])
        return out

    def target_side(self, rater: str, trial_id: int) -> str | None:
        with self._read() as con:
            r = con.execute("SELECT target_side FROM schedule WHERE rater = ? AND trial_id = ?",
                            (rater, int(trial_id))).fetchone()
        return r[0] if r else None

    def mark_served(self, rater: str, trial_id: int) -> None:
        """Record when a trial was first shown to a rater (kept on later reloads)."""
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO served VALUES (?, ?, ?)", (rater, int(trial_id), now()))

    # -- answers -------------------------------------------------------------------------
    def record_answer(self, rater: str, trial_id: int, choice: str, rt_ms: int | None = None,
                      client: str = "") -> dict[str, Any]:
        """Append one answer, atomically, if ``trial_id`` is the rater's current trial.

        Raises
        ------
        ValueError
            ``choice`` not "left"/"right", or an unknown rater.
        OutOfOrder
            ``trial_id`` is not the rater's current trial (already answered, or ahead).
        """
        if choice not in SIDES:
            raise ValueError(f"Unknown choice={choice!r}; valid: {', '.join(SIDES)}.")
        with self._write() as con:
            if not con.execute("SELECT 1 FROM raters WHERE rater = ?", (rater,)).fetchone():
                raise ValueError(f"Unknown rater {rater!r}.")
            nxt = self._next(con, rater)
            if nxt is None or nxt["trial_id"] != int(trial_id):
                raise OutOfOrder(f"trial {trial_id} is not the current trial of {rater!r}.")
            t = con.execute("SELECT * FROM trials WHERE trial_id = ?", (int(trial_id),)).fetchone()
            side = nxt["target_side"]
            left, right = (t["target"], t["foil"]) if side == "left" else (t["foil"], t["target"])
            shown = con.execute("SELECT served_at FROM served WHERE rater = ? AND trial_id = ?",
                                (rater, int(trial_id))).fetchone()
            row = {"rater": rater, "trial_id": int(trial_id), "position": nxt["position"],
                   "sample_id": t["sample_id"], "foil_kind": t["foil_kind"], "target_side": side,
                   "left_image": left, "right_image": right, "choice": choice,
                   "chosen": "target" if choice == side else "foil", "correct": int(choice == side),
                   "rt_ms": rt_ms, "shown_at": shown[0] if shown else None, "answered_at": now(),
                   "client": client[:200]}
            cur = con.execute(f"INSERT INTO answers ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                              tuple(row.values()))
            row["id"] = cur.lastrowid
        return row

    def answers(self) -> pd.DataFrame:
        """All answers, in insertion order; columns :data:`ANSWER_COLUMNS`."""
        with self._read() as con:
            rows = con.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers ORDER BY id").fetchall()
        return pd.DataFrame([tuple(r) for r in rows], columns=list(ANSWER_COLUMNS))

    def export_csv(self, path: str | Path) -> Path:
        """Write all answers to ``path`` (temporary name, then renamed); returns the path."""
        path = Path(path)
        with (staged_path(path) as tmp, self._read() as con,
              open(tmp, "w", newline="", encoding="utf-8") as f):
            w = csv.writer(f)
            w.writerow(ANSWER_COLUMNS)
            for r in con.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers ORDER BY id"):
                w.writerow(tuple(r))
        return path
