"""Signatures and input checks shared by the registered pyfunc models.

Tables (DataFrames) of the models:

- voxel table: columns ``v0 … v{n-1}`` (float64), one row per sample;
- feature table: columns ``f0 … f{D-1}`` (float32), one row per sample.

:func:`validate_table` turns a DataFrame (named columns, any order) or a 2-D array into a
float64 array, or raises :class:`InvalidModelInput` — an ``MlflowException`` with error code
``INVALID_PARAMETER_VALUE`` (HTTP 400 when served) that is also a ``ValueError``.

Why the logged signatures have no input schema (:func:`checked_signature`): MLflow's
column-schema enforcement drops columns it does not know, with a log warning, before the
model sees the input — so a client that sent the wrong table (one with 5 extra columns)
got an answer.  sbd's models check their input themselves (:func:`validate_table`: extra,
missing, renamed, non-numeric, NaN, empty → 400 naming the problem), so the signature keeps
only the output schema, and the input schema is kept readable in the model's metadata
(``input_schema``, MLflow's JSON form; ``input_columns``, one line) and input example.
:func:`input_schema` reads it back (from the signature for models logged before).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

__all__ = ["InvalidModelInput", "column_names", "voxel_schema", "feature_schema",
           "table_signature", "checked_signature", "input_schema", "validate_table",
           "to_table"]


class InvalidModelInput(MlflowException, ValueError):
    """Bad model input: served as HTTP 400 (INVALID_PARAMETER_VALUE)."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def column_names(prefix: str, n: int) -> list[str]:
    """``[prefix0, …, prefix{n-1}]``."""
    return [f"{prefix}{i}" for i in range(int(n))]


def voxel_schema(n_voxels: int) -> Schema:
    """Input schema: ``v0 … v{n-1}`` as double."""
    return Schema([ColSpec("double", c) for c in column_names("v", n_voxels)])


def feature_schema(dim: int, dtype: str = "float") -> Schema:
    """Output schema: ``f0 … f{D-1}`` (float32 by default)."""
    return Schema([ColSpec(dtype, c) for c in column_names("f", dim)])


def checked_signature(inputs: Schema, outputs: Schema) -> tuple[ModelSignature, dict[str, Any]]:
    """``(signature, metadata)`` to log a model that checks its own input (module doc): the
    signature holds ``outputs`` only; the metadata holds ``inputs`` as ``input_schema``
    (JSON) and ``input_columns`` (e.g. ``"v0 … v1599 (double)"``)."""
    names = inputs.input_names()
    kinds = sorted({getattr(c.type, "name", str(c.type)) for c in inputs.inputs})
    line = (f"{names[0]} … {names[-1]}" if len(names) > 1 else str(names[0])) + \
        f" ({', '.join(kinds)})"
    return (ModelSignature(inputs=None, outputs=outputs),
            {"input_schema": inputs.to_json(), "input_columns": line})


def input_schema(model_uri: str) -> Schema:
    """The input column schema of a logged sbd model (metadata, or the signature of a model
    logged before :func:`checked_signature`)."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    meta = info.metadata or {}
    if "input_schema" in meta:
        return Schema.from_json(meta["input_schema"])
    sig = info.signature
    if sig is None or sig.inputs is None:
        raise ValueError(f"Model {model_uri} has no input schema (metadata or signature).")
    return sig.inputs


def table_signature(n_voxels: int, dim: int) -> tuple[ModelSignature, dict[str, Any]]:
    """Voxel table in, feature table out (:func:`checked_signature`)."""
    return checked_signature(voxel_schema(n_voxels), feature_schema(dim))


def _describe(names: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def validate_table(data: Any, n_columns: int, prefix: str = "v", what: str = "voxel"
                   ) -> np.ndarray:
    """Check model input and return it as a float64 array (n × n_columns).

    Parameters
    ----------
    data : DataFrame with columns ``{prefix}0 … {prefix}{n_columns-1}`` (any order; other
        columns are an error), or a 2-D numeric array (n × n_columns); a Series or a 1-D
        array is one row.
    n_columns : expected number of columns.
    prefix, what : column prefix and its name in messages (``"v"``/``"voxel"``).

    Raises
    ------
    InvalidModelInput
        Empty input, wrong column count or names, non-numeric values, NaN or infinity.
    """
    expected = column_names(prefix, n_columns)
    if isinstance(data, pd.Series):
        data = data.to_frame().T
    if isinstance(data, pd.DataFrame):
        cols = [str(c) for c in data.columns]
        have, want = set(cols), set(expected)  # once: a 4,466-voxel row is 4,466 lookups
        missing = [c for c in expected if c not in have]
        unknown = [c for c in cols if c not in want]
        if missing or unknown:
            parts = [f"expected {n_columns} {what} columns {prefix}0…{prefix}{n_columns - 1}, "
                     f"got {len(cols)} columns"]
            if missing:
                parts.append(f"missing: {_describe(missing)}")
            if unknown:
                parts.append(f"unknown: {_describe(unknown)}")
            raise InvalidModelInput("; ".join(parts) + ".")
        data = data.set_axis(cols, axis=1)
        if len(data) == 0:
            raise InvalidModelInput(f"{what} input is empty (0 rows).")
        if len(set(cols)) != len(cols):
            dup = sorted({c for c in cols if cols.count(c) > 1})
            raise InvalidModelInput(f"{what} columns repeated: {_describe(dup)}.")
        bad = [c for c, t in data.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
               or pd.api.types.is_bool_dtype(t)]
        if bad:
            raise InvalidModelInput(f"{what} columns must be numeric; non-numeric: "
                                    f"{_describe(bad)}.")
        arr = data[expected].to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise InvalidModelInput(f"{what} input must be a table (n × {n_columns}), got an "
                                    f"array of shape {arr.shape}.")
        if arr.dtype.kind not in "iuf":
            raise InvalidModelInput(f"{what} input must be numeric, got dtype {arr.dtype}.")
        if arr.shape[1] != n_columns:
            raise InvalidModelInput(f"expected {n_columns} {what} columns, got {arr.shape[1]} "
                                    f"(input shape {arr.shape}).")
        arr = arr.astype(np.float64)
    if arr.shape[0] == 0:
        raise InvalidModelInput(f"{what} input is empty (0 rows).")
    finite = np.isfinite(arr)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        raise InvalidModelInput(
            f"{what} input contains NaN or infinite values ({int((~finite).sum())} in all; "
            f"first at row {int(rows[0])}, column {prefix}{int(cols[0])}).")
    return arr


def to_table(values: np.ndarray, prefix: str = "f", dtype: type = np.float32,
             index: Any = None) -> pd.DataFrame:
    """A (n × D) array as a DataFrame with columns ``{prefix}0 … {prefix}{D-1}``."""
    values = np.asarray(values, dtype=dtype)
    return pd.DataFrame(values, columns=column_names(prefix, values.shape[1]), index=index)
