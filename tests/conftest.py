"""Shared fixtures.

Every test session runs against a temporary MLflow tracking store and registry (an sqlite
file with artifacts in the same temporary folder), never the user's ``mlflow.db``.
``phantom_dir`` / ``phantom_features`` build the small phantom dataset and its
EfficientNet-Lite0 features once per session for the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

import lab_services
from lab_services import free_port, ping, stop_group, use_server


def _use_store(root: Path) -> dict[str, str]:
    import mlflow

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
           "MLFLOW_EXPERIMENT_NAME": "sbd-tests"}
    os.environ.update(env)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name("sbd-tests") is None:
        mlflow.create_experiment("sbd-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("sbd-tests")
    return env


@pytest.fixture(scope="session", autouse=True)
def _session_tracking_store(tmp_path_factory):
    """A temporary tracking store for the whole session (the user's is never touched)."""
    saved = {k: os.environ.get(k) for k in
             ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME")}
    _use_store(tmp_path_factory.mktemp("mlflow-session"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _store_of_its_own(root: Path, experiment: str):
    """A tracking store + registry in ``root`` for a module's fixture, env vars included (so
    a served model or a subprocess finds it); the previous store is restored afterwards."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    with use_server(uri, experiment) as uri:
        yield uri


@pytest.fixture(scope="session")
def store_of_its_own():
    """``with store_of_its_own(root, experiment): ...`` — see :func:`_store_of_its_own`."""
    return _store_of_its_own


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh, empty tracking store + registry for one test; returns its tracking URI."""
    import mlflow

    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(k, os.environ.get(k, ""))
    env = _use_store(tmp_path / "mlflow")
    yield env["MLFLOW_TRACKING_URI"]
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """The ``small`` phantom dataset, built once per session."""
    from sbd.data import phantom

    root = tmp_path_factory.mktemp("phantom")
    phantom.build(root, preset="small", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def phantom_features(phantom_dir) -> Path:
    """EfficientNet-Lite0 features (training, test, bank) of the small phantom."""
    from sbd.features.extract import extract_dataset

    extract_dataset(phantom_dir, backbone="efficientnet-lite0", source="all",
                    batch_size=32, num_workers=0, progress=False)
    return phantom_dir


def _register_decoder(data_dir: Path, subject: int = 1, roi: str = "VC",
                      backbone: str = "efficientnet-lite0") -> str:
    """A real decoder of the phantom: a MultiRidge (alpha 100) on the training voxels and a
    kNN (k 5) over the bank, logged and registered through sbd.registry in the active
    tracking store, composed by the build_decoder step. Returns its ``@champion`` URI."""
    import mlflow

    from sbd.data.layout import features_file
    from sbd.decoding.knn import KNNLabeller
    from sbd.decoding.ridge import MultiRidge
    from sbd.registry import ridge_model
    from sbd.registry.common import model_name, register_model_version
    from sbd.registry.knn_model import log_knn_model
    from sbd.steps import build_decoder
    from sbd.decoding.training_data import load_training_data

    X, Y, _, _ = load_training_data(data_dir, subject, roi, backbone)
    ridge = MultiRidge(alpha=100.0).fit(X, Y)
    with mlflow.start_run(run_name="ridge"):
        info = ridge_model.log_ridge_model(ridge, name="ridge")
    ridge_model.register_ridge_model(info.model_uri, "phantom", subject, roi, backbone, 0.5,
                                     {"alpha": 100.0}, n_voxels=X.shape[1])
    bank = features_file(data_dir, backbone, "bank")
    with mlflow.start_run(run_name="knn"):
        info = log_knn_model(KNNLabeller(k=5).fit(bank), bank, name="knn")
    register_model_version(info.model_uri, model_name("knn", "phantom", backbone=backbone), 0.4,
                           tags={"dataset": "phantom", "backbone": backbone})
    build_decoder.run(dataset="phantom", subject=subject, roi=roi, backbone=backbone)
    return f"models:/{model_name('decoder', 'phantom', subject, roi)}@champion"


@pytest.fixture
def register_decoder():
    """``register_decoder(data_dir, subject=1, roi="VC") -> models:/…@champion`` (see
    :func:`_register_decoder`); use it with ``mlflow_store``."""
    return _register_decoder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models: one torch thread is faster, and far faster on a busy machine. A module
    uses it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ServedModel:
    """A model served by the real ``mlflow models serve`` on 127.0.0.1 (a free port)."""

    def __init__(self, uri: str, log_path: Path) -> None:
        import subprocess
        import sys

        self.base = f"http://127.0.0.1:{free_port()}"
        port = self.base.rsplit(":", 1)[1]
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager",
             "local", "-p", port, "-h", "127.0.0.1"], env=env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 120.0) -> "ServedModel":
        import time

        deadline = time.time() + timeout
        while not ping(self.base, "/ping"):
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            assert time.time() < deadline, f"server did not answer /ping in {timeout:.0f} s"
            time.sleep(0.5)
        return self

    def ping(self) -> bool:
        return ping(self.base, "/ping")

    def post(self, payload: dict | str) -> tuple[int, str]:
        """POST to /invocations: ``(HTTP status, body)``."""
        import json
        import urllib.error
        import urllib.request

        body = payload if isinstance(payload, str) else json.dumps(payload)
        req = urllib.request.Request(self.base + "/invocations", data=body.encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()


@pytest.fixture
def serve(tmp_path):
    """``serve(model_uri) -> ServedModel`` answering /ping; every server is stopped after
    the test."""
    started: list[ServedModel] = []

    def start(uri: str) -> ServedModel:
        server = ServedModel(uri, tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        return server.wait()

    yield start
    for server in started:
        server.stop()


def _pickled_files(model_uri: str, dst: Path) -> list[str]:
    """Files of a logged model that are pickles: ``.pkl``, a pickle header (protocol 2+),
    or a zip (torch.save) holding one."""
    import zipfile

    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    found = []
    for p in sorted(local.rglob("*")):
        if not p.is_file():
            continue
        with open(p, "rb") as f:
            head = f.read(2)
        if p.suffix in (".pkl", ".pickle") or (len(head) == 2 and head[0] == 0x80
                                                and head[1] in (2, 3, 4, 5)):
            found.append(str(p.relative_to(local)))
        elif zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                if any(n.endswith((".pkl", "/data.pkl")) for n in z.namelist()):
                    found.append(str(p.relative_to(local)))
    return found


@pytest.fixture
def pickled_files(tmp_path):
    """``pickled_files(model_uri)``: the pickled files in a logged model's folder."""
    return lambda uri: _pickled_files(uri, tmp_path / f"model-{abs(hash(uri))}")


# --- a lab's shared services (tests marked ``lab``; see tests/lab_services.py) -------------

@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster on this machine (``.url(db)``, ``.create_database``);
    skips, saying why, only when none can be started here."""
    try:
        import psycopg  # noqa: F401  (the driver SQLAlchemy 2.1 uses for postgresql://)
    except ImportError:
        pytest.skip("no PostgreSQL driver: pip install -e '.[lab]' (install.sh does)")
    try:
        pg = lab_services.start_postgres()
    except lab_services.Unavailable as err:
        pytest.skip(f"no PostgreSQL server could be started here: {err}")
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """The URL of a real ``mlflow server`` (PostgreSQL backend store, served artifacts)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    try:
        backend = postgres.create_database("mlflow")
        server = lab_services.MlflowServer(backend, root / "artifacts",
                                           root / "server.log").wait()
    except lab_services.Unavailable as err:
        pytest.skip(f"no mlflow server could be started here: {err}")
    yield server.url
    server.stop()
