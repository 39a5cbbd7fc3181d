"""Loading the report's inputs: every file is optional, and a missing or unreadable one is recorded.

The report describes whatever the pipeline has produced so far, so a stage that has not run (or
is switched off) leaves its section with a note instead of stopping the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stages.core import schema as S

logger = logging.getLogger(__name__)


@dataclass
class ReportInputs:
    """Everything the report reads; None where the file is absent, with the reason in `missing`."""

    raw_rows: pd.DataFrame | None = None
    acquire: dict[str, Any] | None = None
    curate: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    splits: dict[str, pd.DataFrame] = field(default_factory=dict)
    augment: dict[str, Any] | None = None
    augment_effect: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    train_curve: pd.DataFrame | None = None
    evaluate: dict[str, Any] | None = None
    per_class: dict[str, Any] | None = None
    adapter_predictions: pd.DataFrame | None = None
    # File path -> metrics of every generation-pipeline metrics file that has a `forgetting` entry.
    forgetting: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Input name -> why it is absent ("path not found", "unreadable: ...").
    missing: dict[str, str] = field(default_factory=dict)

    def why_missing(self, *names: str) -> str:
        """Return a note naming the absent inputs among `names` and why each is absent."""
        reasons = [f"{name}: {self.missing[name]}" for name in names if name in self.missing]
        return "; ".join(reasons) if reasons else "no data"


def _read_json(path: Path | None, name: str, missing: dict[str, str]) -> dict[str, Any] | None:
    if path is None:
        missing[name] = "not given"
        return None
    if not path.is_file():
        missing[name] = f"{path} not found"
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("report: cannot read %s (%s); its section shows a note", path, exc)
        missing[name] = f"{path} is unreadable ({exc})"
        return None
    if not isinstance(data, dict):
        missing[name] = f"{path} holds a JSON {type(data).__name__}, not an object"
        return None
    return data


def _read_parquet(
    path: Path | None, name: str, missing: dict[str, str], columns: list[str] | None = None
) -> pd.DataFrame | None:
    if path is None:
        missing[name] = "not given"
        return None
    if not path.is_file():
        missing[name] = f"{path} not found"
        return None
    try:
        schema_names = set(pq.read_schema(path).names)
        wanted = [column for column in columns if column in schema_names] if columns is not None else None
        return pq.read_table(path, columns=wanted).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        logger.warning("report: cannot read %s (%s); its section shows a note", path, exc)
        missing[name] = f"{path} is unreadable ({exc})"
        return None


def _read_csv(path: Path | None, name: str, missing: dict[str, str]) -> pd.DataFrame | None:
    if path is None:
        missing[name] = "not given"
        return None
    if not path.is_file():
        missing[name] = f"{path} not found"
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        logger.warning("report: cannot read %s (%s); its section shows a note", path, exc)
        missing[name] = f"{path} is unreadable ({exc})"
        return None


def read_forgetting(folder: Path | None, missing: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Return path -> metrics for every JSON file under `folder` that has a `forgetting` mapping."""
    if folder is None or not folder.is_dir():
        missing["forgetting"] = "not measured" if folder is None else f"{folder} not found"
        return {}
    found = {}
    for path in sorted(folder.rglob("*.json")):
        data = _read_json(path, str(path), {})
        if data is not None and isinstance(data.get("forgetting"), dict):
            found[str(path)] = data
    if not found:
        missing["forgetting"] = f"no metrics file under {folder} has a `forgetting` entry"
    return found


# Columns the report uses from row tables; reading only these keeps memory small on large data.
RAW_COLUMNS = [S.SOURCE, S.SOURCE_TYPE, S.SOURCE_LOCATION, S.SPLIT, S.SYNTHETIC, S.ACQUIRED_AT, S.LABEL]
SPLIT_COLUMNS = [S.TEXT, S.LABEL, S.SYNTHETIC]
PREDICTION_COLUMNS = [S.ROW_ID, S.LABEL, "prediction"]


def load_inputs(paths: dict[str, Path | None]) -> ReportInputs:
    """Read every input named in `paths` (the report's command-line options); none is required."""
    missing: dict[str, str] = {}
    inputs = ReportInputs(missing=missing)
    inputs.raw_rows = _read_parquet(paths.get("raw"), "raw rows", missing, RAW_COLUMNS)
    inputs.acquire = _read_json(paths.get("acquire_metrics"), "acquire metrics", missing)
    inputs.curate = _read_json(paths.get("curate_metrics"), "curate metrics", missing)
    inputs.split = _read_json(paths.get("split_metrics"), "split metrics", missing)
    split_dir = paths.get("split_dir")
    for name in S.SPLIT_NAMES:
        table = _read_parquet(
            split_dir / f"{name}.parquet" if split_dir else None, f"{name} split", missing, SPLIT_COLUMNS
        )
        if table is not None:
            inputs.splits[name] = table
    inputs.augment = _read_json(paths.get("augment_metrics"), "augment metrics", missing)
    inputs.augment_effect = _read_json(paths.get("augment_effect"), "augment effect metrics", missing)
    inputs.train = _read_json(paths.get("train_metrics"), "train metrics", missing)
    inputs.train_curve = _read_csv(paths.get("train_curve"), "training curve", missing)
    inputs.evaluate = _read_json(paths.get("evaluate_metrics"), "evaluate metrics", missing)
    inputs.per_class = _read_json(paths.get("per_class"), "per-class F1", missing)
    inputs.adapter_predictions = _read_parquet(
        paths.get("predictions"), "adapter predictions", missing, PREDICTION_COLUMNS
    )
    inputs.forgetting = read_forgetting(paths.get("forgetting_dir"), missing)
    return inputs
