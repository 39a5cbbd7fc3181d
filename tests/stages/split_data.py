"""Input tables for the split tests, read from the real BANKING77 and E2E files by the acquire stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.acquire import acquire, parse_sources
from stages.core import schema as S
from stages.splitting.config import SplitConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
BANKING77 = REPO_ROOT / "data" / "sources" / "banking77"
E2E = REPO_ROOT / "data" / "sources" / "e2e_nlg"

# Values a real export contains when its time column is damaged: each fails ISO 8601 parsing.
BAD_TIMESTAMPS = ["yesterday", "2024-02-30T10:00:00", "31/12/2023 25:61", "n/a"]


def acquired(sources: list[dict[str, Any]], seed: int = 0) -> pd.DataFrame:
    """Read sources given as params mappings through the acquire stage."""
    table, quarantine, _ = acquire(parse_sources(sources), seed)
    assert len(quarantine) == 0
    return table


def banking_rows(train_rows: int | None = 1200, test_rows: int | None = 400, seed: int = 0) -> pd.DataFrame:
    """Return a seeded sample of BANKING77 train and test rows (all rows when a count is None)."""
    sources = []
    for split, rows in (("train", train_rows), ("test", test_rows)):
        source: dict[str, Any] = {
            "name": f"banking77-{split}",
            "type": "csv",
            "path": str(BANKING77 / f"{split}.csv"),
            "columns": {"text": "text", "label": "category"},
            "split": split,
        }
        if rows is not None:
            source["sample_rows"] = rows
        sources.append(source)
    return acquired(sources, seed)


def e2e_rows(limit: int | None = 1500) -> pd.DataFrame:
    """Return E2E development rows: text and group are the meaning representation, target the reference."""
    source: dict[str, Any] = {
        "name": "e2e-dev",
        "type": "csv",
        "path": str(E2E / "devset.csv"),
        "columns": {"text": "mr", "target": "ref", "group": "mr"},
    }
    if limit is not None:
        source["limit"] = limit
    return acquired([source])


def with_timestamps(frame: pd.DataFrame, seed: int = 0, bad: int = 4, missing: int = 3) -> pd.DataFrame:
    """Give rows event times over six months of 2024 in the formats exports mix, some damaged.

    Times fall in office hours on weekdays, written as UTC with `Z`, with a +02:00 offset, or
    without an offset. `bad` rows get an unparseable value and `missing` rows an empty one.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01T00:00:00Z")
    days = rng.integers(0, 182, len(frame))
    stamps = start + pd.to_timedelta(days, unit="D")
    stamps = stamps + pd.to_timedelta(rng.integers(8 * 3600, 18 * 3600, len(frame)), unit="s")
    weekend = stamps.dayofweek >= 5
    stamps = stamps.where(~weekend, stamps - pd.to_timedelta(stamps.dayofweek - 4, unit="D"))
    styles = rng.integers(0, 3, len(frame))
    values = []
    for stamp, style in zip(stamps, styles, strict=True):
        if style == 0:
            values.append(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif style == 1:
            values.append((stamp + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00"))
        else:
            values.append(stamp.strftime("%Y-%m-%d %H:%M:%S"))
    picked = rng.choice(len(frame), size=bad + missing, replace=False)
    for position, value in zip(picked[:bad], BAD_TIMESTAMPS * (bad // len(BAD_TIMESTAMPS) + 1), strict=False):
        values[position] = value
    for position in picked[bad:]:
        values[position] = ""
    result = frame.copy()
    result[S.TIMESTAMP] = pd.Series(values, index=frame.index, dtype="string")
    return result


def split_config(**overrides: Any) -> SplitConfig:
    """Return a SplitConfig with stability off (tests that measure it turn it on)."""
    raw: dict[str, Any] = {"stability": {"enabled": False}}
    raw.update(overrides)
    return SplitConfig.model_validate(raw)
