"""The five split strategies. Each maps a seed and the rows to one split (or a quarantine reason) per row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError
from stages.splitting.allocation import NO_LABEL, BucketResult, assign_buckets
from stages.splitting.config import SplitConfig, TemporalConfig

logger = logging.getLogger(__name__)

TRAIN, VALIDATION, TEST = S.SPLIT_NAMES
FOLD = "fold"
# Fold id of rows that are in the train part of every fold (rare classes under train_only).
ALWAYS_TRAIN_FOLD = -1


@dataclass
class SplitContext:
    """The rows to split (index 0..n-1), their groups and classes, and the config."""

    frame: pd.DataFrame
    groups: np.ndarray
    config: SplitConfig
    location: str
    strata: np.ndarray | None = None
    strata_names: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls, frame: pd.DataFrame, groups: np.ndarray, config: SplitConfig, location: str
    ) -> SplitContext:
        frame = frame.reset_index(drop=True)
        context = cls(frame=frame, groups=groups, config=config, location=location)
        if S.LABEL in frame.columns and frame[S.LABEL].notna().any():
            labels = frame[S.LABEL].astype("string").fillna(NO_LABEL)
            codes, names = pd.factorize(labels, sort=True)
            context.strata = codes.astype(np.int64)
            context.strata_names = [str(name) for name in names]
        return context

    @property
    def has_labels(self) -> bool:
        return self.strata is not None

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class Assignment:
    """Split per row (<NA> for quarantined rows), fold per row for kfold, and quarantine reasons."""

    split: pd.Series
    fold: pd.Series | None = None
    reason: pd.Series | None = None
    detail: pd.Series | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, size: int) -> Assignment:
        return cls(
            split=pd.Series(pd.NA, index=range(size), dtype="string"),
            reason=pd.Series(pd.NA, index=range(size), dtype="string"),
            detail=pd.Series(pd.NA, index=range(size), dtype="string"),
        )

    def quarantine(self, positions: np.ndarray, reason: str, detail: str | pd.Series) -> None:
        if not len(positions):
            return
        self.split.iloc[positions] = pd.NA
        self.reason.iloc[positions] = reason
        if isinstance(detail, str):
            self.detail.iloc[positions] = detail
        else:
            self.detail.iloc[positions] = detail.to_numpy()


def _rng(seed: int, purpose: str) -> np.random.Generator:
    # One independent stream per purpose, so adding a step never shifts the draws of another.
    return np.random.default_rng([seed, int(S.sha256_hex(purpose)[:8], 16)])


def _apply_buckets(
    assignment: Assignment,
    positions: np.ndarray,
    result: BucketResult,
    names: list[str],
    context: SplitContext,
) -> None:
    for index, name in enumerate(names):
        assignment.split.iloc[positions[result.buckets == index]] = name
    assignment.split.iloc[positions[result.forced_train]] = TRAIN
    _quarantine_rare(assignment, positions[result.quarantined], result, context)


def _quarantine_rare(
    assignment: Assignment, rows: np.ndarray, result: BucketResult, context: SplitContext
) -> None:
    if not len(rows):
        return
    rare = result.details.get("rare_classes", {})
    labels = context.frame[S.LABEL].iloc[rows].astype("string").fillna(NO_LABEL)
    detail = labels.map(
        lambda label: (
            f"class {label!r} has {rare.get(label, 0)} rows, fewer than "
            f"{result.details.get('minimum_class_rows')} needed for one row in every split"
        )
    )
    assignment.quarantine(rows, "rare_class", detail)


def _bucket_rows(
    context: SplitContext,
    positions: np.ndarray,
    ratios: tuple[float, ...],
    rng: np.random.Generator,
    *,
    stratify: bool,
    ratio_key: str,
) -> BucketResult:
    return assign_buckets(
        positions,
        context.strata if stratify else None,
        context.strata_names,
        context.groups,
        ratios,
        rng,
        policy=context.config.rare_class_policy,
        ratio_key=ratio_key,
        location=context.location,
    )


def split_holdout(context: SplitContext, seed: int) -> Assignment:
    """Random train/validation/test by `split.ratios`, groups whole."""
    assignment = Assignment.empty(len(context))
    positions = np.arange(len(context))
    result = _bucket_rows(
        context,
        positions,
        context.config.ratios.as_tuple(),
        _rng(seed, "holdout"),
        stratify=False,
        ratio_key="split.ratios",
    )
    _apply_buckets(assignment, positions, result, list(S.SPLIT_NAMES), context)
    assignment.details = result.details
    return assignment


def split_stratified(context: SplitContext, seed: int) -> Assignment:
    """Train/validation/test by `split.ratios` with the class proportions of the whole table in each split."""
    if not context.has_labels:
        raise InputDataError(
            context.location,
            "column `label` is empty in every row, so the stratified strategy has no classes to balance",
            "Use `split.strategy: holdout` (kfold stratifies only when labels exist), or map a label column "
            "in `acquire.sources[].columns.label`.",
            field=S.LABEL,
        )
    assignment = Assignment.empty(len(context))
    positions = np.arange(len(context))
    result = _bucket_rows(
        context,
        positions,
        context.config.ratios.as_tuple(),
        _rng(seed, "stratified"),
        stratify=True,
        ratio_key="split.ratios",
    )
    _apply_buckets(assignment, positions, result, list(S.SPLIT_NAMES), context)
    assignment.details = result.details
    return assignment


def normalised_source_splits(context: SplitContext) -> pd.Series:
    """Return the source's split column in lower case, with empty values as train; unknown values raise."""
    frame = context.frame
    if S.SPLIT not in frame.columns:
        return pd.Series(TRAIN, index=frame.index, dtype="string")
    values = frame[S.SPLIT].astype("string").str.strip().str.lower()
    values = values.mask(values == "").fillna(TRAIN)
    unknown = ~values.isin(S.SPLIT_NAMES)
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputDataError(
            context.location,
            f"{int(unknown.sum())} rows have a split value outside {list(S.SPLIT_NAMES)}, "
            f"the first is {frame[S.SPLIT].iloc[first]!r}",
            "Use train, validation or test in the source's split column, or leave it empty for train.",
            row=first + 1,
            field=S.SPLIT,
        )
    return values


