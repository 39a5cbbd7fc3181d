"""Near-duplicate detection: MinHash signatures, LSH candidates and verified Jaccard similarity.

The search runs per batch. `NearDuplicateIndex` is the state carried from one batch to the
next: the rensa LSH index and the shingle hashes of every indexed row. `add_batch` indexes a
batch and returns the verified pairs it forms with itself and with earlier batches. Nothing
lives in module globals, so a caller can keep one index per dataset, pickle it between
processes, or feed it batches read from a Parquet file one at a time.

LSH only proposes candidates: rows that agree on all rows of at least one band of their MinHash
signatures. Each candidate pair is then verified with the exact Jaccard similarity of the two
shingle sets, vectorised with numpy, and kept when it reaches `threshold`.

`resolve_near_duplicates` turns verified pairs into clusters (connected components, the same
result as union-find) and keeps one representative per cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, model_validator
from rensa import RMinHash, RMinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stages.core.params import StageConfig
from stages.curation.duplicates import DUPLICATES_TEST_ROW, Decisions

NEAR_DUPLICATE = "near_duplicate"

# A batch of matching keys: a list, a pandas Series or an Arrow array of strings.
Keys = Sequence[str] | pd.Series | pa.Array | pa.ChunkedArray

# Stored shingle hashes keep their top 32 bits, packed after the row number into one uint64
# (row << 32 | hash >> 32), so a binary search in one sorted array finds whether row r
# contains hash h. NOTE: two different shingles of one pair collide in 32 bits with probability about
# |A|·|B| / 2**32 (under 1e-6 for 60-shingle texts), which can only raise a Jaccard value slightly.
HASH_BITS = 32
MAX_ROWS = 2**31


class NearDuplicateConfig(StageConfig):
    """Shingling, MinHash and LSH settings of the near-duplicate search."""

    enabled: bool = True
    shingle: Literal["char", "word"] = "char"
    shingle_size: int = Field(default=5, ge=1, le=64)
    num_perm: int = Field(default=128, ge=2, le=2048)
    num_bands: int = Field(default=16, ge=1)
    threshold: float = Field(default=0.85, gt=0.0, le=1.0)
    batch_rows: int = Field(default=100_000, ge=1)

    @model_validator(mode="after")
    def _bands_divide_permutations(self) -> NearDuplicateConfig:
        if self.num_perm % self.num_bands:
            raise ValueError(
                f"num_bands ({self.num_bands}) must divide num_perm ({self.num_perm}) "
                "so that every band has the same number of rows"
            )
        return self


def shingle_sets(keys: Sequence[str], unit: Literal["char", "word"], size: int) -> list[list[str]]:
    """Return the shingles of each matching key: character or word n-grams of length `size`.

    A key shorter than one shingle is its own single shingle; an empty key has no shingles.
    """
    if unit == "char":
        return [
            [key[i : i + size] for i in range(len(key) - size + 1)] or ([key] if key else []) for key in keys
        ]
    shingles = []
    for key in keys:
        words = key.split()
        grams = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
        shingles.append(grams or ([key] if key else []))
    return shingles


@dataclass
class Pairs:
    """Verified near-duplicate pairs as global row numbers (left < right) with their Jaccard similarity."""

    left: np.ndarray
    right: np.ndarray
    jaccard: np.ndarray
    candidates: int = 0

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.left)

    @classmethod
    def concat(cls, parts: list[Pairs]) -> Pairs:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([part.left for part in parts]),
            np.concatenate([part.right for part in parts]),
            np.concatenate([part.jaccard for part in parts]),
            sum(part.candidates for part in parts),
        )


@dataclass
class _Chunk:
    first_row: int
    packed: np.ndarray  # sorted uint64: row << 32 | hash >> 32


@dataclass
class ShingleStore:
    """Shingle hashes of every row added so far, for exact Jaccard similarity of any pair of rows.

    Rows are numbered 0, 1, 2, ... in the order they were added. Each batch is one sorted chunk,
    so adding a batch never copies the earlier ones.
    """

    _chunks: list[_Chunk] = field(default_factory=list, repr=False)
    _set_sizes: list[np.ndarray] = field(default_factory=list, repr=False)
    _rows: int = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, hashes: list[list[int]]) -> None:
        """Store one batch of rows, each given as the 64-bit hashes of its shingles."""
        first = self._rows
        lengths = np.fromiter(map(len, hashes), dtype=np.int64, count=len(hashes))
        flat = np.fromiter(chain.from_iterable(hashes), dtype=np.uint64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(first, first + len(hashes), dtype=np.uint64), lengths)
        packed = _sorted_unique((rows << np.uint64(HASH_BITS)) | (flat >> np.uint64(64 - HASH_BITS)))
        row_of = (packed >> np.uint64(HASH_BITS)).astype(np.int64)
        self._chunks.append(_Chunk(first, packed))
        self._set_sizes.append(np.bincount(row_of - first, minlength=len(hashes)).astype(np.int64))
        self._rows += len(hashes)

    def jaccard(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Return the exact Jaccard similarity of the stored shingle sets of each pair of rows."""
        if len(left) == 0:
            return np.empty(0, np.float64)
        sizes = np.concatenate(self._set_sizes)
        size_left, size_right = sizes[left], sizes[right]
        # Walk the smaller set of each pair and look its hashes up in the larger one.
        walk = np.where(size_left <= size_right, left, right)
        probe = np.where(size_left <= size_right, right, left)
        walk_sizes = sizes[walk]
        pair_of_element = np.repeat(np.arange(len(walk)), walk_sizes)
        hashes = self._hashes_of(walk, walk_sizes)
        wanted = (probe[pair_of_element].astype(np.uint64) << np.uint64(HASH_BITS)) | hashes
        found = self._contains(wanted, probe[pair_of_element])
        intersection = np.bincount(pair_of_element, weights=found, minlength=len(walk))
        union = size_left + size_right - intersection
        return np.divide(intersection, union, out=np.zeros(len(walk)), where=union > 0)

    def _chunk_of(self, rows: np.ndarray) -> np.ndarray:
        starts = np.array([chunk.first_row for chunk in self._chunks], dtype=np.int64)
        return np.searchsorted(starts, rows, side="right") - 1

    def _hashes_of(self, rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Return the stored 32-bit hashes of `rows`, concatenated in the order of `rows`."""
        result = np.empty(int(sizes.sum()), dtype=np.uint64)
        element_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        chunk_ids = self._chunk_of(rows)
        for chunk_id in np.flatnonzero(np.bincount(chunk_ids, minlength=len(self._chunks))):
            chunk = self._chunks[chunk_id]
            in_chunk = chunk_ids == chunk_id
            chunk_rows = rows[in_chunk]
            # The first stored element of each row: binary search for (row << 32).
            begin = np.searchsorted(chunk.packed, chunk_rows.astype(np.uint64) << np.uint64(HASH_BITS))
            row_sizes = sizes[in_chunk]
            ramp = np.arange(int(row_sizes.sum())) - np.repeat(np.cumsum(row_sizes) - row_sizes, row_sizes)
            source = np.repeat(begin, row_sizes) + ramp
            target = np.repeat(element_start[in_chunk], row_sizes) + ramp
            result[target] = chunk.packed[source] & np.uint64(2**HASH_BITS - 1)
        return result

    def _contains(self, wanted: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Return, per packed (row, hash) value, whether the row's stored set contains the hash."""
        found = np.zeros(len(wanted), dtype=np.float64)
        chunk_ids = self._chunk_of(rows)
        for chunk_id in np.flatnonzero(np.bincount(chunk_ids, minlength=len(self._chunks))):
            packed = self._chunks[chunk_id].packed
            in_chunk = np.flatnonzero(chunk_ids == chunk_id)
            position = np.searchsorted(packed, wanted[in_chunk])
            inside = position < len(packed)
            hit = np.zeros(len(in_chunk), dtype=bool)
            hit[inside] = packed[position[inside]] == wanted[in_chunk][inside]
            found[in_chunk] = hit
        return found


@dataclass
class NearDuplicateIndex:
    """LSH index and shingle store of every row added so far; rows are numbered 0, 1, 2, ..."""

    num_perm: int
    num_bands: int
    threshold: float
    shingle: Literal["char", "word"]
    shingle_size: int
    seed: int
    _lsh: RMinHashLSH = field(init=False, repr=False)
    _store: ShingleStore = field(default_factory=ShingleStore, init=False, repr=False)

    def __post_init__(self) -> None:
        self._lsh = RMinHashLSH(self.threshold, self.num_perm, self.num_bands)

    @classmethod
    def from_config(cls, config: NearDuplicateConfig, seed: int) -> NearDuplicateIndex:
        return cls(
            num_perm=config.num_perm,
            num_bands=config.num_bands,
            threshold=config.threshold,
            shingle=config.shingle,
            shingle_size=config.shingle_size,
            seed=seed,
        )

    def __len__(self) -> int:
        return len(self._store)

    def add_batch(self, keys: Keys) -> Pairs:
        """Index a batch of matching keys; returns the verified pairs it forms with itself and earlier rows.

        `keys` is a list, a pandas Series or an Arrow array of strings (a DataFrame or Arrow
        table column). The rows get the next global numbers in order. A missing or empty key
        gets a token of its own so that it never matches anything.
        """
        keys = _as_list(keys)
        first = len(self._store)
        count = len(keys)
        if count == 0:
            return Pairs.empty()
        if first + count > MAX_ROWS:
            raise ValueError(
                f"the near-duplicate index is limited to {MAX_ROWS} rows; use one index per part of the data"
            )
        tokens = shingle_tokens(keys, self.shingle, self.shingle_size, first)
        minhashes = RMinHash.from_token_sets(tokens, self.num_perm, self.seed)
        self._store.add(RMinHash.hash_token_sets(tokens))
        self._lsh.insert_many(minhashes, first)

        left, right = _candidate_pairs(self._lsh.query_all(minhashes), first, count)
        jaccard = self._store.jaccard(left, right)
        verified = jaccard >= self.threshold
        return Pairs(left[verified], right[verified], jaccard[verified], candidates=len(left))


def shingle_tokens(keys: list[str], unit: Literal["char", "word"], size: int, first: int) -> list[list[str]]:
    """Return the shingles of each key; a key without shingles gets a token no other row has.

    `first` is the global number of the first key, which makes those tokens unique.
    """
    tokens = shingle_sets(keys, unit, size)
    for offset in [i for i, shingles in enumerate(tokens) if not shingles]:
        tokens[offset] = [f"\x00row {first + offset}"]
    return tokens


def _candidate_pairs(candidates: list[list[int]], first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the LSH query results into unique (left < right) pairs of distinct rows."""
    lengths = np.fromiter(map(len, candidates), dtype=np.int64, count=count)
    right = np.fromiter(chain.from_iterable(candidates), dtype=np.int64, count=int(lengths.sum()))
    left = np.repeat(np.arange(first, first + count, dtype=np.int64), lengths)
    distinct = left != right
    low = np.minimum(left[distinct], right[distinct])
    high = np.maximum(left[distinct], right[distinct])
    combined = _sorted_unique(low * MAX_ROWS + high)
    return combined // MAX_ROWS, combined % MAX_ROWS


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Return the sorted distinct values; a plain sort beats np.unique's hash path on integer keys."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    return values[np.r_[True, values[1:] != values[:-1]]]


def _as_list(keys: Keys) -> list[str]:
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        values = keys.to_pylist()
    elif isinstance(keys, pd.Series):
        values = keys.tolist()
    else:
        values = list(keys)
    return ["" if value is None or value is pd.NA else value for value in values]


def find_near_duplicate_pairs(keys: Keys, config: NearDuplicateConfig, seed: int) -> Pairs:
    """Run the near-duplicate search over `keys` in batches of `config.batch_rows`; rows are positions."""
    values = _as_list(keys)
    index = NearDuplicateIndex.from_config(config, seed)
    parts = [
        index.add_batch(values[start : start + config.batch_rows])
        for start in range(0, len(values), config.batch_rows)
    ]
    return Pairs.concat(parts)


@dataclass
class NearDuplicateResult:
    """Removal decisions plus the cluster (the kept representative's row_id) of every clustered row."""

    decisions: Decisions
    clusters: pd.Series


def resolve_near_duplicates(
    pairs: Pairs, protected: pd.Series, row_ids: pd.Series, splits: pd.Series
) -> NearDuplicateResult:
    """Keep one representative per cluster of verified pairs and decide the fate of the others.

    Row numbers in `pairs` are positions in the three Series. The representative is the first
    protected row of the cluster when it has one, else its first row. Protected rows are never
    removed. Another row that is itself paired with a protected row gets `duplicates_test_row`;
    every other non-representative row gets `near_duplicate`.
    """
    count = len(row_ids)
    index = row_ids.index
    reasons = pd.Series(pd.NA, index=index, dtype="string")
    details = pd.Series("", index=index, dtype="string")
    clusters = pd.Series(pd.NA, index=index, dtype="string")
    metrics = {
        "verified_pairs": len(pairs),
        "candidate_pairs": int(pairs.candidates),
        "clusters": 0,
        "rows_in_clusters": 0,
    }
    if len(pairs) == 0:
        return NearDuplicateResult(Decisions(reasons, details, metrics), clusters)

    graph = coo_matrix((np.ones(len(pairs)), (pairs.left, pairs.right)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    in_cluster = sizes[component] > 1
    is_protected = protected.to_numpy(dtype=bool)

    # Representative: minimum of (unprotected, position), so protected rows come first.
    order_key = np.where(is_protected, 0, count) + np.arange(count)
    best = np.full(len(sizes), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, component, order_key)
    representative = best[component] % count

    ids = row_ids.astype("string").to_numpy()
    clusters[in_cluster] = ids[representative[in_cluster]]
    metrics["clusters"] = int((sizes > 1).sum())
    metrics["rows_in_clusters"] = int(in_cluster.sum())

    removed = in_cluster & ~is_protected & (np.arange(count) != representative)
    partner, partner_jaccard = _best_partner(pairs, count, only_protected=None)
    guard, guard_jaccard = _best_partner(pairs, count, only_protected=is_protected)
    near_test = removed & (guard >= 0)
    plain = removed & ~near_test

    split_names = splits.astype("string").fillna("").to_numpy()
    reasons[near_test] = DUPLICATES_TEST_ROW
    details[near_test] = [
        f"near-duplicate (Jaccard {score:.2f}) of {split_names[other]} row {ids[other]}"
        for other, score in zip(guard[near_test], guard_jaccard[near_test], strict=True)
    ]
    reasons[plain] = NEAR_DUPLICATE
    details[plain] = [
        f"Jaccard {score:.2f} with row {ids[other]}; cluster kept as row {ids[kept]}"
        for other, score, kept in zip(
            partner[plain], partner_jaccard[plain], representative[plain], strict=True
        )
    ]
    return NearDuplicateResult(Decisions(reasons, details, metrics), clusters)


def _best_partner(
    pairs: Pairs, count: int, only_protected: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return, per row, the partner with the highest Jaccard (-1 when none) and that Jaccard.

    With `only_protected`, only partners marked True there count. Ties go to the lower row number.
    """
    rows = np.concatenate([pairs.left, pairs.right])
    others = np.concatenate([pairs.right, pairs.left])
    scores = np.concatenate([pairs.jaccard, pairs.jaccard])
    if only_protected is not None:
        keep = only_protected[others]
        rows, others, scores = rows[keep], others[keep], scores[keep]
    partner = np.full(count, -1, dtype=np.int64)
    best_score = np.zeros(count, dtype=np.float64)
    if len(rows) == 0:
        return partner, best_score
    order = np.lexsort((others, -scores, rows))
    rows, others, scores = rows[order], others[order], scores[order]
    first = np.r_[True, rows[1:] != rows[:-1]]
    partner[rows[first]] = others[first]
    best_score[rows[first]] = scores[first]
    return partner, best_score
