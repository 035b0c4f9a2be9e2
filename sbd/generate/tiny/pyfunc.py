"""The tiny generator as an MLflow pyfunc (models-from-code), logged and registered;
loading it back."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch

from sbd.generate.labels import LabelIndex, ModelNotFoundError, image_seed
from sbd.generate.tiny.config import MODEL_NAME, PIPELINE_FORMAT, PYFUNC_NAME
from sbd.generate.tiny.pipeline import TinyPipeline

log = logging.getLogger(__name__)


class TinyGeneratorModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc of a tiny model (weights are the ``pipeline`` artifact folder).

    Input: DataFrame with column ``wnid`` (str) and optional int columns ``seed``, ``sample``,
    ``n`` (default 0). Output: DataFrame with ``wnid``, ``class_wnid`` (the model class used)
    and ``png`` (base64 PNG; the same image ``get_generator("tiny")`` gives for that seed).
    """

    def load_context(self, context):
        self.pipeline = load_pipeline(context.artifacts["pipeline"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if "wnid" not in model_input.columns:
            raise ValueError(f"Input needs a 'wnid' column; got {list(model_input.columns)}.")
        labels = LabelIndex(self.pipeline.class_wnids)
        rows = []
        for _, r in model_input.iterrows():
            wnid = str(r["wnid"])
            idx = labels(wnid)
            s = image_seed(int(r.get("seed", 0) or 0), int(r.get("sample", 0) or 0), wnid,
                           int(r.get("n", 0) or 0))
            img = self.pipeline([idx], generator=[torch.Generator().manual_seed(s)]).images[0]
            buf = io.BytesIO()
            img.save(buf, "PNG")
            rows.append({"wnid": wnid, "class_wnid": self.pipeline.class_wnids[idx],
                         "png": base64.b64encode(buf.getvalue()).decode()})
        return pd.DataFrame(rows)


def log_model(pipeline_dir: str | Path, dataset: str, score: float | None = None,
              tags: dict[str, Any] | None = None, register: bool = True) -> str:
    """Log ``pipeline_dir`` as a pyfunc in the active run and register it.

    Registered as ``sbd-<dataset>-tiny-generator`` with ``val_score = score`` (the generate
    step passes the centred kNN top-1 accuracy of samples; higher is better), alias
    ``candidate``, ``champion`` when better.
    Returns the model URI (``models:/name/version`` when registered, else ``runs:/…``).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import tempfile

    import diffusers
    import pandas

    from sbd.registry.common import copy_package, model_code, register_model_version

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "wnid")] + [ColSpec("long", c, required=False)
                                                      for c in ("seed", "sample", "n")]),
        outputs=Schema([ColSpec("string", c) for c in ("wnid", "class_wnid", "png")]))
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name=PYFUNC_NAME,
            python_model=model_code(tmp, __name__, "TinyGeneratorModel"),
            code_paths=[str(copy_package(Path(tmp) / "code", __name__))],
            artifacts={"pipeline": str(pipeline_dir)}, signature=signature,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                              f"diffusers=={diffusers.__version__}",
                              f"pandas=={pandas.__version__}"])
    if not register:
        return info.model_uri
    name = MODEL_NAME.format(dataset=dataset)
    mv, _ = register_model_version(info.model_uri, name, score if score is not None else 0.0,
                                   tags={"dataset": dataset, "format": PIPELINE_FORMAT,
                                         **(tags or {})})
    return f"models:/{name}/{mv.version}"


def load_pipeline(model_id: str | Path, device: str | torch.device = "cpu") -> TinyPipeline:
    """A tiny pipeline from a folder or an MLflow model URI (``models:/…``, ``runs:/…``)."""
    text = str(model_id)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text)
        except MlflowException as err:
            raise ModelNotFoundError(f"Cannot load tiny model {text!r} from MLflow: {err}") from err
        folder = Path(local) / "artifacts" / "pipeline"
        if not folder.exists():
            folder = Path(local)
        return _from_folder(folder, device)
    folder = Path(text).expanduser()
    if not folder.exists():
        raise ModelNotFoundError(f"Tiny model folder {text!r} does not exist.")
    return _from_folder(folder, device)


def _from_folder(folder: Path, device: str | torch.device) -> TinyPipeline:
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"{folder} is not a tiny pipeline folder (no model_index.json): an earlier sbd "
            "wrote it; train a new one (mlflow run . -e train_tiny).")
    import importlib.util

    fast = importlib.util.find_spec("accelerate") is not None  # else diffusers warns each load
    return TinyPipeline.from_pretrained(folder, low_cpu_mem_usage=fast).to(device)
