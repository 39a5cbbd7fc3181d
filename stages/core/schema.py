"""Column names of the common row schema that every stage reads and writes."""

from __future__ import annotations

import hashlib

import pandas as pd

# Task columns.
ROW_ID = "row_id"  # stable id: hash of source name, location and row number
TEXT = "text"  # classification input, or the generation input (prompt fields)
LABEL = "label"  # classification label
TARGET = "target"  # generation reference text
INPUT_COVERAGE = "input_coverage"  # generation, `curate.coverage` on: share of input values in the target
TIMESTAMP = "timestamp"  # optional event time, used by temporal splits
GROUP = "group"  # optional group key: rows of one group never cross splits
SPLIT = "split"  # predefined split from the source (train, validation, test) or empty

# Provenance columns.
SOURCE = "source"  # source name from params
SOURCE_TYPE = "source_type"  # csv, jsonl, parquet, sql, http, hf, synthetic, augment
SOURCE_LOCATION = "source_location"  # file path, URL or database location, without secrets
SOURCE_ROW = "source_row"  # 1-based row number in the source (a file's line for JSONL)
SOURCE_QUERY = "source_query"  # query, page or generator detail, when there is one
ACQUIRED_AT = "acquired_at"  # acquisition time for live sources, empty for files
CONTENT_HASH = "content_hash"  # sha256 of the task columns as read
SYNTHETIC = "synthetic"  # True for rows made by a generator rather than collected

TASK_COLUMNS = [TEXT, LABEL, TARGET, TIMESTAMP, GROUP, SPLIT]
PROVENANCE_COLUMNS = [
    SOURCE,
    SOURCE_TYPE,
    SOURCE_LOCATION,
    SOURCE_ROW,
    SOURCE_QUERY,
    ACQUIRED_AT,
    CONTENT_HASH,
    SYNTHETIC,
]
ALL_COLUMNS = [ROW_ID, *TASK_COLUMNS, *PROVENANCE_COLUMNS]

SPLIT_NAMES = ("train", "validation", "test")


def sha256_hex(*parts: object) -> str:
    """Hash parts joined by a unit separator, so ("ab", "c") and ("a", "bc") differ."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(("" if part is None else str(part)).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def content_hashes(frame: pd.DataFrame) -> pd.Series:
    """Return the sha256 of the task content (text, label, target) of each row."""
    columns = [
        frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)
        for name in (TEXT, LABEL, TARGET)
    ]
    return pd.Series(
        [sha256_hex(text, label, target) for text, label, target in zip(*columns, strict=True)],
        index=frame.index,
        dtype="string",
    )


def row_ids(source: str, location: str, rows: pd.Series) -> pd.Series:
    """Return stable row ids from the source name, its location and each row number."""
    return pd.Series(
        [sha256_hex(source, location, row)[:20] for row in rows],
        index=rows.index,
        dtype="string",
    )
