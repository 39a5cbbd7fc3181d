"""Input coverage: generation targets that leave out values of their input.

Data-to-text references (E2E NLG and its kind) often skip an attribute of their input. A model
trained on them learns to skip attributes too. This rule finds the values of each input with a
regular expression (`name[value]` slots by default) and records, in the `input_coverage` column,
the share of them that the target mentions. A value counts as mentioned when it occurs in the
target as a substring, after both are case-folded and their whitespace collapsed.

The train_lm stage can then train on well-covered rows only (`train_lm.min_input_coverage`),
whatever split the rows land in later. With `quarantine: true` the curate stage removes the rows
below `min_coverage` itself, but only in the splits named in `splits`: test references are what
outputs are scored against, so the test split keeps all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from stages.curation.config import CoverageConfig

TARGET_MISSES_INPUT = "target_misses_input"

# Missing values named in one quarantine detail. The rest are only counted.
DETAIL_VALUES = 5


def fold(text: str) -> str:
    """Case-fold and collapse whitespace, the form in which values and targets are compared."""
    return " ".join(text.casefold().split())


def input_values(text: str, pattern: re.Pattern[str], ignored: frozenset[str]) -> list[str]:
    """Return the distinct values `pattern` finds in `text`, in order, without the ignored ones."""
    values: list[str] = []
    seen: set[str] = set()
    for match in pattern.finditer(text):
        value = match.group(1) if pattern.groups else match.group(0)
        key = fold(value or "")
        if key and key not in ignored and key not in seen:
            seen.add(key)
            values.append(" ".join(value.split()))
    return values


@dataclass(frozen=True)
class CoverageResult:
    """Per-row coverage (NaN where the input has no values), reason codes and details, and metrics."""

    coverage: pd.Series
    reasons: pd.Series
    details: pd.Series
    metrics: dict[str, Any]


def measure_coverage(
    texts: pd.Series, targets: pd.Series, in_scope: pd.Series, config: CoverageConfig
) -> CoverageResult:
    """Measure every row's coverage and flag the rows to quarantine.

    A row is flagged when `config.quarantine` is on, the row is in scope and its target mentions
    less than `min_coverage` of its input values. Rows whose input has no values (after
    `ignore_values`) get NaN coverage and are never flagged.
    """
    pattern = re.compile(config.value_pattern)
    ignored = frozenset(fold(value) for value in config.ignore_values)
    coverage = pd.Series(float("nan"), index=texts.index, dtype="float64")
    reasons = pd.Series(pd.NA, index=texts.index, dtype="string")
    details = pd.Series("", index=texts.index, dtype="string")
    scoped = in_scope.to_numpy(dtype=bool)
    for position, (index, text, target) in enumerate(
        zip(texts.index, texts.astype(str), targets.astype(str), strict=True)
    ):
        values = input_values(text, pattern, ignored)
        if not values:
            continue
        folded_target = fold(target)
        missing = [value for value in values if fold(value) not in folded_target]
        coverage[index] = 1.0 - len(missing) / len(values)
        if config.quarantine and scoped[position] and coverage[index] < config.min_coverage:
            reasons[index] = TARGET_MISSES_INPUT
            details[index] = _detail(values, missing)
    measured = coverage.dropna()
    metrics = {
        "rows_measured": len(measured),
        "rows_without_values": int(coverage.isna().sum()),
        "rows_full_coverage": int((measured >= 1.0).sum()),
        "rows_below_min_coverage": int((measured < config.min_coverage).sum()),
        "mean_coverage": round(float(measured.mean()), 6) if len(measured) else None,
        "rows_quarantined": int(reasons.notna().sum()),
    }
    return CoverageResult(coverage, reasons, details, metrics)


def _detail(values: list[str], missing: list[str]) -> str:
    named = ", ".join(repr(value) for value in missing[:DETAIL_VALUES])
    more = f" and {len(missing) - DETAIL_VALUES} more" if len(missing) > DETAIL_VALUES else ""
    return (
        f"target mentions {len(values) - len(missing)} of {len(values)} input values; missing {named}{more}"
    )
