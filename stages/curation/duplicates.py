"""Exact duplicates and texts that carry conflicting labels.

Two rows are exact duplicates when their matching keys are equal (`strings.matching_keys`:
case-folded, punctuation and spacing ignored). For generation rows the key covers the input and
the target together, so rows that share an input but differ in their target are not duplicates.

Rows of a protected split (by default `test`) are never removed here, so the official test set
stays as published. A row of another split whose key equals a protected row's key is removed
instead, with reason `duplicates_test_row`. Among unprotected rows the first row in input order
is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

EXACT_DUPLICATE = "exact_duplicate"
CONFLICTING_LABELS = "conflicting_labels"
DUPLICATES_TEST_ROW = "duplicates_test_row"

ConflictPolicy = Literal["quarantine_all", "keep_majority"]


@dataclass
class Decisions:
    """A reason code and a detail per removed row (<NA> reason for rows that stay), plus counts."""

    reasons: pd.Series
    details: pd.Series
    metrics: dict[str, int] = field(default_factory=dict)


def exact_duplicate_decisions(
    keys: pd.Series,
    labels: pd.Series | None,
    protected: pd.Series,
    row_ids: pd.Series,
    splits: pd.Series,
    policy: ConflictPolicy,
) -> Decisions:
    """Decide which rows to remove as exact duplicates or conflicting labels.

    `keys` are the matching keys, `labels` is None for generation rows, `protected` marks rows of
    a protected split. All Series share one index, in input order.
    """
    index = keys.index
    reasons = pd.Series(pd.NA, index=index, dtype="string")
    details = pd.Series("", index=index, dtype="string")
    table = pd.DataFrame(
        {
            "key": keys.to_numpy(),
            "label": (labels.fillna("") if labels is not None else pd.Series("", index=index)).to_numpy(),
            "protected": protected.to_numpy(dtype=bool),
            "row_id": row_ids.astype("string").to_numpy(),
            "split": splits.astype("string").fillna("").to_numpy(),
        },
        index=index,
    )
    metrics = {
        "protected_duplicates_kept": 0,
        "protected_label_conflicts_kept": 0,
    }

    # 1. Rows of an unprotected split that repeat a protected row's key.
    guarded = table[table["protected"]]
    first_guarded = guarded.groupby("key", sort=False)[["row_id", "split"]].first()
    repeats_guarded = ~table["protected"] & table["key"].isin(first_guarded.index)
    if repeats_guarded.any():
        matched = first_guarded.loc[table.loc[repeats_guarded, "key"]]
        reasons[repeats_guarded] = DUPLICATES_TEST_ROW
        details[repeats_guarded] = [
            f"same text as {split} row {row_id}"
            for row_id, split in zip(matched["row_id"], matched["split"], strict=True)
        ]
    metrics["protected_duplicates_kept"] = int(guarded.duplicated("key").sum())
    metrics["protected_label_conflicts_kept"] = int((guarded.groupby("key")["label"].nunique() > 1).sum())

    # 2. Unprotected rows among themselves.
    rest = table[~table["protected"] & ~repeats_guarded]
    label_count = rest.groupby("key", sort=False)["label"].transform("nunique")
    agreeing = rest[label_count == 1]
    _mark_repeats(agreeing, reasons, details)

    conflicting = rest[label_count > 1]
    if not conflicting.empty:
        if policy == "quarantine_all":
            _mark_all_conflicting(conflicting, reasons, details)
        else:
            _resolve_by_majority(conflicting, reasons, details)
    metrics["conflicting_texts"] = int(conflicting["key"].nunique())
    return Decisions(reasons, details, metrics)


def _mark_repeats(rows: pd.DataFrame, reasons: pd.Series, details: pd.Series) -> None:
    """Mark every row but the first of each key as an exact duplicate of that first row."""
    if rows.empty:
        return
    first_row_id = rows.groupby("key", sort=False)["row_id"].transform("first")
    repeat = rows.groupby("key", sort=False).cumcount() > 0
    reasons[repeat[repeat].index] = EXACT_DUPLICATE
    details[repeat[repeat].index] = ("same text as row " + first_row_id[repeat]).to_numpy()


def _mark_all_conflicting(rows: pd.DataFrame, reasons: pd.Series, details: pd.Series) -> None:
    labels_per_key = rows.groupby("key", sort=False)["label"].agg(
        lambda labels: ", ".join(sorted(set(labels)))
    )
    reasons[rows.index] = CONFLICTING_LABELS
    details[rows.index] = ("same text carries labels " + rows["key"].map(labels_per_key)).to_numpy()


def _resolve_by_majority(rows: pd.DataFrame, reasons: pd.Series, details: pd.Series) -> None:
    """Keep the copies of the label most copies carry; a tie quarantines every copy."""
    counts = rows.groupby(["key", "label"], sort=True).size().rename("copies").reset_index()
    top = counts.groupby("key")["copies"].transform("max")
    leaders = counts[counts["copies"] == top]
    tied_keys = leaders["key"][leaders["key"].duplicated(keep=False)].unique()
    majority = leaders[~leaders["key"].isin(tied_keys)].set_index("key")["label"]

    tied = rows[rows["key"].isin(tied_keys)]
    _mark_all_conflicting(tied, reasons, details)

    decided = rows[~rows["key"].isin(tied_keys)]
    winning_label = decided["key"].map(majority)
    outvoted = decided[decided["label"] != winning_label]
    reasons[outvoted.index] = CONFLICTING_LABELS
    details[outvoted.index] = [
        f"label {label!r} is outvoted by {winner!r} among copies of the same text"
        for label, winner in zip(outvoted["label"], winning_label[outvoted.index], strict=True)
    ]
    _mark_repeats(decided[decided["label"] == winning_label], reasons, details)
