"""Metrics and prediction tables shared by every classifier: baselines and the adapter alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from stages.core import schema as S
from stages.core.params import StageConfig

PREDICTION = "prediction"
LATENCY_MS = "latency_ms"
DEFAULT_EXPERIMENT = "slm-data-pipeline"


class EvaluateConfig(StageConfig):
    # Test rows timed one at a time for latency percentiles (the same rows for every model).
    latency_rows: int = Field(default=200, ge=0)
    batch_size: int = Field(default=128, gt=0)
    max_length: int = Field(default=64, gt=1)
    device: str = "auto"
    # MLflow experiment name; MLFLOW_TRACKING_URI picks the server (default: mlflow.db here).
    experiment: str = Field(default=DEFAULT_EXPERIMENT, min_length=1)
    log_to_mlflow: bool = True
    # Data inputs whose DVC hashes tag the MLflow run.
    data_inputs: list[str] = ["data/raw/rows.parquet", "data/curated/rows.parquet", "data/split"]


def prediction_table(frame: pd.DataFrame, predictions: Sequence[str], latency_ms: np.ndarray) -> pd.DataFrame:
    """Build the table every model writes: row id, gold label, prediction and timed latency."""
    return pd.DataFrame(
        {
            S.ROW_ID: frame[S.ROW_ID].astype("string").to_numpy(),
            S.LABEL: frame[S.LABEL].astype("string").to_numpy(),
            PREDICTION: pd.array(list(predictions), dtype="string"),
            LATENCY_MS: latency_ms.astype("float64"),
        }
    )


def time_single_predictions(
    predict: Callable[[list[str]], Sequence[str]], texts: Sequence[str], rows: int, seed: int
) -> np.ndarray:
    """Time `predict` on one text at a time for a seeded sample of `rows` texts.

    Returns one latency in milliseconds per text, NaN for texts outside the sample, so that
    every model is timed on the same rows the same way.
    """
    latency = np.full(len(texts), np.nan)
    if rows <= 0 or len(texts) == 0:
        return latency
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(len(texts), size=min(rows, len(texts)), replace=False))
    predict([texts[chosen[0]]])  # warm-up, not timed
    for index in chosen:
        start = time.perf_counter()
        predict([texts[index]])
        latency[index] = (time.perf_counter() - start) * 1000.0
    return latency


def score_predictions(table: pd.DataFrame, labels: Sequence[str]) -> dict:
    """Compute accuracy, macro-F1, per-class F1, the confusion matrix and latency percentiles."""
    gold = table[S.LABEL].astype(str).to_numpy()
    predicted = table[PREDICTION].fillna("").astype(str).to_numpy()
    labels = list(labels)
    per_class = f1_score(gold, predicted, labels=labels, average=None, zero_division=0)
    latency = table[LATENCY_MS].dropna().to_numpy()
    return {
        "rows": len(table),
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, predicted, labels=labels, average="weighted", zero_division=0)),
        "per_class_f1": {label: float(value) for label, value in zip(labels, per_class, strict=True)},
        "confusion": confusion_matrix(gold, predicted, labels=labels).tolist(),
        "latency_ms_p50": float(np.percentile(latency, 50)) if latency.size else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if latency.size else None,
    }
