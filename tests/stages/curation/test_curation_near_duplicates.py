"""Near-duplicates: planted edited copies of BANKING77 rows are found, verified and resolved."""

from __future__ import annotations

import pickle
from itertools import combinations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from curation_samples import banking_rows, edit_copy
from pydantic import ValidationError

from stages.curation.duplicates import DUPLICATES_TEST_ROW
from stages.curation.near_duplicates import (
    NEAR_DUPLICATE,
    NearDuplicateConfig,
    NearDuplicateIndex,
    Pairs,
    find_near_duplicate_pairs,
    resolve_near_duplicates,
    shingle_sets,
)
from stages.curation.strings import matching_keys

CONFIG = NearDuplicateConfig(shingle="char", shingle_size=5, num_perm=128, num_bands=32, threshold=0.6)


def exact_jaccard(left: str, right: str, config: NearDuplicateConfig = CONFIG) -> float:
    a, b = (set(shingles) for shingles in shingle_sets([left, right], config.shingle, config.shingle_size))
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.Series, set[tuple[int, int]]]:
    """Return matching keys of 300 dissimilar BANKING77 rows plus 100 edited copies, and the planted pairs."""
    rows = banking_rows("train")
    long_rows = rows[rows["text"].str.split().str.len() >= 10].iloc[::7]
    keys = matching_keys(long_rows["text"]).tolist()
    # Keep only base rows that are not near anything else already, so every true pair is planted.
    base: list[str] = []
    for key in keys:
        if all(exact_jaccard(key, other) < 0.45 for other in base):
            base.append(key)
        if len(base) == 300:
            break
    generator = np.random.default_rng(7)
    copies, pairs = [], set()
    for number, origin in enumerate(generator.choice(len(base), 100, replace=False)):
        kind = ("change", "drop", "add")[number % 3]
        copies.append(matching_keys(pd.Series([edit_copy(base[origin], kind, generator)])).iloc[0])
        pairs.add((int(origin), len(base) + number))
    return pd.Series(base + copies, dtype="string"), pairs


def found_pairs(pairs: Pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))


def test_planted_copies_found_with_high_recall_and_precision(planted):
    keys, truth = planted
    found = found_pairs(find_near_duplicate_pairs(keys, CONFIG, seed=42))
    hits = len(found & truth)
    assert hits / len(truth) >= 0.95, f"recall {hits}/{len(truth)}"
    assert hits / len(found) >= 0.95, f"precision {hits}/{len(found)}"


def test_verified_jaccard_is_exact(planted):
    keys, _ = planted
    pairs = find_near_duplicate_pairs(keys, CONFIG, seed=42)
    expected = [
        exact_jaccard(keys[left], keys[right]) for left, right in zip(pairs.left, pairs.right, strict=True)
    ]
    np.testing.assert_allclose(pairs.jaccard, expected, atol=1e-9)
    assert (pairs.jaccard >= CONFIG.threshold).all()


def test_candidates_below_threshold_are_dropped(planted):
    keys, _ = planted
    loose = find_near_duplicate_pairs(keys, CONFIG.model_copy(update={"threshold": 0.3}), seed=42)
    strict = find_near_duplicate_pairs(keys, CONFIG, seed=42)
    assert loose.candidates == strict.candidates
    assert len(loose) > len(strict)


def test_batches_give_the_same_pairs(planted):
    keys, _ = planted
    whole = found_pairs(find_near_duplicate_pairs(keys, CONFIG, seed=42))
    batched = found_pairs(
        find_near_duplicate_pairs(keys, CONFIG.model_copy(update={"batch_rows": 37}), seed=42)
    )
    assert batched == whole


