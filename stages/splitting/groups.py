"""Group keys that every strategy keeps whole: a group column, near-duplicate clusters, or none."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.splitting.config import SplitConfig
from stages.splitting.similarity import UnionFind, near_duplicate_pairs, shingle_sets

logger = logging.getLogger(__name__)

# A cluster above this share of all rows usually means that near-duplicate chains (A~B, B~C, ...)
# joined unrelated rows. The split still works, but the stratification gets coarse.
LARGE_GROUP_SHARE = 0.05


@dataclass
class Groups:
    """One group code per row position (0..n_groups-1, numbered in row order) and a summary."""

    codes: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)


def group_values(frame: pd.DataFrame, column: str, location: str) -> pd.Series:
    """Return the group column as strings, with null and blank values as <NA> (rows without a group)."""
    if column not in frame.columns:
        raise InputDataError(
            location,
            f"column `{column}` named by split.group_column is missing; columns are {list(frame.columns)}",
            "Set `split.group_column` to one of them, or `split.group_by` to none.",
            field=column,
        )
    values = frame[column].astype("string").str.strip()
    return values.mask(values == "")


def resolve_groups(frame: pd.DataFrame, config: SplitConfig, location: str) -> Groups:
    """Compute the group of every row according to `split.group_by`.

    `column` groups rows that share a value of `split.group_column`; `near_duplicates` also joins
    rows whose texts are near duplicates (union-find over verified pairs), so near copies share a
    group; `none` makes each row its own group. Rows with an empty group value are groups of one.
    """
    size = len(frame)
    union = UnionFind(size)
    metrics: dict[str, Any] = {"group_by": config.group_by}

    if config.group_by in ("column", "near_duplicates"):
        values = group_values(frame, config.group_column, location)
        metrics["group_column"] = config.group_column
        present = values.notna().to_numpy()
        codes, _ = pd.factorize(values[present], sort=False)
        positions = np.flatnonzero(present)
        first_of_code: dict[int, int] = {}
        for position, code in zip(positions, codes, strict=True):
            anchor = first_of_code.setdefault(int(code), int(position))
            if anchor != position:
                union.union(anchor, int(position))
        metrics["rows_with_group_value"] = int(present.sum())

    if config.group_by == "near_duplicates":
        sets = shingle_sets(frame[S.TEXT].tolist(), config.near_duplicates)
        pairs = near_duplicate_pairs(sets, config.near_duplicates)
        for pair in pairs:
            union.union(pair.left, pair.right)
        metrics["near_duplicate_pairs"] = len(pairs)

    codes = union.labels() if size else np.zeros(0, dtype=np.int64)
    sizes = np.bincount(codes) if size else np.zeros(0, dtype=np.int64)
    multi = sizes[sizes > 1]
    metrics.update(
        {
            "groups": len(sizes),
            "multi_row_groups": len(multi),
            "rows_in_multi_row_groups": int(multi.sum()),
            "largest_group_rows": int(sizes.max()) if len(sizes) else 0,
        }
    )
    if size and sizes.max() > max(LARGE_GROUP_SHARE * size, 10):
        logger.warning(
            "the largest group has %d of %d rows; near-duplicate chains or a coarse group column "
            "make stratification coarse",
            int(sizes.max()),
            size,
        )
    logger.info(
        "groups (%s): %d groups, %d with more than one row (%d rows)",
        config.group_by,
        metrics["groups"],
        metrics["multi_row_groups"],
        metrics["rows_in_multi_row_groups"],
    )
    return Groups(codes=codes, metrics=metrics)
