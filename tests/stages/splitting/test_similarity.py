from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from split_data import banking_rows

from stages.core import schema as S
from stages.splitting.config import SimilarityConfig
from stages.splitting.similarity import (
    UnionFind,
    choose_bands,
    jaccard,
    near_duplicate_pairs,
    normalise_text,
    shingle_sets,
    shingles,
)


def test_normalise_text_folds_case_width_and_space():
    assert normalise_text("  Ｃａｒｄ\u00a0\tARRIVAL\n") == "card arrival"
    assert normalise_text("Straße") == "strasse"
    assert normalise_text(None) == ""
    assert normalise_text(pd.NA) == ""
    assert normalise_text(float("nan")) == ""


def test_shingles_of_short_text_is_whole_text():
    assert shingles("hi", "char", 5) == frozenset(["hi"])
    assert shingles("top up", "word", 3) == frozenset(["top up"])
    assert shingles("", "char", 5) == frozenset()


def test_word_shingles_ignore_punctuation():
    assert shingles("why, is my card - blocked?", "word", 2) == shingles("why is my card blocked", "word", 2)


def test_jaccard_of_empty_sets_is_zero():
    assert jaccard(frozenset(), frozenset()) == 0.0
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
def test_choose_bands_reaches_recall_at_threshold(threshold):
    bands = choose_bands(128, threshold)
    rows = 128 // bands
    assert 128 % bands == 0
    assert 1 - (1 - threshold**rows) ** bands >= 0.995


def test_near_pairs_match_brute_force_on_banking77():
    frame = banking_rows(train_rows=700, test_rows=300, seed=3)
    config = SimilarityConfig(threshold=0.6)
    sets = shingle_sets(frame[S.TEXT], config)
    expected = {
        (i, j)
        for i in range(len(sets))
        for j in range(i + 1, len(sets))
        if jaccard(sets[i], sets[j]) >= config.threshold
    }

    found = {(pair.left, pair.right) for pair in near_duplicate_pairs(sets, config)}

    assert expected, "the sample should contain near duplicates at 0.6"
    assert found == expected


def test_near_pairs_between_two_sides():
    config = SimilarityConfig()
    left = shingle_sets(["Can I use my apple watch to top up?", "How do I top up?", ""], config)
    right = shingle_sets(["Can I use my Apple Watch to to top up?", "Where is my refund?", ""], config)

    pairs = near_duplicate_pairs(left, config, right=right)

    assert [(pair.left, pair.right) for pair in pairs] == [(0, 0)]
    assert pairs[0].similarity >= 0.9


def test_near_pairs_full_banking77_take_seconds():
    frame = banking_rows(train_rows=None, test_rows=None)
    config = SimilarityConfig()
    train = shingle_sets(frame.loc[frame[S.SPLIT] == "train", S.TEXT], config)
    test = shingle_sets(frame.loc[frame[S.SPLIT] == "test", S.TEXT], config)

    started = time.perf_counter()
    pairs = near_duplicate_pairs(train, config, right=test)
    elapsed = time.perf_counter() - started

    assert len(train) == 10003
    assert len(test) == 3080
    assert len(pairs) >= 10
    assert elapsed < 15


def test_union_find_labels_in_row_order():
    union = UnionFind(6)
    union.union(4, 1)
    union.union(5, 3)
    union.union(3, 1)

    labels = union.labels()

    assert labels.tolist() == [0, 1, 2, 1, 1, 1]
    assert np.unique(labels).tolist() == [0, 1, 2]
