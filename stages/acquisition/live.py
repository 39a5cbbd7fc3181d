"""Record collection shared by the live sources (SQL, HTTP), with per-row provenance.

Live sources return values of many Python types (numbers, timestamps, decimals, nested JSON). The
collector turns every field into text as soon as it is read, with the same rules as the acquire
stage, so that record chunks concatenate into one string table and a snapshot round-trips through
Parquet unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stages.acquisition.base import PROVENANCE_RECORD_COLUMNS, SourceBatch, rejected_frame
from stages.core.errors import InputDataError

# Columns a snapshot adds for rejected records; source fields may not use these names either.
REJECTED_RAW = "rejected_raw"
REJECTED_REASON = "rejected_reason"
REJECTED_DETAIL = "rejected_detail"
RESERVED_COLUMNS = (*PROVENANCE_RECORD_COLUMNS, REJECTED_RAW, REJECTED_REASON, REJECTED_DETAIL)

# Raw text of a rejected record kept in quarantine, in characters.
RAW_PREVIEW_CHARS = 2000


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with seconds, for `acquired_at`."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def value_to_text(value: Any) -> Any:
    """Return one field as text: pd.NA when missing, integral floats without `.0`, lists and dicts as JSON."""
    if value is None or value is pd.NA or value is pd.NaT:
        return pd.NA
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return pd.NA
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def frame_to_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `frame` with every column converted by `value_to_text` to the string dtype."""
    return pd.DataFrame(
        {
            name: pd.Series(
                [value_to_text(value) for value in frame[name]], index=frame.index, dtype="string"
            )
            for name in frame.columns
        },
        index=frame.index,
    )


def dotted_get(value: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path (`data.items`, `results.0.id`) into nested JSON; return (found, value).

    A digit segment indexes a list. An empty path returns the value itself.
    """
    if path == "":
        return True, value
    current = value
    for segment in path.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return False, None
    return True, current


@dataclass
class RecordCollector:
    """Records and rejected records of one read, numbered 1, 2, ... in the order the source returned them."""

    location: str
    acquired_at: str = field(default_factory=utc_now)
    chunks: list[pd.DataFrame] = field(default_factory=list)
    watermarks: list[Any] = field(default_factory=list)
    rejected: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    next_position: int = 1

    def reserve(self, count: int) -> list[int]:
        """Return the next `count` positions."""
        positions = list(range(self.next_position, self.next_position + count))
        self.next_position += count
        return positions

    def add_records(
        self, frame: pd.DataFrame, positions: list[int], query: str, watermarks: list[Any] | None = None
    ) -> None:
        """Add source records (native values) read by one request or chunk, with their positions."""
        if frame.empty:
            return
        clashes = sorted(set(frame.columns) & set(RESERVED_COLUMNS))
        if clashes:
            raise InputDataError(
                self.location,
                f"the source returns fields named {clashes}, which the acquire stage uses for provenance",
                "Rename them in the query (`SELECT x AS other_name`) or in the API response.",
                field=clashes[0],
            )
        duplicates = sorted({name for name in frame.columns if list(frame.columns).count(name) > 1})
        if duplicates:
            raise InputDataError(
                self.location,
                f"the source returns several fields named {duplicates}",
                "Give each column a unique name (`SELECT a.id AS a_id, b.id AS b_id`).",
                field=duplicates[0],
            )
        text = frame_to_text(frame.reset_index(drop=True))
        text["source_row"] = pd.Series(positions, dtype="int64")
        text["source_query"] = pd.Series([query] * len(text), dtype="string")
        text["acquired_at"] = pd.Series([self.acquired_at] * len(text), dtype="string")
        self.chunks.append(text)
        if watermarks is not None:
            self.watermarks.extend(watermarks)

    def add_rejected(self, position: int, raw: str, reason: str, detail: str, query: str) -> None:
        """Add a record that could not be parsed; it goes to the quarantine table."""
        self.rejected.append((position, raw[:RAW_PREVIEW_CHARS], reason, detail, query))

    @property
    def record_count(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def records(self) -> pd.DataFrame:
        """Return all records as one string table with `source_row`, `source_query` and `acquired_at`."""
        if not self.chunks:
            return empty_records()
        frame = pd.concat(self.chunks, ignore_index=True)
        for name in frame.columns:
            if name != "source_row":
                frame[name] = frame[name].astype("string")
        return frame

    def rejected_records(self) -> pd.DataFrame:
        """Return the rejected records in the snapshot layout (provenance columns plus `rejected_*`)."""
        rows = self.rejected
        return pd.DataFrame(
            {
                "source_row": pd.Series([row[0] for row in rows], dtype="int64"),
                "source_query": pd.Series([row[4] for row in rows], dtype="string"),
                "acquired_at": pd.Series([self.acquired_at] * len(rows), dtype="string"),
                REJECTED_RAW: pd.Series([row[1] for row in rows], dtype="string"),
                REJECTED_REASON: pd.Series([row[2] for row in rows], dtype="string"),
                REJECTED_DETAIL: pd.Series([row[3] for row in rows], dtype="string"),
            }
        )


def empty_records() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_row": pd.Series(dtype="int64"),
            "source_query": pd.Series(dtype="string"),
            "acquired_at": pd.Series(dtype="string"),
        }
    )


def batch_from_frames(
    records: pd.DataFrame, rejected: pd.DataFrame, location: str, extra: dict[str, Any]
) -> SourceBatch:
    """Build the SourceBatch of a live source from its records and its rejected records (snapshot layout)."""
    rejected_rows = [
        (int(row), str(raw), str(reason), str(detail))
        for row, raw, reason, detail in zip(
            rejected["source_row"],
            rejected[REJECTED_RAW],
            rejected[REJECTED_REASON],
            rejected[REJECTED_DETAIL],
            strict=True,
        )
    ]
    return SourceBatch(
        records=records.reset_index(drop=True),
        location=location,
        rejected=rejected_frame(rejected_rows),
        extra=extra,
    )
