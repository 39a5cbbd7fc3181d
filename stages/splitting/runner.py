"""Running a strategy on a table: input checks, the split tables, the quarantine and the size summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.core.quarantine import Quarantine
from stages.splitting.config import SplitConfig
from stages.splitting.groups import Groups, resolve_groups
from stages.splitting.strategies import FOLD, STRATEGIES, Assignment, SplitContext

logger = logging.getLogger(__name__)

STAGE = "split"


@dataclass
class SplitResult:
    """The three split tables (always all three), the kfold table, the quarantine and the summary."""

    splits: dict[str, pd.DataFrame]
    folds: pd.DataFrame | None
    quarantine: Quarantine
    metrics: dict[str, Any]
    context: SplitContext
    assignment: Assignment
    groups: Groups


def check_input(frame: pd.DataFrame, location: str) -> None:
    """Raise InputDataError when the table lacks `row_id` or `text`, or has a repeated row id."""
    for column in (S.ROW_ID, S.TEXT):
        if column not in frame.columns:
            raise InputDataError(
                location,
                f"column `{column}` is missing; columns are {list(frame.columns)}",
                "Rerun the curate stage, which writes the common row schema.",
                field=column,
            )
    duplicated = frame[S.ROW_ID].duplicated(keep=False)
    if duplicated.any():
        first = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise InputDataError(
            location,
            f"{int(duplicated.sum())} rows share a row_id, the first is {frame[S.ROW_ID].iloc[first]!r}",
            "Give every row a unique row_id (the acquire stage derives it from source, location and row).",
            row=first + 1,
            field=S.ROW_ID,
        )


def assign_splits(
    frame: pd.DataFrame, config: SplitConfig, seed: int, location: str, groups: Groups | None = None
) -> tuple[SplitContext, Assignment, Groups]:
    """Compute groups (unless given) and run the configured strategy; the table itself is not changed."""
    frame = frame.reset_index(drop=True)
    if groups is None:
        groups = resolve_groups(frame, config, location)
    context = SplitContext.build(frame, groups.codes, config, location)
    assignment = STRATEGIES[config.strategy](context, seed)
    return context, assignment, groups


def split_rows(
    frame: pd.DataFrame, config: SplitConfig, seed: int, location: str = "rows", groups: Groups | None = None
) -> SplitResult:
    """Split `frame` with the configured strategy and return the tables, quarantine and summary."""
    check_input(frame, location)
    frame = frame.reset_index(drop=True)
    context, assignment, groups = assign_splits(frame, config, seed, location, groups)

    table = frame.copy()
    table[S.SPLIT] = assignment.split.astype("string")
    if assignment.fold is not None:
        table[FOLD] = assignment.fold.astype("Int64")

    quarantine = Quarantine(STAGE)
    reasons = assignment.reason if assignment.reason is not None else pd.Series(pd.NA, index=frame.index)
    for reason in sorted(reasons.dropna().unique()):
        rows = (reasons == reason).fillna(False).to_numpy()
        quarantine.add(frame[rows], str(reason), assignment.detail[rows])

    kept = table[table[S.SPLIT].notna()]
    splits = {name: kept[kept[S.SPLIT] == name].reset_index(drop=True) for name in S.SPLIT_NAMES}
    folds = None
    if assignment.fold is not None:
        folds = kept[kept[FOLD].notna()].reset_index(drop=True)
    quarantine.check(len(frame), sum(len(part) for part in splits.values()))

    metrics = summarise(frame, splits, folds, quarantine, context, assignment, groups, seed)
    for name in S.SPLIT_NAMES:
        if splits[name].empty:
            logger.warning("the %s split is empty", name)
    logger.info(
        "%s split: %s (%d quarantined)",
        config.strategy,
        ", ".join(f"{name} {len(splits[name])}" for name in S.SPLIT_NAMES),
        len(quarantine),
    )
    return SplitResult(splits, folds, quarantine, metrics, context, assignment, groups)


def _class_counts(frame: pd.DataFrame) -> dict[str, int]:
    if S.LABEL not in frame.columns or frame.empty:
        return {}
    counts = frame[S.LABEL].astype("string").fillna("<no label>").value_counts()
    return {str(label): int(count) for label, count in sorted(counts.items())}


def summarise(
    frame: pd.DataFrame,
    splits: dict[str, pd.DataFrame],
    folds: pd.DataFrame | None,
    quarantine: Quarantine,
    context: SplitContext,
    assignment: Assignment,
    groups: Groups,
    seed: int,
) -> dict[str, Any]:
    """Return sizes per split and class, labels missing from train, groups and strategy details."""
    rows_out = sum(len(part) for part in splits.values())
    sizes = {name: len(splits[name]) for name in S.SPLIT_NAMES}
    metrics: dict[str, Any] = {
        "strategy": context.config.strategy,
        "seed": seed,
        "rows_in": len(frame),
        "rows_out": rows_out,
        "rows_quarantined": len(quarantine),
        "quarantine_reasons": quarantine.counts(),
        "sizes": sizes,
        "shares": {name: round(size / rows_out, 6) if rows_out else 0.0 for name, size in sizes.items()},
        "groups": groups.metrics,
        "strategy_details": assignment.details,
    }
    if context.has_labels:
        per_class = {name: _class_counts(splits[name]) for name in S.SPLIT_NAMES}
        train_labels = set(per_class["train"])
        metrics["classes"] = len(set().union(*(set(counts) for counts in per_class.values())))
        metrics["per_class"] = per_class
        metrics["labels_missing_from_train"] = {
            name: sorted(set(per_class[name]) - train_labels) for name in ("validation", "test")
        }
        for name, missing in metrics["labels_missing_from_train"].items():
            if missing:
                logger.warning(
                    "%d labels of the %s split are not in train: %s", len(missing), name, missing[:10]
                )
        if folds is not None:
            metrics["per_fold_class"] = {
                str(fold): _class_counts(part) for fold, part in folds.groupby(FOLD, sort=True)
            }
    return metrics
