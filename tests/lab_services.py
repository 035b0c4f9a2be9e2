"""A lab's shared services for the tests, started for real on this machine: a PostgreSQL
cluster in a temporary folder and an ``mlflow server`` on it (PostgreSQL backend store,
served artifacts).  Used by the ``postgres`` and ``mlflow_server`` fixtures of conftest.

PostgreSQL refuses to run as root: as root the cluster is made and run by the ``postgres``
user (Debian's ``postgresql`` package creates it), in a folder that user owns.  When no
cluster can be started (no PostgreSQL binaries, no such user, a start that fails) the
fixtures skip and say why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class Unavailable(RuntimeError):
    """A service could not be started here (the message says why)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise Unavailable("no PostgreSQL binaries (initdb): install Debian's postgresql package "
                      "(install.sh does)")


@dataclass
class Postgres:
    """A running cluster; ``url(db)`` is a SQLAlchemy URL of database ``db``."""

    root: Path
    port: int
    bindir: Path
    user: str | None

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        out = subprocess.run([str(self.bindir / args[0]), *args[1:]], user=self.user,
                             capture_output=True, text=True, timeout=timeout,
                             cwd=str(self.root))
        if out.returncode != 0:
            raise Unavailable(f"{' '.join(args[:2])} failed: {out.stderr.strip()[-1000:]}")
        return out

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb + pg_ctl start of a throw-away cluster on a free port (trust auth, 127.0.0.1
    only, fsync off: a test database)."""
    bindir = _pg_bindir()
    user = None
    root = Path(tempfile.mkdtemp(prefix="sbd-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no 'postgres' user to run "
                              "PostgreSQL as (Debian's postgresql package creates it)") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        user = "postgres"
    pg = Postgres(root, free_port(), bindir, user)
    try:
        pg._run("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync", timeout=120)
        opts = (f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        pg._run("pg_ctl", "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"),
                "-w", "-t", "60", "start", timeout=90)
    except (Unavailable, OSError, subprocess.SubprocessError) as err:
        log = root / "log"
        tail = log.read_text()[-1500:] if log.is_file() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"PostgreSQL did not start: {err} {tail}") from err
    return pg


def ping(url: str, path: str = "/health") -> bool:
    """Whether the server at ``url`` answers ``path`` with 200 (mlflow server: /health;
    mlflow models serve: /ping)."""
    try:
        with urllib.request.urlopen(url + path, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class MlflowServer:
    """``mlflow server`` with a PostgreSQL backend store and served artifacts
    (``--artifacts-destination``): clients need the URL only, no shared disk."""

    def __init__(self, backend_uri: str, artifacts: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME"):
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "2"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 120.0) -> "MlflowServer":
        deadline = time.time() + timeout
        while not ping(self.url):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise Unavailable("mlflow server did not start: "
                                  + self.log_path.read_text()[-2000:])
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server started in a session of its own: SIGTERM to its process group, SIGKILL
    after ``timeout`` seconds (the group's other processes too when the leader has exited)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group is gone
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def use_server(url: str, experiment: str):
    """Point this process (and its subprocesses, through the environment) at the tracking
    server or store ``url`` and experiment ``experiment`` (created when missing); the
    previous tracking settings are restored afterwards."""
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME",
            "MLFLOW_EXPERIMENT_ID")  # set_experiment exports the id: restored too
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({"MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url,
                       "MLFLOW_EXPERIMENT_NAME": experiment})
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    mlflow.set_experiment(experiment)
    try:
        yield url
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"] or "")
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"] or "")
        if saved["MLFLOW_EXPERIMENT_NAME"]:
            mlflow.set_experiment(saved["MLFLOW_EXPERIMENT_NAME"])
