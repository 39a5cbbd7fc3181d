"""Reading (input, target) rows of a generation split, and seeded row samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import read_table
from stages.core.params import TaskConfig, parse_section


def require_generation_task(params: dict[str, Any]) -> None:
    """Raise ParamsError unless params `task.type` is generation."""
    task = parse_section(params, "task", TaskConfig)
    if task.type != "generation":
        raise ParamsError(
            "task.type",
            task.type,
            "must be `generation` for this stage",
            "Run the generation pipeline: see docs/generation.md.",
        )


def load_pairs(path: str, split: str) -> pd.DataFrame:
    """Read a split and check that every row has a row id, a text and a target."""
    frame = read_table(path)
    for column in (S.ROW_ID, S.TEXT, S.TARGET):
        if column not in frame:
            raise InputDataError(
                path, f"column `{column}` not found", "Rerun the split stage with `task.type: generation`."
            )
        missing = frame[column].isna()
        if missing.any():
            first = int(missing.to_numpy().nonzero()[0][0])
            raise InputDataError(
                path,
                f"{int(missing.sum())} {split} rows have no `{column}`",
                "Check the curate stage for generation rows.",
                row=first + 1,
                field=column,
            )
    return frame


def sample_rows(frame: pd.DataFrame, count: int | None, seed: int) -> pd.DataFrame:
    """Return a seeded sample of `count` rows (all when None) in row-id order."""
    frame = frame.sort_values(S.ROW_ID, kind="stable").reset_index(drop=True)
    if count is None or count >= len(frame):
        return frame
    chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=count, replace=False))
    return frame.iloc[chosen].reset_index(drop=True)


def select_covered(frame: pd.DataFrame, min_coverage: float | None, path: str) -> pd.DataFrame:
    """Return the rows whose target mentions at least `min_coverage` of their input values.

    Rows without a measured coverage (inputs without values) are kept. None returns every row.
    """
    if min_coverage is None:
        return frame
    if S.INPUT_COVERAGE not in frame:
        raise InputDataError(
            path,
            f"column `{S.INPUT_COVERAGE}` not found, but `train_lm.min_input_coverage` is {min_coverage}",
            "Turn on `curate.coverage.enabled` and rerun curate and split, "
            "or set `train_lm.min_input_coverage: null`.",
        )
    coverage = pd.to_numeric(frame[S.INPUT_COVERAGE], errors="coerce")
    return frame[coverage.isna() | (coverage >= min_coverage)].reset_index(drop=True)
