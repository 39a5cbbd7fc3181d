"""Validating the split tables against the Great Expectations suite (expectations/splits.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stages.core import schema as S
from stages.core.expectations import validate

GATE = "split_expectations"


def suite_parameters(splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Return the suite parameters computed from the data: `train_labels`, the labels of the train split."""
    train = splits["train"]
    labels = (
        []
        if S.LABEL not in train.columns
        else sorted(str(label) for label in train[S.LABEL].dropna().unique())
    )
    return {"train_labels": labels}


def validate_splits(splits: dict[str, pd.DataFrame], suite: str | Path) -> dict[str, Any]:
    """Validate the three splits as one table (so row ids are checked for uniqueness across splits).

    Raises GateError when an expectation of severity error fails; returns the validation summary.
    """
    combined = pd.concat([splits[name] for name in S.SPLIT_NAMES], ignore_index=True)
    return validate(combined, suite, gate=GATE, parameters=suite_parameters(splits))
