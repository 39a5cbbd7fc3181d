"""Text normalisation, shingles and near-duplicate search (MinHash LSH candidates, exact Jaccard check)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rensa import RMinHash, RMinHashLSH

from stages.splitting.config import SimilarityConfig

# MinHash seed. It is fixed rather than taken from params so that which pairs count as near
# duplicates never depends on the split seed.
MINHASH_SEED = 1729
# Share of pairs at exactly the threshold that LSH must return as candidates when choosing bands.
CANDIDATE_RECALL = 0.995

_WORD = re.compile(r"\w+")


def normalise_text(text: object) -> str:
    """Return the text in Unicode NFKC, case-folded, with runs of whitespace collapsed to one space."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return ""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def shingles(normalised: str, kind: str, size: int) -> frozenset[str]:
    """Return the set of character or word n-grams of a normalised text.

    A text shorter than one shingle gives a single shingle (the whole text), so that two equal
    short texts still match. Word shingles use runs of letters and digits, so punctuation is ignored.
    """
    if kind == "word":
        words = _WORD.findall(normalised)
        if not words:
            return frozenset()
        if len(words) <= size:
            return frozenset([" ".join(words)])
        return frozenset(" ".join(words[start : start + size]) for start in range(len(words) - size + 1))
    if not normalised:
        return frozenset()
    if len(normalised) <= size:
        return frozenset([normalised])
    return frozenset(normalised[start : start + size] for start in range(len(normalised) - size + 1))


def shingle_sets(texts: Iterable[object], config: SimilarityConfig) -> list[frozenset[str]]:
    return [shingles(normalise_text(text), config.shingle, config.shingle_size) for text in texts]


def jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    """Return |A ∩ B| / |A ∪ B|; two empty sets have similarity 0."""
    if not left or not right:
        return 0.0
    common = len(left & right)
    return common / (len(left) + len(right) - common)


def choose_bands(num_perm: int, threshold: float) -> int:
    """Return the fewest LSH bands that still find pairs at `threshold` with CANDIDATE_RECALL.

    A pair with Jaccard s shares a band with probability 1 - (1 - s**r)**b, where b bands of r rows
    use all num_perm hash values. Fewer bands give fewer candidates to verify.
    """
    divisors = [bands for bands in range(1, num_perm + 1) if num_perm % bands == 0]
    for bands in divisors:
        rows = num_perm // bands
        recall = 1.0 - (1.0 - threshold**rows) ** bands
        if recall >= CANDIDATE_RECALL:
            return bands
    return num_perm


@dataclass(frozen=True)
class NearPair:
    """Two rows (positions in their sequences) whose shingle sets have Jaccard >= threshold."""

    left: int
    right: int
    similarity: float


def _minhashes(sets: Sequence[frozenset[str]], positions: list[int], num_perm: int) -> list:
    token_lists = [sorted(sets[position]) for position in positions]
    return RMinHash.from_token_sets(token_lists, num_perm, MINHASH_SEED)


def near_duplicate_pairs(
    left: Sequence[frozenset[str]],
    config: SimilarityConfig,
    right: Sequence[frozenset[str]] | None = None,
) -> list[NearPair]:
    """Return every pair with exact Jaccard >= threshold, found through MinHash LSH candidates.

    With `right` given, pairs join a row of `left` to a row of `right`; without it, pairs are
    within `left` with left < right. Empty shingle sets never pair. LSH may miss a pair whose
    similarity is at the threshold with probability 1 - CANDIDATE_RECALL or less; every returned
    pair is verified exactly, so none is a false positive.
    """
    bands = choose_bands(config.num_perm, config.threshold)
    indexed = [position for position, items in enumerate(left) if items]
    if not indexed:
        return []
    lsh = RMinHashLSH(config.threshold, config.num_perm, bands)
    left_hashes = _minhashes(left, indexed, config.num_perm)
    lsh.insert_many(left_hashes, 0)

    if right is None:
        queries, query_hashes = indexed, left_hashes
        sets_right = left
    else:
        queries = [position for position, items in enumerate(right) if items]
        query_hashes = _minhashes(right, queries, config.num_perm) if queries else []
        sets_right = right

    pairs: list[NearPair] = []
    for query_position, candidates in zip(queries, lsh.query_all(query_hashes), strict=True):
        query_set = sets_right[query_position]
        for key in sorted(candidates):
            left_position = indexed[key]
            if right is None and left_position >= query_position:
                continue
            similarity = jaccard(left[left_position], query_set)
            if similarity >= config.threshold:
                pairs.append(NearPair(left_position, query_position, similarity))
    pairs.sort(key=lambda pair: (pair.left, pair.right))
    return pairs


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, size: int):
        self.parent = np.arange(size)
        self.size = np.ones(size, dtype=np.int64)

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return int(item)

    def union(self, first: int, second: int) -> None:
        root_a, root_b = self.find(first), self.find(second)
        if root_a == root_b:
            return
        if self.size[root_a] < self.size[root_b]:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] += self.size[root_b]

    def labels(self) -> np.ndarray:
        """Return one cluster code per item, numbered by first appearance (so in row order)."""
        roots = np.array([self.find(item) for item in range(len(self.parent))], dtype=np.int64)
        _, first_seen, inverse = np.unique(roots, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first_seen, kind="stable"), kind="stable")
        return order[inverse]
