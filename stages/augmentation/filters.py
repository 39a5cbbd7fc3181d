"""Checks every new row must pass: length, exact and near duplicates, label consistency, class cap.

Each check takes the candidates still in play and returns a reason and a detail for each one it
rejects. `stages.augmentation.pipeline` applies the checks in order, so a rejected row has one reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.augmentation.config import FiltersConfig, LabelCheckConfig, NearDuplicateConfig
from stages.baselines import build_tfidf_classifier
from stages.core import schema as S
from stages.curation.strings import matching_keys
from stages.splitting.config import SimilarityConfig
from stages.splitting.similarity import near_duplicate_pairs, normalise_text, shingles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    """Candidates rejected by one check: positions in the candidate table, one detail each."""

    reason: str
    positions: list[int]
    details: list[str]


def length_rejections(texts: Sequence[str], config: FiltersConfig) -> list[Rejection]:
    """Reject texts outside [min_chars, max_chars] characters or with fewer than min_words words."""
    short, long, few = (
        Rejection("too_short", [], []),
        Rejection("too_long", [], []),
        Rejection("too_few_words", [], []),
    )
    for position, text in enumerate(texts):
        length = len(text)
        words = len(text.split())
        if length < config.min_chars:
            short.positions.append(position)
            short.details.append(f"{length} chars < min_chars {config.min_chars}")
        elif length > config.max_chars:
            long.positions.append(position)
            long.details.append(f"{length} chars > max_chars {config.max_chars}")
        elif words < config.min_words:
            few.positions.append(position)
            few.details.append(f"{words} words < min_words {config.min_words}")
    return [rejection for rejection in (short, long, few) if rejection.positions]


class ExistingRows:
    """Every row of every split, indexed for exact (normalised text) and near-duplicate lookups."""

    def __init__(self, splits: Mapping[str, pd.DataFrame], config: NearDuplicateConfig):
        self.config = config
        self.splits: list[str] = []
        self.row_ids: list[str] = []
        self.exact: dict[str, int] = {}
        self.sets: list[frozenset[str]] = []
        # Validation and test first, so a text equal to rows of several splits is reported as a leak.
        for split in sorted(splits, key=lambda name: (name == "train", name)):
            frame = splits[split]
            keys = matching_keys(frame[S.TEXT])
            for row_id, text, key in zip(frame[S.ROW_ID].astype(str), frame[S.TEXT], keys, strict=True):
                if key:
                    self.exact.setdefault(key, len(self.row_ids))
                self.splits.append(split)
                self.row_ids.append(row_id)
                self.sets.append(shingles(normalise_text(text), config.shingle, config.shingle_size))

    def similarity_config(self, threshold: float) -> SimilarityConfig:
        return SimilarityConfig(
            shingle=self.config.shingle,
            shingle_size=self.config.shingle_size,
            threshold=threshold,
            num_perm=self.config.num_perm,
        )

    def _by_split(self) -> list[tuple[frozenset[str], str]]:
        return list(zip(self.sets, self.splits, strict=True))

    def _most_similar(
        self, sets: list[frozenset[str]], threshold: float, candidate_sets: list[frozenset[str]]
    ) -> dict[int, tuple[int, float]]:
        """Map each candidate position to its most similar row in `sets` at or above `threshold`."""
        best: dict[int, tuple[int, float]] = {}
        if not any(sets):
            return best
        for pair in near_duplicate_pairs(sets, self.similarity_config(threshold), candidate_sets):
            current = best.get(pair.right)
            if current is None or pair.similarity > current[1]:
                best[pair.right] = (pair.left, pair.similarity)
        return best

    def exact_rejections(self, texts: Sequence[str]) -> list[Rejection]:
        """Reject texts whose curate matching key equals an existing row's, with one reason per split."""
        by_split: dict[str, Rejection] = {}
        for position, key in enumerate(matching_keys(pd.Series(list(texts), dtype="string"))):
            match = self.exact.get(key) if key else None
            if match is None:
                continue
            split = self.splits[match]
            rejection = by_split.setdefault(split, Rejection(f"duplicate_of_{split}", [], []))
            rejection.positions.append(position)
            rejection.details.append(f"same text as {split} row {self.row_ids[match]}")
        return [by_split[split] for split in sorted(by_split)]

    def near_rejections(self, texts: Sequence[str]) -> list[Rejection]:
        """Reject texts near an existing row (`threshold` for validation and test, else `train_threshold`).

        A text near both a validation or test row and a train row is reported as a leak. Among
        several matches of one kind, the most similar row is named.
        """
        candidate_sets = [
            shingles(normalise_text(text), self.config.shingle, self.config.shingle_size) for text in texts
        ]
        evaluation = [items if split != "train" else frozenset() for items, split in self._by_split()]
        train = [items if split == "train" else frozenset() for items, split in self._by_split()]
        leaks = self._most_similar(evaluation, self.config.threshold, candidate_sets)
        redundant = self._most_similar(train, self.config.train_threshold, candidate_sets)
        best = {**redundant, **leaks}

        by_split: dict[str, Rejection] = {}
        for position in sorted(best):
            match, similarity = best[position]
            split = self.splits[match]
            rejection = by_split.setdefault(split, Rejection(f"near_duplicate_of_{split}", [], []))
            rejection.positions.append(position)
            rejection.details.append(f"Jaccard {similarity:.3f} with {split} row {self.row_ids[match]}")
        return [by_split[split] for split in sorted(by_split)]


