"""Class imbalance: a report for the curate metrics, and remedies for the train split.

The remedies are meant for the train split only, after splitting: resampling before the split
would copy rows into validation and test, and weighting them would bias evaluation. Every
function takes or returns rows with a `label` column and is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from stages.core.errors import InputDataError
from stages.core.schema import LABEL


def class_counts(labels: Iterable) -> dict[str, int]:
    """Return rows per class, sorted by label; missing labels are not counted."""
    series = pd.Series(list(labels) if not isinstance(labels, pd.Series) else labels, dtype="string").dropna()
    counts = series.value_counts()
    return {str(label): int(counts[label]) for label in sorted(counts.index)}


def imbalance_report(labels: Iterable, min_rows_per_class: int) -> dict:
    """Return class counts, the imbalance ratio (largest class / smallest class) and the small classes."""
    counts = class_counts(labels)
    if not counts:
        return {"classes": 0, "counts": {}, "imbalance_ratio": None, "classes_below_min": []}
    largest = max(counts.values())
    smallest = min(counts.values())
    return {
        "classes": len(counts),
        "counts": counts,
        "max_class_rows": largest,
        "min_class_rows": smallest,
        "imbalance_ratio": round(largest / smallest, 4),
        "min_rows_per_class": min_rows_per_class,
        "classes_below_min": [label for label, count in counts.items() if count < min_rows_per_class],
    }


def class_weights(labels: Iterable) -> dict[str, float]:
    """Return balanced class weights: rows / (classes * rows of the class), as scikit-learn's "balanced".

    A class with the average number of rows gets 1.0; rarer classes get more.
    """
    counts = class_counts(labels)
    if not counts:
        return {}
    total = sum(counts.values())
    return {label: total / (len(counts) * count) for label, count in counts.items()}


def oversample(frame: pd.DataFrame, seed: int, target: int | None = None) -> pd.DataFrame:
    """Add copies of rows of smaller classes until each class has `target` rows.

    `target` defaults to the size of the largest class; classes already at or above it are kept
    as they are. Original rows come first in their order, then the copies, class by class.
    """
    _check_labels(frame, "oversample")
    counts = frame[LABEL].value_counts()
    target = int(counts.max()) if target is None else target
    if target < 1:
        raise ValueError(f"oversample: target must be at least 1, got {target}")
    generator = np.random.default_rng(seed)
    extra = []
    for label in sorted(counts.index):
        rows = np.flatnonzero((frame[LABEL] == label).to_numpy())
        missing = target - len(rows)
        if missing > 0:
            # Whole copies of the class first, then a random remainder: no row is repeated
            # more than once above any other row of its class.
            repeats, remainder = divmod(missing, len(rows))
            chosen = np.concatenate(
                [np.tile(rows, repeats), np.sort(generator.choice(rows, remainder, replace=False))]
            )
            extra.append(chosen)
    if not extra:
        return frame.reset_index(drop=True)
    positions = np.concatenate([np.arange(len(frame)), *extra])
    return frame.iloc[positions].reset_index(drop=True)


def undersample(frame: pd.DataFrame, seed: int, target: int | None = None) -> pd.DataFrame:
    """Keep a random `target` rows of every larger class; rows keep their original order.

    `target` defaults to the size of the smallest class.
    """
    _check_labels(frame, "undersample")
    counts = frame[LABEL].value_counts()
    target = int(counts.min()) if target is None else target
    if target < 1:
        raise ValueError(f"undersample: target must be at least 1, got {target}")
    generator = np.random.default_rng(seed)
    kept = []
    for label in sorted(counts.index):
        rows = np.flatnonzero((frame[LABEL] == label).to_numpy())
        if len(rows) > target:
            rows = generator.choice(rows, target, replace=False)
        kept.append(rows)
    positions = np.sort(np.concatenate(kept))
    return frame.iloc[positions].reset_index(drop=True)


def _check_labels(frame: pd.DataFrame, operation: str) -> None:
    if LABEL not in frame.columns:
        raise InputDataError(
            operation, "the rows have no `label` column", "Resample classification rows only."
        )
    if frame.empty:
        raise InputDataError(operation, "there are no rows to resample", "Check the train split.")
    if frame[LABEL].isna().any():
        row = int(np.flatnonzero(frame[LABEL].isna().to_numpy())[0])
        raise InputDataError(
            operation,
            "a row has no label",
            "Run the curate stage first; it quarantines rows without a label.",
            row=row,
            field=LABEL,
        )
