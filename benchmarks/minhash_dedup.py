"""Benchmark: the curate stage's near-duplicate finder against datasketch's MinHashLSH.

Both finders get the same input: matching keys of BANKING77 train and test plus edited copies
with a known origin. They use the same shingles, number of permutations, LSH bands and Jaccard
threshold, and both verify LSH candidates with the exact Jaccard similarity of the shingle
sets. Each run is timed from the keys to the verified pairs, shingling included.

Quality is pair-level precision, recall and F1 against the true pairs: every pair whose exact
Jaccard similarity reaches the threshold, found by brute force (sparse matrix products, not
timed). The planted pairs are reported separately.

    python benchmarks/minhash_dedup.py [--copies 3000] [--repeats 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stages.curation.near_duplicates import NearDuplicateConfig, find_near_duplicate_pairs, shingle_sets  # noqa: E402
from stages.curation.strings import matching_keys  # noqa: E402

BANKING77 = REPO_ROOT / "data" / "sources" / "banking77"
# Words for "change a word" and "add a word" edits.
SUBSTITUTES = [
    "purple",
    "yesterday",
    "quickly",
    "honestly",
    "tomorrow",
    "somewhere",
    "really",
    "kindly",
    "again",
]


def planted_keys(copies: int, seed: int) -> tuple[list[str], set[tuple[int, int]]]:
    """Return BANKING77 matching keys plus `copies` edited copies, and the (origin, copy) pairs."""
    texts = pd.concat(
        [pd.read_csv(BANKING77 / "train.csv")["text"], pd.read_csv(BANKING77 / "test.csv")["text"]],
        ignore_index=True,
    )
    keys = matching_keys(texts.astype("string")).tolist()
    generator = np.random.default_rng(seed)
    candidates = [i for i, key in enumerate(keys) if len(key.split()) >= 6]
    origins = generator.choice(candidates, size=copies, replace=False)
    planted = set()
    for number, origin in enumerate(origins):
        words = keys[origin].split()
        position = int(generator.integers(1, len(words) - 1))
        word = SUBSTITUTES[int(generator.integers(len(SUBSTITUTES)))]
        kind = number % 3
        if kind == 0:
            words[position] = word
        elif kind == 1:
            del words[position]
        else:
            words.insert(position, word)
        planted.add((int(origin), len(keys)))
        keys.append(" ".join(words))
    return keys, planted


def true_pairs(keys: list[str], config: NearDuplicateConfig, block: int = 1000) -> set[tuple[int, int]]:
    """Return every pair (i < j) whose exact Jaccard similarity reaches the threshold, by brute force."""
    sets = shingle_sets(keys, config.shingle, config.shingle_size)
    vocabulary: dict[str, int] = {}
    rows, columns = [], []
    for row, shingles in enumerate(sets):
        for shingle in set(shingles):
            rows.append(row)
            columns.append(vocabulary.setdefault(shingle, len(vocabulary)))
    matrix = csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(len(sets), len(vocabulary))
    )
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    transposed = matrix.T.tocsc()
    pairs = set()
    for start in range(0, len(sets), block):
        intersections = (matrix[start : start + block] @ transposed).toarray()
        union = sizes[start : start + block, None] + sizes[None, :] - intersections
        jaccard = np.divide(intersections, union, out=np.zeros_like(intersections), where=union > 0)
        left, right = np.nonzero(jaccard >= config.threshold)
        left += start
        keep = left < right
        pairs.update(zip(left[keep].tolist(), right[keep].tolist(), strict=True))
    return pairs


def run_ours(keys: list[str], config: NearDuplicateConfig, seed: int) -> set[tuple[int, int]]:
    pairs = find_near_duplicate_pairs(keys, config, seed)
    return set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))


def run_datasketch(keys: list[str], config: NearDuplicateConfig, seed: int) -> set[tuple[int, int]]:
    """Run the same search with datasketch: MinHash.bulk, an insertion session, exact verification."""
    from datasketch import MinHash, MinHashLSH

    sets = shingle_sets(keys, config.shingle, config.shingle_size)
    encoded = [
        [shingle.encode("utf-8") for shingle in shingles] or [f"\x00row {i}".encode()]
        for i, shingles in enumerate(sets)
    ]
    minhashes = MinHash.bulk(encoded, num_perm=config.num_perm, seed=seed)
    rows_per_band = config.num_perm // config.num_bands
    index = MinHashLSH(
        threshold=config.threshold, num_perm=config.num_perm, params=(config.num_bands, rows_per_band)
    )
    with index.insertion_session() as session:
        for key, minhash in enumerate(minhashes):
            session.insert(key, minhash, check_duplication=False)
    shingle_sets_ = [frozenset(shingles) for shingles in encoded]
    found = set()
    for key, minhash in enumerate(minhashes):
        for other in index.query(minhash):
            if other <= key:
                continue
            left, right = shingle_sets_[key], shingle_sets_[other]
            if len(left & right) / len(left | right) >= config.threshold:
                found.add((key, other))
    return found


def scores(found: set, truth: set) -> dict[str, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs": len(found),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def timed(function, *args, repeats: int) -> tuple[set, list[float]]:
    durations = []
    result = set()
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(*args)
        durations.append(time.perf_counter() - started)
    return result, durations


def machine() -> dict[str, object]:
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "rensa": version("rensa"),
        "datasketch": version("datasketch"),
        "numpy": version("numpy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=3000, help="edited copies planted (default 3000)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per finder; the median is reported"
    )
    parser.add_argument("--threshold", type=float, default=0.7, help="Jaccard threshold (default 0.7)")
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--num-bands", type=int, default=32)
    parser.add_argument("--shingle-size", type=int, default=5, help="character shingle size")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    config = NearDuplicateConfig(
        shingle="char",
        shingle_size=args.shingle_size,
        num_perm=args.num_perm,
        num_bands=args.num_bands,
        threshold=args.threshold,
    )
    keys, planted = planted_keys(args.copies, args.seed)
    truth = true_pairs(keys, config)
    planted_true = planted & truth

    ours, ours_times = timed(run_ours, keys, config, args.seed, repeats=args.repeats)
    theirs, theirs_times = timed(run_datasketch, keys, config, args.seed, repeats=args.repeats)
    ours_rate = len(keys) / statistics.median(ours_times)
    theirs_rate = len(keys) / statistics.median(theirs_times)

    results = {
        "rows": len(keys),
        "planted_pairs": len(planted),
        "planted_pairs_at_threshold": len(planted_true),
        "true_pairs": len(truth),
        "settings": {
            "shingle": f"char {config.shingle_size}-grams",
            "num_perm": config.num_perm,
            "num_bands": config.num_bands,
            "threshold": config.threshold,
            "seed": args.seed,
            "repeats": args.repeats,
        },
        "ours": {
            "seconds_median": round(statistics.median(ours_times), 3),
            "rows_per_second": round(ours_rate),
            **scores(ours, truth),
            "planted_recall": round(len(ours & planted_true) / max(len(planted_true), 1), 4),
        },
        "datasketch": {
            "seconds_median": round(statistics.median(theirs_times), 3),
            "rows_per_second": round(theirs_rate),
            **scores(theirs, truth),
            "planted_recall": round(len(theirs & planted_true) / max(len(planted_true), 1), 4),
        },
        "speedup": round(ours_rate / theirs_rate, 2),
        "machine": machine(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