def split_predefined(context: SplitContext, seed: int) -> Assignment:
    """Keep the source's split column; carve a validation split from train when there is none.

    Rows with an empty split are train rows. The carve takes `split.validation_size` of the train
    rows, stratified by label when there are labels, keeping groups whole. Test rows are never
    moved, so a group that has rows in both train and test stays that way (the leakage check
    reports it).
    """
    source = normalised_source_splits(context)
    counts = source.value_counts()
    if counts.get(TEST, 0) == 0:
        raise InputDataError(
            context.location,
            "no row has split = test, so the predefined strategy has no test split to keep",
            "Set `split: test` on a test source in `acquire.sources`, or choose `split.strategy` holdout, "
            "stratified, temporal or kfold.",
            field=S.SPLIT,
        )
    assignment = Assignment.empty(len(context))
    assignment.split[:] = source.to_numpy()
    details: dict[str, Any] = {"source_splits": {name: int(counts.get(name, 0)) for name in S.SPLIT_NAMES}}

    if counts.get(VALIDATION, 0) == 0:
        positions = np.flatnonzero((source == TRAIN).to_numpy())
        size = context.config.validation_size
        result = _bucket_rows(
            context,
            positions,
            (1.0 - size, size),
            _rng(seed, "predefined-validation"),
            stratify=context.has_labels,
            ratio_key="split.validation_size",
        )
        _apply_buckets(assignment, positions, result, [TRAIN, VALIDATION], context)
        details["validation_carved_from_train"] = True
        details["carve"] = result.details
    else:
        details["validation_carved_from_train"] = False
    assignment.details = details
    return assignment


