"""Assigning rows to buckets (splits or folds) by ratios, keeping groups whole and classes balanced.

The allocation works in two passes:

1. Groups of more than one row are taken in a seeded random order. Each goes to the bucket where
   it most reduces the summed squared gap between assigned and target rows per class, where a
   target is class size x bucket ratio. The random order keeps group size independent of the bucket.
2. Rows that are groups of one fill the remaining gap class by class. The rows of a class are
   shuffled and cut into counts that are the floor or the ceiling of their exact share. The rows
   left after flooring go to the buckets that earlier classes left shortest, so the bucket totals
   stay within a row or two of their targets.

With no group of more than one row, every class gets within one row of its exact share in every
bucket. With larger groups the result is a greedy approximation; `max_class_deviation_rows` in
the returned allocation reports how far from exact it ended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.core.errors import InputDataError

NO_LABEL = "<no label>"


@dataclass
class Allocation:
    """Bucket index per row, and how far the per-class counts ended from their exact targets."""

    buckets: np.ndarray
    max_class_deviation_rows: float
    within_one_row_per_class: bool


def allocate(
    strata: np.ndarray, groups: np.ndarray, ratios: Sequence[float], rng: np.random.Generator
) -> Allocation:
    """Assign each row to a bucket with the given ratios; rows of one group share a bucket.

    `strata` contains one class code per row (all equal for an unstratified split) and `groups`
    one group code per row. Buckets with ratio 0 receive no rows.
    """
    size = len(strata)
    ratio = np.asarray(ratios, dtype=float)
    buckets = np.full(size, -1, dtype=np.int64)
    if size == 0:
        return Allocation(buckets, 0.0, True)

    _, strata = np.unique(strata, return_inverse=True)
    _, groups = np.unique(groups, return_inverse=True)
    class_sizes = np.bincount(strata)
    targets = np.outer(ratio, class_sizes)
    assigned = np.zeros_like(targets)
    active = ratio > 0

    group_sizes = np.bincount(groups)
    multi = np.flatnonzero(group_sizes > 1)
    if len(multi):
        by_group = np.argsort(groups, kind="stable")
        starts = np.concatenate([[0], np.cumsum(group_sizes)])
        for group in multi[rng.permutation(len(multi))]:
            rows = by_group[starts[group] : starts[group + 1]]
            classes, counts = np.unique(strata[rows], return_counts=True)
            gap = assigned[:, classes] - targets[:, classes]
            # Change of the summed squared gap if the group joins each bucket.
            cost = (counts * (2.0 * gap + counts)).sum(axis=1)
            cost[~active] = np.inf
            bucket = int(np.argmin(cost))
            buckets[rows] = bucket
            assigned[bucket, classes] += counts

    single = group_sizes[groups] == 1
    shortfall = np.zeros(len(ratio))
    for stratum in range(len(class_sizes)):
        rows = np.flatnonzero(single & (strata == stratum))
        if not len(rows):
            continue
        rows = rows[rng.permutation(len(rows))]
        need = np.clip(targets[:, stratum] - assigned[:, stratum], 0.0, None)
        need[~active] = 0.0
        if need.sum() <= 0:
            need = ratio.copy()
        exact = len(rows) * need / need.sum()
        counts = _round_counts(exact, len(rows), shortfall, active)
        shortfall += exact - counts
        edges = np.concatenate([[0], np.cumsum(counts)])
        for bucket in range(len(ratio)):
            buckets[rows[edges[bucket] : edges[bucket + 1]]] = bucket
        assigned[:, stratum] += counts

    deviation = float(np.abs(assigned - targets).max())
    return Allocation(buckets, round(deviation, 6), deviation <= 1.0 + 1e-9)


def _round_counts(exact: np.ndarray, total: int, shortfall: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Round exact shares to whole rows summing to `total`, each the floor or ceiling of its share.

    The rows left after flooring go to the active buckets with the largest shortfall so far plus
    fractional part, so rounding errors do not pile up in one bucket across classes.
    """
    counts = np.floor(np.round(exact, 9)).astype(np.int64)
    leftover = total - int(counts.sum())
    priority = shortfall + (exact - counts)
    priority = np.where(active, priority, -np.inf)
    order = np.argsort(-priority, kind="stable")
    for bucket in order[:leftover]:
        counts[bucket] += 1
    return counts


@dataclass
class BucketResult:
    """Allocation of a subset of rows, after the rare-class policy.

    `buckets` has -1 for rows the policy forced into train or quarantined; `forced_train` and
    `quarantined` mark those rows. Positions follow the `positions` given to `assign_buckets`.
    """

    buckets: np.ndarray
    forced_train: np.ndarray
    quarantined: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


def minimum_class_rows(ratios: Sequence[float]) -> int:
    """Return the fewest rows a class needs so that its exact share is at least one row in every bucket."""
    smallest = min(ratio for ratio in ratios if ratio > 0)
    return max(1, math.ceil(1.0 / smallest - 1e-9))


def assign_buckets(
    positions: np.ndarray,
    strata: np.ndarray | None,
    strata_names: Sequence[str],
    groups: np.ndarray,
    ratios: Sequence[float],
    rng: np.random.Generator,
    *,
    policy: str,
    ratio_key: str,
    location: str,
) -> BucketResult:
    """Allocate the rows at `positions`, stratified when `strata` is given, applying the rare-class policy.

    A class is rare when it has fewer rows than `minimum_class_rows(ratios)`, so some bucket would get
    no row of it. `policy` is train_only (the class's rows and their groups stay out of the
    allocation, for the caller to put in train), quarantine (its rows are quarantined) or error.
    """
    count = len(positions)
    buckets = np.full(count, -1, dtype=np.int64)
    forced = np.zeros(count, dtype=bool)
    quarantined = np.zeros(count, dtype=bool)
    local_groups = groups[positions]
    details: dict[str, Any] = {"stratified": strata is not None}

    if strata is None:
        local_strata = np.zeros(count, dtype=np.int64)
    else:
        local_strata = strata[positions]
        needed = minimum_class_rows(ratios)
        codes, sizes = np.unique(local_strata, return_counts=True)
        rare = {
            str(strata_names[code]): int(rows)
            for code, rows in zip(codes, sizes, strict=True)
            if rows < needed
        }
        details["rare_class_policy"] = policy
        details["minimum_class_rows"] = needed
        details["rare_classes"] = dict(sorted(rare.items()))
        if rare:
            name, rows = sorted(rare.items(), key=lambda item: (item[1], item[0]))[0]
            if policy == "error":
                raise InputDataError(
                    location,
                    f"class {name!r} has {rows} rows, fewer than the {needed} that `{ratio_key}` needs to "
                    f"put one row in every split ({len(rare)} classes are that small: {sorted(rare)[:10]})",
                    "Set `split.rare_class_policy` to train_only or quarantine, add rows of that class, "
                    f"or change `{ratio_key}`.",
                    field="label",
                )
            rare_codes = [code for code in codes if str(strata_names[code]) in rare]
            rare_rows = np.isin(local_strata, rare_codes)
            if policy == "quarantine":
                quarantined = rare_rows
            else:
                forced = np.isin(local_groups, np.unique(local_groups[rare_rows]))

    rest = ~forced & ~quarantined
    allocation = allocate(local_strata[rest], local_groups[rest], ratios, rng)
    buckets[rest] = allocation.buckets
    details["within_one_row_per_class"] = allocation.within_one_row_per_class
    details["max_class_deviation_rows"] = allocation.max_class_deviation_rows
    return BucketResult(buckets, forced, quarantined, details)
