"""Imbalance report and the train-split remedies: oversampling, undersampling, class weights."""

from __future__ import annotations

import pandas as pd
import pytest
from curation_samples import banking_rows, every_other_class

from stages.core.errors import InputDataError
from stages.curation.imbalance import class_weights, imbalance_report, oversample, undersample


@pytest.fixture
def skewed() -> pd.DataFrame:
    """Three real classes with 30, 12 and 5 rows."""
    labels = every_other_class(3)
    parts = [
        banking_rows("train", [label], per_label=count)
        for label, count in zip(labels, (30, 12, 5), strict=True)
    ]
    return pd.concat(parts, ignore_index=True)


def test_report_counts_ratio_and_small_classes(skewed):
    report = imbalance_report(skewed["label"], min_rows_per_class=10)
    labels = every_other_class(3)
    assert report["counts"] == {labels[0]: 30, labels[1]: 12, labels[2]: 5}
    assert report["imbalance_ratio"] == 6.0
    assert report["classes_below_min"] == [labels[2]]


def test_oversample_balances_to_largest_class(skewed):
    balanced = oversample(skewed, seed=1)
    assert balanced["label"].value_counts().tolist() == [30, 30, 30]
    pd.testing.assert_frame_equal(balanced.iloc[: len(skewed)], skewed)
    assert set(balanced["row_id"]) == set(skewed["row_id"])


def test_oversample_spreads_copies_evenly(skewed):
    balanced = oversample(skewed, seed=1)
    copies = balanced.loc[balanced["label"] == every_other_class(3)[2], "row_id"].value_counts()
    assert copies.max() - copies.min() <= 1


def test_undersample_balances_to_smallest_class(skewed):
    balanced = undersample(skewed, seed=1)
    assert balanced["label"].value_counts().tolist() == [5, 5, 5]
    assert balanced["row_id"].is_unique
    positions = skewed.reset_index().set_index("row_id").loc[balanced["row_id"], "index"]
    assert positions.is_monotonic_increasing


def test_resampling_is_deterministic_per_seed(skewed):
    pd.testing.assert_frame_equal(undersample(skewed, seed=3), undersample(skewed, seed=3))
    pd.testing.assert_frame_equal(oversample(skewed, seed=3), oversample(skewed, seed=3))
    assert not undersample(skewed, seed=3).equals(undersample(skewed, seed=4))


def test_explicit_targets(skewed):
    labels = every_other_class(3)
    over = oversample(skewed, seed=0, target=20)["label"].value_counts()
    under = undersample(skewed, seed=0, target=10)["label"].value_counts()
    assert [over[label] for label in labels] == [30, 20, 20]
    assert [under[label] for label in labels] == [10, 10, 5]


def test_class_weights_are_balanced(skewed):
    weights = class_weights(skewed["label"])
    labels = every_other_class(3)
    assert weights[labels[0]] == pytest.approx(47 / (3 * 30))
    assert weights[labels[2]] == pytest.approx(47 / (3 * 5))
    total = sum(weights[label] * count for label, count in zip(labels, (30, 12, 5), strict=True))
    assert total == pytest.approx(47)


def test_missing_label_is_rejected(skewed):
    skewed.loc[4, "label"] = pd.NA
    with pytest.raises(InputDataError, match=r"row 4, field `label`: a row has no label"):
        oversample(skewed, seed=0)