def parse_timestamps(context: SplitContext) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse the timestamp column as UTC; returns (times, missing mask, unparseable mask).

    Times without an offset are taken as UTC. A column that is missing or empty in every row
    raises, because the temporal strategy has nothing to order by.
    """
    frame = context.frame
    fix = (
        "Map a time column of each source to `timestamp` (`acquire.sources[].columns.timestamp`), "
        "or choose another `split.strategy`."
    )
    if S.TIMESTAMP not in frame.columns:
        raise InputDataError(
            context.location,
            "column `timestamp` is missing, so the temporal strategy has no time to order by",
            fix,
            field=S.TIMESTAMP,
        )
    raw = frame[S.TIMESTAMP]
    if pd.api.types.is_datetime64_any_dtype(raw):
        times = pd.to_datetime(raw, utc=True)
        missing = times.isna().to_numpy()
        text = raw.astype("string")
    else:
        text = raw.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy()
        fmt = context.config.temporal.timestamp_format
        times = pd.to_datetime(text.mask(missing), utc=True, errors="coerce", format=fmt)
    if missing.all():
        raise InputDataError(
            context.location,
            f"column `timestamp` is empty in all {len(frame)} rows, "
            "so the temporal strategy has no time to order by",
            fix,
            field=S.TIMESTAMP,
        )
    unparseable = ~missing & times.isna().to_numpy()
    if unparseable.sum() == (~missing).sum():
        first = int(np.flatnonzero(unparseable)[0])
        raise InputDataError(
            context.location,
            f"none of the {int(unparseable.sum())} timestamps parse with format "
            f"{context.config.temporal.timestamp_format!r}, the first is {text.iloc[first]!r}",
            "Set `split.temporal.timestamp_format` to the column's format (a strftime pattern, or mixed).",
            row=first + 1,
            field=S.TIMESTAMP,
        )
    return times, missing, unparseable


def split_temporal(context: SplitContext, seed: int) -> Assignment:
    """Train on the past, validate and test on the future, by ratios or explicit cut dates.

    Rows without a parseable timestamp are quarantined. A group is placed by its latest row, so no
    train row is later than the start of validation. A group whose rows span a cut has rows older
    than the start of its split: `split.temporal.spanning_groups` quarantines them (time order kept)
    or keeps them in that split (the leakage check's time order then counts them).
    """
    config = context.config.temporal
    assignment = Assignment.empty(len(context))
    times, missing, unparseable = parse_timestamps(context)
    fmt = config.timestamp_format
    assignment.quarantine(
        np.flatnonzero(missing),
        "missing_timestamp",
        "empty `timestamp`; the temporal strategy needs a time for every row",
    )
    bad = np.flatnonzero(unparseable)
    raw = context.frame[S.TIMESTAMP].astype("string").iloc[bad]
    detail = raw.map(lambda value: f"timestamp {value!r} does not parse with format {fmt!r}")
    assignment.quarantine(bad, "unparseable_timestamp", detail)
    if len(bad):
        logger.warning(
            "temporal: %d rows have timestamps that do not parse with %r (quarantined)", len(bad), fmt
        )

    kept = np.flatnonzero(~missing & ~unparseable)
    kept_times = pd.DatetimeIndex(times.iloc[kept])
    _, local_groups = np.unique(context.groups[kept], return_inverse=True)
    group_time = pd.DatetimeIndex(pd.Series(kept_times).groupby(local_groups).max())
    group_rows = np.bincount(local_groups)

    cuts = config.cuts()
    if cuts is None:
        group_bucket = _cut_groups_by_ratio(group_time.asi8, group_rows, config.ratios.as_tuple())
        starts = [
            group_time[group_bucket == bucket].min() if (group_bucket == bucket).any() else None
            for bucket in (1, 2)
        ]
        details: dict[str, Any] = {"cut": "ratios"}
    else:
        validation_start, test_start = cuts
        group_bucket = np.where(group_time < validation_start, 0, np.where(group_time < test_start, 1, 2))
        _check_date_cuts(group_bucket, group_rows, kept_times, config)
        starts = [validation_start, test_start]
        details = {"cut": "dates"}
    details["validation_start"] = None if starts[0] is None else starts[0].isoformat()
    details["test_start"] = None if starts[1] is None else starts[1].isoformat()

    row_bucket = group_bucket[local_groups]
    spanning = np.zeros(len(kept), dtype=bool)
    for bucket, start in zip((1, 2), starts, strict=True):
        if start is not None:
            spanning |= (row_bucket == bucket) & (kept_times < start)
    details["spanning_group_rows"] = int(spanning.sum())
    details["spanning_groups"] = config.spanning_groups

    for index, name in enumerate(S.SPLIT_NAMES):
        assignment.split.iloc[kept[row_bucket == index]] = name
    if config.spanning_groups == "quarantine" and spanning.any():
        names = np.array(S.SPLIT_NAMES)[row_bucket[spanning]]
        starts_text = [starts[bucket - 1].isoformat() for bucket in row_bucket[spanning]]
        detail = pd.Series(
            [
                f"row at {stamp.isoformat()} is older than the start of the {name} split ({start}), "
                "where the rest of its group is"
                for stamp, name, start in zip(kept_times[spanning], names, starts_text, strict=True)
            ]
        )
        assignment.quarantine(kept[spanning], "group_spans_cut", detail)
        logger.warning("temporal: %d rows of groups that span a cut are quarantined", int(spanning.sum()))

    in_split = assignment.split.iloc[kept].notna().to_numpy()
    for index, name in enumerate(S.SPLIT_NAMES):
        chosen = kept_times[(row_bucket == index) & in_split]
        if len(chosen):
            details[f"{name}_from"] = chosen.min().isoformat()
            details[f"{name}_to"] = chosen.max().isoformat()
    details["timestamp_format"] = fmt
    assignment.details = details
    return assignment


def _cut_groups_by_ratio(
    group_time: np.ndarray, group_rows: np.ndarray, ratios: tuple[float, ...]
) -> np.ndarray:
    # Groups are taken in time order, ties by first appearance. Each goes to the split that contains
    # the middle of its rows on the cumulative row axis.
    order = np.lexsort((np.arange(len(group_time)), group_time))
    before = np.concatenate([[0], np.cumsum(group_rows[order])[:-1]])
    middle = before + group_rows[order] / 2.0
    total = group_rows.sum()
    edges = np.cumsum(ratios)[:-1] * total
    bucket = np.empty(len(group_time), dtype=np.int64)
    bucket[order] = np.searchsorted(edges, middle, side="right")
    return bucket


def _check_date_cuts(
    group_bucket: np.ndarray, group_rows: np.ndarray, times: pd.DatetimeIndex, config: TemporalConfig
) -> None:
    first = times.min().isoformat()
    last = times.max().isoformat()
    keys = {0: "validation_start", 1: "test_start", 2: "test_start"}
    for bucket, name in enumerate(S.SPLIT_NAMES):
        if group_rows[group_bucket == bucket].sum() == 0:
            key = keys[bucket]
            raise ParamsError(
                f"split.temporal.{key}",
                getattr(config, key),
                f"leaves the {name} split empty (timestamps run from {first} to {last})",
                "Choose cut dates inside that range.",
            )


def _select_kfold_test(
    context: SplitContext, seed: int, assignment: Assignment
) -> tuple[np.ndarray, dict[str, Any]]:
    config = context.config.kfold
    size = len(context)
    mode = config.test
    source = normalised_source_splits(context) if S.SPLIT in context.frame.columns else None
    has_predefined = source is not None and bool((source == TEST).any())
    if mode == "auto":
        mode = "predefined" if has_predefined else "holdout"
    details: dict[str, Any] = {"test": mode}

    if mode == "predefined":
        if not has_predefined:
            raise InputDataError(
                context.location,
                "no row has split = test, but `split.kfold.test` is predefined",
                "Set `split.kfold.test` to holdout, none or auto, or give the source a test split.",
                field=S.SPLIT,
            )
        test = (source == TEST).to_numpy()
    elif mode == "holdout":
        positions = np.arange(size)
        result = _bucket_rows(
            context,
            positions,
            (1.0 - config.test_size, config.test_size),
            _rng(seed, "kfold-test"),
            stratify=context.has_labels,
            ratio_key="split.kfold.test_size",
        )
        test = np.zeros(size, dtype=bool)
        test[positions[result.buckets == 1]] = True
        _quarantine_rare(assignment, positions[result.quarantined], result, context)
        details["test_carve"] = result.details
    else:
        test = np.zeros(size, dtype=bool)
        logger.warning("split.kfold.test is none: test.parquet is written empty")
    return test, details


def split_kfold(context: SplitContext, seed: int) -> Assignment:
    """K folds over the non-test rows, stratified when labels exist; one fold is the validation split.

    Each row gets a fold id; train.parquet contains every fold but `split.kfold.validation_fold`, which is
    validation.parquet. Rows of rare classes under train_only get fold -1: they are train rows in
    every fold. Test rows (predefined, a held-out carve, or none) have no fold.
    """
    config = context.config.kfold
    assignment = Assignment.empty(len(context))
    test, details = _select_kfold_test(context, seed, assignment)
    fold = pd.Series(pd.NA, index=range(len(context)), dtype="Int64")

    available = ~test & assignment.reason.isna().to_numpy()
    positions = np.flatnonzero(available)
    ratios = tuple([1.0 / config.folds] * config.folds)
    result = _bucket_rows(
        context,
        positions,
        ratios,
        _rng(seed, "kfold-folds"),
        stratify=context.has_labels,
        ratio_key="split.kfold.folds",
    )
    allocated = result.buckets >= 0
    fold.iloc[positions[allocated]] = result.buckets[allocated]
    fold.iloc[positions[result.forced_train]] = ALWAYS_TRAIN_FOLD
    _quarantine_rare(assignment, positions[result.quarantined], result, context)

    assignment.split.iloc[np.flatnonzero(test)] = TEST
    in_folds = fold.notna().to_numpy()
    is_validation = in_folds & (fold.fillna(ALWAYS_TRAIN_FOLD).to_numpy() == config.validation_fold)
    assignment.split.iloc[np.flatnonzero(in_folds & ~is_validation)] = TRAIN
    assignment.split.iloc[np.flatnonzero(is_validation)] = VALIDATION
    assignment.fold = fold.mask(assignment.split.isna())

    details.update(
        {
            "folds": config.folds,
            "validation_fold": config.validation_fold,
            "train_adapter_per_fold": config.train_adapter_per_fold,
            "fold_assignment": result.details,
            "fold_rows": {str(k): int((fold == k).sum()) for k in range(config.folds)},
            "always_train_rows": int((fold == ALWAYS_TRAIN_FOLD).sum()),
        }
    )
    assignment.details = details
    return assignment


STRATEGIES: dict[str, Callable[[SplitContext, int], Assignment]] = {
    "predefined": split_predefined,
    "holdout": split_holdout,
    "stratified": split_stratified,
    "temporal": split_temporal,
    "kfold": split_kfold,
}
