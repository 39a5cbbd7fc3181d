"""What every source reader shares: its config base, the batch it returns and the registry."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator

from stages.core.params import StageConfig
from stages.core.schema import SPLIT_NAMES


class ColumnMap(StageConfig):
    """Which source column feeds each common column; only `text` is required."""

    text: str = "text"
    label: str | None = None
    target: str | None = None
    timestamp: str | None = None
    group: str | None = None
    split: str | None = None


class SourceConfig(StageConfig):
    """Settings every source has, whatever its type."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    columns: ColumnMap = ColumnMap()
    # The split every row of this source belongs to, when the source is one split.
    split: str | None = None
    # Keep only the first N records (after parsing), for quick runs and tests.
    limit: int | None = Field(default=None, gt=0)
    # Keep a seeded random sample of N records, in their original order.
    sample_rows: int | None = Field(default=None, gt=0)

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str | None) -> str | None:
        if value is not None and value not in SPLIT_NAMES:
            raise ValueError(f"must be one of {', '.join(SPLIT_NAMES)}")
        return value


@dataclass
class SourceBatch:
    """Records read from one source.

    `records` has one column per source field plus `source_row`. `rejected` has `source_row`,
    `raw` (the unparsed record, shortened) and `reason`/`detail` for records that could not be
    parsed; they go to the quarantine table.

    `query` and `acquired_at` apply to every record, unless `records` has its own `source_query`
    or `acquired_at` column (a page URL or fetch time per row), which then wins. `extra` is merged
    into the source's entry in the acquire metrics.
    """

    records: pd.DataFrame
    location: str
    rejected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"source_row": [], "raw": [], "reason": [], "detail": []})
    )
    query: str | None = None
    acquired_at: str | None = None
    synthetic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# Columns of `records` that carry provenance rather than source fields.
PROVENANCE_RECORD_COLUMNS = ("source_row", "source_query", "acquired_at")


@dataclass(frozen=True)
class ReadContext:
    """Run-wide settings a reader may need besides its own config."""

    # The top-level params `seed`, for generators.
    seed: int = 0
    # Folder of the snapshots that incremental sources extend; None when the run has none.
    snapshot_dir: Path | None = None


# reader(config, index, context): `index` is the source's position in `acquire.sources`.
Reader = Callable[[Any, int, ReadContext], SourceBatch]

# type name -> (config model, reader). Modules register themselves on import.
READERS: dict[str, tuple[type[SourceConfig], Reader]] = {}


def register(type_name: str, config_model: type[SourceConfig]) -> Callable[[Reader], Reader]:
    """Register a reader function for a source type."""

    def decorate(reader: Reader) -> Reader:
        READERS[type_name] = (config_model, reader)
        return reader

    return decorate


def rejected_frame(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    """Build the rejected-records table from (row, raw, reason, detail) tuples."""
    return pd.DataFrame(rows, columns=["source_row", "raw", "reason", "detail"]).astype(
        {"source_row": "int64", "raw": "string", "reason": "string", "detail": "string"}
    )


# Reason code of a record whose strings contain a lone UTF-16 surrogate, a JSON escape such as \ud800
# without its pair. Such text cannot be encoded as UTF-8, so it cannot be stored in Parquet.
INVALID_UNICODE = "invalid_unicode"
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
    """Return the dotted path of the first string or key in parsed JSON with a lone surrogate, else None.

    The path of the value itself is "", for a record that is one string. Paired surrogates never reach
    here, because JSON decoding joins them into one character.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return name
            found = lone_surrogate_field(item, name)
            if found is not None:
                return found
    if isinstance(value, list):
        for position, item in enumerate(value):
            found = lone_surrogate_field(item, f"{path}.{position}" if path else str(position))
            if found is not None:
                return found
    return None
