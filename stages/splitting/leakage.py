"""Leakage checks between splits (exact text, near duplicates, shared groups, time order) and their gate.

Each check runs on the pairs train/validation, train/test and validation/test. The exact, near and
group checks count rows of the later split of the pair (validation or test) that have a partner
in the earlier one, because those are the evaluation rows whose score is inflated. The time-order
check counts rows of the earlier split that are later than the first row of the later split.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from stages.core import schema as S
from stages.core.errors import GateError
from stages.splitting.config import LeakageConfig, SplitConfig
from stages.splitting.groups import group_values
from stages.splitting.similarity import near_duplicate_pairs, normalise_text, shingles

logger = logging.getLogger(__name__)

PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
CHECKS = ("exact", "near", "group", "time_order")
EXAMPLE_CHARS = 200


def _clip(text: object) -> str:
    value = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    return value if len(value) <= EXAMPLE_CHARS else value[: EXAMPLE_CHARS - 1] + "…"


def _rate(rows: int, base: int) -> float:
    return round(rows / base, 6) if base else 0.0


def _exact_and_near(
    earlier: pd.DataFrame, later: pd.DataFrame, names: tuple[str, str], config: SplitConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    similarity = config.near_duplicates
    limit = config.leakage.examples
    first, second = names
    earlier_norm = [normalise_text(text) for text in earlier[S.TEXT]]
    later_norm = [normalise_text(text) for text in later[S.TEXT]]

    positions_by_text: dict[str, int] = {}
    for position, text in enumerate(earlier_norm):
        positions_by_text.setdefault(text, position)
    exact_rows = []
    for position, text in enumerate(later_norm):
        match = positions_by_text.get(text)
        if text and match is not None:
            exact_rows.append((position, match))

    earlier_sets = [shingles(text, similarity.shingle, similarity.shingle_size) for text in earlier_norm]
    later_sets = [shingles(text, similarity.shingle, similarity.shingle_size) for text in later_norm]
    pairs = [
        pair
        for pair in near_duplicate_pairs(earlier_sets, similarity, right=later_sets)
        if earlier_norm[pair.left] != later_norm[pair.right]
    ]
    best: dict[int, tuple[float, int]] = {}
    for pair in pairs:
        current = best.get(pair.right)
        if current is None or pair.similarity > current[0]:
            best[pair.right] = (pair.similarity, pair.left)

    def example(later_position: int, earlier_position: int) -> dict[str, Any]:
        return {
            f"{second}_row_id": str(later[S.ROW_ID].iloc[later_position]),
            f"{second}_text": _clip(later[S.TEXT].iloc[later_position]),
            f"{first}_row_id": str(earlier[S.ROW_ID].iloc[earlier_position]),
            f"{first}_text": _clip(earlier[S.TEXT].iloc[earlier_position]),
        }

    exact = {
        "rows": len(exact_rows),
        "rate": _rate(len(exact_rows), len(later)),
        "examples": [example(later_position, match) for later_position, match in exact_rows[:limit]],
    }
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
    near = {
        "rows": len(best),
        "rate": _rate(len(best), len(later)),
        "pairs": len(pairs),
        "threshold": similarity.threshold,
        "examples": [
            {**example(position, match), "jaccard": round(score, 4)}
            for position, (score, match) in ranked[:limit]
        ],
    }
    return exact, near


def _groups(
    earlier: pd.DataFrame, later: pd.DataFrame, names: tuple[str, str], config: SplitConfig
) -> dict[str, Any]:
    column = config.group_column
    if column not in earlier.columns or column not in later.columns:
        return {
            "rows": 0,
            "rate": 0.0,
            "groups": 0,
            "column": column,
            "examples": [],
            "skipped": "no group column",
        }
    earlier_values = group_values(earlier, column, "split")
    later_values = group_values(later, column, "split")
    shared = set(earlier_values.dropna()) & set(later_values.dropna())
    rows = int(later_values.isin(shared).sum()) if shared else 0
    first, second = names
    examples = []
    for value in sorted(shared)[: config.leakage.examples]:
        examples.append(
            {
                "group": _clip(value),
                f"{first}_rows": int((earlier_values == value).sum()),
                f"{second}_rows": int((later_values == value).sum()),
            }
        )
    return {
        "rows": rows,
        "rate": _rate(rows, len(later)),
        "groups": len(shared),
        "column": column,
        "examples": examples,
    }


def _times(frame: pd.DataFrame, fmt: str) -> pd.Series:
    raw = frame[S.TIMESTAMP]
    if pd.api.types.is_datetime64_any_dtype(raw):
        return pd.to_datetime(raw, utc=True)
    return pd.to_datetime(raw.astype("string").str.strip(), utc=True, errors="coerce", format=fmt)


def _time_order(
    earlier: pd.DataFrame, later: pd.DataFrame, names: tuple[str, str], config: SplitConfig
) -> dict[str, Any]:
    fmt = config.temporal.timestamp_format
    earlier_times = _times(earlier, fmt)
    later_times = _times(later, fmt)
    first_later = later_times.min()
    late = earlier_times > first_later
    order = earlier_times[late].sort_values(ascending=False, kind="stable")
    first, second = names
    examples = [
        {
            f"{first}_row_id": str(earlier[S.ROW_ID].iloc[position]),
            f"{first}_timestamp": earlier_times.iloc[position].isoformat(),
            f"first_{second}_timestamp": first_later.isoformat(),
        }
        for position in order.index[: config.leakage.examples]
    ]
    rows = int(late.sum())
    return {
        "rows": rows,
        "rate": _rate(rows, len(earlier)),
        f"first_{second}_timestamp": None if pd.isna(first_later) else first_later.isoformat(),
        f"last_{first}_timestamp": None if earlier_times.isna().all() else earlier_times.max().isoformat(),
        "examples": examples,
    }


def check_leakage(
    splits: dict[str, pd.DataFrame], config: SplitConfig, *, time_order: bool
) -> dict[str, Any]:
    """Run every check on every pair of non-empty splits and return the counts, rates and examples."""
    report: dict[str, Any] = {}
    for first, second in PAIRS:
        earlier, later = splits[first], splits[second]
        name = f"{first}_vs_{second}"
        if earlier.empty or later.empty:
            report[name] = {"skipped": f"the {first if earlier.empty else second} split is empty"}
            continue
        exact, near = _exact_and_near(earlier, later, (first, second), config)
        pair: dict[str, Any] = {
            "rows": {first: len(earlier), second: len(later)},
            "exact": exact,
            "near": near,
            "group": _groups(earlier, later, (first, second), config),
        }
        if time_order:
            pair["time_order"] = _time_order(earlier, later, (first, second), config)
        report[name] = pair
        logger.info(
            "leakage %s: exact %d, near %d, group %d%s",
            name,
            exact["rows"],
            near["rows"],
            pair["group"]["rows"],
            f", time order {pair['time_order']['rows']}" if time_order else "",
        )
    return report


def _exceeds(rows: int, rate: float, limit: int | float) -> bool:
    if isinstance(limit, float):
        return rate > limit
    return rows > limit


def _describe_limit(limit: int | float) -> str:
    return f"{limit:.2%} of rows" if isinstance(limit, float) else f"{limit} rows"


def gate_failures(report: dict[str, Any], limits: LeakageConfig) -> list[str]:
    """Return one line per check that is over its limit, naming the pair, the count and an example."""
    failures = []
    for pair_name, pair in report.items():
        for check in CHECKS:
            result = pair.get(check)
            if not result:
                continue
            limit = getattr(limits, f"max_{check}")
            if not _exceeds(result["rows"], result["rate"], limit):
                continue
            line = (
                f"{pair_name}: {check} leakage on {result['rows']} rows ({result['rate']:.2%}), "
                f"above split.leakage.max_{check} = {_describe_limit(limit)}"
            )
            if result.get("examples"):
                line += f"; e.g. {result['examples'][0]}"
            failures.append(line)
    return failures


def enforce_leakage_gate(report: dict[str, Any], limits: LeakageConfig) -> None:
    """Raise GateError listing every check over its limit."""
    failures = gate_failures(report, limits)
    if failures:
        raise GateError(
            "split_leakage",
            "\n".join(failures)
            + "\nSee metrics/split.json (`leakage`) for counts and examples. Remove the duplicates upstream "
            "(curate), group them (`split.group_by`), or raise the limits in `split.leakage`.",
        )