def within_new_rejections(texts: Sequence[str], config: NearDuplicateConfig) -> list[Rejection]:
    """Reject a new text equal or near (train_threshold) to an earlier new text that is kept."""
    exact = Rejection("duplicate_of_new_row", [], [])
    near = Rejection("near_duplicate_of_new_row", [], [])
    seen: dict[str, int] = {}
    unique: list[int] = []
    keys = matching_keys(pd.Series(list(texts), dtype="string")).tolist()
    for position, key in enumerate(keys):
        if key and key in seen:
            exact.positions.append(position)
            exact.details.append(f"same text as new row at position {seen[key]}")
        else:
            seen[key] = position
            unique.append(position)

    sets = [
        shingles(normalise_text(texts[position]), config.shingle, config.shingle_size) for position in unique
    ]
    similarity = SimilarityConfig(
        shingle=config.shingle,
        shingle_size=config.shingle_size,
        threshold=config.train_threshold,
        num_perm=config.num_perm,
    )
    rejected: set[int] = set()
    for pair in near_duplicate_pairs(sets, similarity):
        # Pairs come sorted by the earlier row; an earlier row already rejected keeps no one out.
        if pair.left in rejected or pair.right in rejected:
            continue
        rejected.add(pair.right)
        near.positions.append(unique[pair.right])
        near.details.append(f"Jaccard {pair.similarity:.3f} with new row at position {unique[pair.left]}")
    return [rejection for rejection in (exact, near) if rejection.positions]


class LabelChecker:
    """TF-IDF + logistic regression fitted on the real train rows, used to vet intended labels."""

    def __init__(self, train: pd.DataFrame, config: LabelCheckConfig, seed: int):
        self.config = config
        labels = train[S.LABEL].astype(str)
        self.fitted = labels.nunique() >= 2
        if self.fitted:
            self.model = build_tfidf_classifier(config.tfidf, seed).fit(
                train[S.TEXT].astype(str).tolist(), labels.tolist()
            )
            self.classes = [str(label) for label in self.model.classes_]
        else:
            logger.warning("the train rows have one label only, so the label check accepts every row")

    def rejections(self, texts: Sequence[str], labels: Sequence[str]) -> list[Rejection]:
        """Reject rows whose intended label gets less than `min_probability`."""
        if not self.fitted or not texts:
            return []
        probabilities = self.model.predict_proba(list(texts))
        index = {label: column for column, label in enumerate(self.classes)}
        rejection = Rejection("label_disagrees", [], [])
        for position, (row, label) in enumerate(zip(probabilities, labels, strict=True)):
            intended = float(row[index[label]]) if label in index else 0.0
            if intended >= self.config.min_probability:
                continue
            top = int(np.argmax(row))
            rejection.positions.append(position)
            rejection.details.append(
                f"p({label}) = {intended:.3f} < {self.config.min_probability}; "
                f"classifier predicts {self.classes[top]} ({row[top]:.3f})"
            )
        return [rejection] if rejection.positions else []


def class_cap_rejections(
    labels: Sequence[str],
    real_counts: Mapping[str, int],
    max_share: float,
    synthetic_counts: Mapping[str, int] | None = None,
) -> list[Rejection]:
    """Keep, per class, the first new rows up to `max_share` of the class's rows after augmentation.

    With r real rows, s synthetic rows in all are allowed while s / (r + s) <= max_share, that is
    s <= floor(r * max_share / (1 - max_share)). Synthetic rows already in train (from a
    synthetic source) use up part of that allowance.
    """
    synthetic_counts = synthetic_counts or {}
    allowed = {
        label: max(
            0, int(np.floor(count * max_share / (1 - max_share) + 1e-9)) - synthetic_counts.get(label, 0)
        )
        for label, count in real_counts.items()
    }
    used: dict[str, int] = {}
    rejection = Rejection("class_cap", [], [])
    for position, label in enumerate(labels):
        limit = allowed.get(label, 0)
        if used.get(label, 0) >= limit:
            rejection.positions.append(position)
            rejection.details.append(
                f"{label} already has {limit} new rows (max_synthetic_share {max_share})"
            )
            continue
        used[label] = used.get(label, 0) + 1
    return [rejection] if rejection.positions else []