def test_index_state_survives_pickling(planted):
    keys, _ = planted
    values = keys.tolist()
    index = NearDuplicateIndex.from_config(CONFIG, seed=42)
    first = index.add_batch(values[:250])
    restored = pickle.loads(pickle.dumps(index))
    second = restored.add_batch(values[250:])
    assert len(restored) == len(values)
    assert found_pairs(Pairs.concat([first, second])) == found_pairs(
        find_near_duplicate_pairs(keys, CONFIG, seed=42)
    )


def test_word_shingles_find_reordered_copies():
    config = NearDuplicateConfig(shingle="word", shingle_size=1, num_perm=64, num_bands=32, threshold=0.8)
    keys = [
        "why was my card declined at the shop today",
        "at the shop today why was my card declined",
        "how do i top up",
    ]
    pairs = find_near_duplicate_pairs(keys, config, seed=1)
    assert found_pairs(pairs) == {(0, 1)}


def test_arrow_and_pandas_batches_agree(planted):
    keys, _ = planted
    index = NearDuplicateIndex.from_config(CONFIG, seed=42)
    first = index.add_batch(pa.array(keys.iloc[:200].tolist()))
    second = index.add_batch(keys.iloc[200:])
    expected = found_pairs(find_near_duplicate_pairs(keys.tolist(), CONFIG, seed=42))
    assert found_pairs(Pairs.concat([first, second])) == expected


def test_empty_keys_never_match():
    pairs = find_near_duplicate_pairs(["", "", None, "abc def ghi"], CONFIG, seed=1)
    assert len(pairs) == 0


def test_shingles_of_short_keys():
    assert shingle_sets(["abc", ""], "char", 5) == [["abc"], []]
    assert shingle_sets(["a b c"], "word", 2) == [["a b", "b c"]]


def test_bands_must_divide_permutations():
    with pytest.raises(ValidationError, match="must divide num_perm"):
        NearDuplicateConfig(num_perm=128, num_bands=12)


def resolve(pairs: list[tuple[int, int, float]], splits: list[str]):
    left, right, jaccard = (np.array(values) for values in zip(*pairs, strict=True))
    split = pd.Series(splits, dtype="string")
    ids = pd.Series([f"r{i}" for i in range(len(splits))], dtype="string")
    return resolve_near_duplicates(Pairs(left, right, jaccard), split == "test", ids, split)


def test_first_row_of_a_cluster_is_kept():
    result = resolve([(0, 1, 0.9), (1, 2, 0.8)], ["train", "train", "train", "train"])
    assert result.decisions.reasons.tolist() == [pd.NA, NEAR_DUPLICATE, NEAR_DUPLICATE, pd.NA]
    assert result.clusters.tolist() == ["r0", "r0", "r0", pd.NA]
    assert result.decisions.details[2] == "Jaccard 0.80 with row r1; cluster kept as row r0"


def test_test_rows_win_over_train_rows():
    result = resolve([(0, 1, 0.9), (1, 2, 0.95), (0, 3, 0.9)], ["train", "test", "test", "train"])
    reasons = result.decisions.reasons.tolist()
    assert reasons == [DUPLICATES_TEST_ROW, pd.NA, pd.NA, NEAR_DUPLICATE]
    assert result.clusters.tolist() == ["r1", "r1", "r1", "r1"]
    assert "test row r1" in result.decisions.details[0]
    assert result.decisions.metrics["clusters"] == 1


def test_no_pairs_removes_nothing():
    split = pd.Series(["train", "test"], dtype="string")
    result = resolve_near_duplicates(
        Pairs.empty(), split == "test", pd.Series(["a", "b"], dtype="string"), split
    )
    assert result.decisions.reasons.isna().all()
    assert result.clusters.isna().all()


def test_every_pair_of_a_clique_is_reported():
    keys = [
        "how do i top up my card today",
        "how do i top up my card today please",
        "how do i top up my card",
    ]
    pairs = find_near_duplicate_pairs(keys, CONFIG.model_copy(update={"threshold": 0.5}), seed=3)
    assert found_pairs(pairs) == set(combinations(range(3), 2))
