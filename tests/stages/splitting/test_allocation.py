from __future__ import annotations

import numpy as np
import pytest

from stages.core.errors import InputDataError
from stages.splitting.allocation import allocate, assign_buckets, minimum_class_rows

RATIOS = (0.8, 0.1, 0.1)


def _class_sizes(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 180, size=40)
    return np.repeat(np.arange(len(sizes)), sizes)


def test_singletons_within_one_row_per_class():
    strata = _class_sizes()
    groups = np.arange(len(strata))

    result = allocate(strata, groups, RATIOS, np.random.default_rng(1))

    assert result.within_one_row_per_class
    for stratum in np.unique(strata):
        size = int((strata == stratum).sum())
        for bucket, ratio in enumerate(RATIOS):
            count = int(((strata == stratum) & (result.buckets == bucket)).sum())
            assert abs(count - size * ratio) <= 1.0, (stratum, bucket, count, size * ratio)


def test_bucket_totals_close_to_ratios():
    strata = _class_sizes(2)
    groups = np.arange(len(strata))

    result = allocate(strata, groups, RATIOS, np.random.default_rng(0))

    for bucket, ratio in enumerate(RATIOS):
        total = int((result.buckets == bucket).sum())
        assert abs(total - ratio * len(strata)) <= 2


def test_groups_never_split():
    rng = np.random.default_rng(5)
    strata = rng.integers(0, 6, size=3000)
    groups = rng.integers(0, 700, size=3000)

    result = allocate(strata, groups, RATIOS, np.random.default_rng(0))

    for group in np.unique(groups):
        assert len(np.unique(result.buckets[groups == group])) == 1
    assert result.max_class_deviation_rows < 15


def test_zero_ratio_bucket_gets_nothing():
    strata = _class_sizes()
    groups = np.arange(len(strata)) // 3

    result = allocate(strata, groups, (0.9, 0.0, 0.1), np.random.default_rng(0))

    assert not (result.buckets == 1).any()
    assert (result.buckets >= 0).all()


def test_allocation_same_for_same_seed():
    strata = _class_sizes()
    groups = np.arange(len(strata)) // 2

    first = allocate(strata, groups, RATIOS, np.random.default_rng(9)).buckets
    second = allocate(strata, groups, RATIOS, np.random.default_rng(9)).buckets
    third = allocate(strata, groups, RATIOS, np.random.default_rng(10)).buckets

    assert np.array_equal(first, second)
    assert not np.array_equal(first, third)


def test_minimum_class_rows_from_smallest_ratio():
    assert minimum_class_rows(RATIOS) == 10
    assert minimum_class_rows((0.7, 0.15, 0.15)) == 7
    assert minimum_class_rows((0.2,) * 5) == 5
    assert minimum_class_rows((0.9, 0.0, 0.1)) == 10


def _rare_inputs():
    strata = np.array([0] * 40 + [1] * 4 + [2] * 30)
    groups = np.arange(len(strata))
    groups[40:44] = [100, 100, 101, 102]
    groups[44] = 100  # a class-2 row shares a group with a rare row
    return strata, groups


def test_rare_class_train_only_keeps_group_in_train():
    strata, groups = _rare_inputs()

    result = assign_buckets(
        np.arange(len(strata)),
        strata,
        ["common", "rare", "other"],
        groups,
        RATIOS,
        np.random.default_rng(0),
        policy="train_only",
        ratio_key="split.ratios",
        location="rows",
    )

    assert result.details["rare_classes"] == {"rare": 4}
    assert result.forced_train[40:45].all()
    assert (result.buckets[result.forced_train] == -1).all()
    assert not result.quarantined.any()


def test_rare_class_quarantine_marks_rows():
    strata, groups = _rare_inputs()

    result = assign_buckets(
        np.arange(len(strata)),
        strata,
        ["common", "rare", "other"],
        groups,
        RATIOS,
        np.random.default_rng(0),
        policy="quarantine",
        ratio_key="split.ratios",
        location="rows",
    )

    assert result.quarantined.sum() == 4
    assert result.quarantined[40:44].all()
    assert result.buckets[44] >= 0


def test_rare_class_error_names_class_and_key():
    strata, groups = _rare_inputs()

    with pytest.raises(
        InputDataError, match=r"class 'rare' has 4 rows, fewer than the 10 that `split.ratios`"
    ):
        assign_buckets(
            np.arange(len(strata)),
            strata,
            ["common", "rare", "other"],
            groups,
            RATIOS,
            np.random.default_rng(0),
            policy="error",
            ratio_key="split.ratios",
            location="rows.parquet",
        )
