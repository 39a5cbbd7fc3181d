"""Exact duplicates and conflicting labels, with the protected test split."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.curation.duplicates import (
    CONFLICTING_LABELS,
    DUPLICATES_TEST_ROW,
    EXACT_DUPLICATE,
    exact_duplicate_decisions,
)
from stages.curation.strings import matching_keys

NA = pd.NA


def decide(texts, labels, splits, policy="quarantine_all"):
    texts = pd.Series(texts, dtype="string")
    splits = pd.Series(splits, dtype="string")
    ids = pd.Series([f"r{i}" for i in range(len(texts))], dtype="string")
    label_series = pd.Series(labels, dtype="string") if labels is not None else None
    return exact_duplicate_decisions(
        matching_keys(texts), label_series, splits == "test", ids, splits, policy
    )


def test_normalised_copies_keep_the_first_row():
    decisions = decide(
        ["Where is my card?", "where is my CARD", "Where is my card ?!", "Is my card lost?"],
        ["card_arrival"] * 4,
        ["train"] * 4,
    )
    assert decisions.reasons.tolist() == [NA, EXACT_DUPLICATE, EXACT_DUPLICATE, NA]
    assert decisions.details[1] == "same text as row r0"


def test_conflicting_labels_quarantine_all():
    decisions = decide(["Top up failed", "top up failed", "top up failed."], ["a", "b", "b"], ["train"] * 3)
    assert decisions.reasons.tolist() == [CONFLICTING_LABELS] * 3
    assert decisions.details[0] == "same text carries labels a, b"
    assert decisions.metrics["conflicting_texts"] == 1


def test_conflicting_labels_keep_majority():
    decisions = decide(["Top up failed"] * 4, ["a", "b", "b", "b"], ["train"] * 4, "keep_majority")
    assert decisions.reasons.tolist() == [CONFLICTING_LABELS, NA, EXACT_DUPLICATE, EXACT_DUPLICATE]


def test_majority_tie_quarantines_all():
    decisions = decide(["x y", "x y"], ["a", "b"], ["train", "train"], "keep_majority")
    assert decisions.reasons.tolist() == [CONFLICTING_LABELS, CONFLICTING_LABELS]


@pytest.mark.parametrize("policy", ["quarantine_all", "keep_majority"])
def test_train_copy_of_test_row_is_removed(policy: str):
    decisions = decide(
        ["Lost my card", "lost my card!", "Lost my card"],
        ["a", "b", "a"],
        ["train", "test", "validation"],
        policy,
    )
    assert decisions.reasons.tolist() == [DUPLICATES_TEST_ROW, NA, DUPLICATES_TEST_ROW]
    assert decisions.details[0] == "same text as test row r1"


def test_test_rows_are_never_removed():
    decisions = decide(["Lost my card", "lost my card", "Lost my card"], ["a", "b", "a"], ["test"] * 3)
    assert decisions.reasons.isna().all()
    assert decisions.metrics["protected_duplicates_kept"] == 2
    assert decisions.metrics["protected_label_conflicts_kept"] == 1


def test_generation_keys_without_labels():
    decisions = decide(
        ["name[A] | A is nice", "name[A] | a is nice", "name[A] | A is great"], None, ["train"] * 3
    )
    assert decisions.reasons.tolist() == [NA, EXACT_DUPLICATE, NA]
