"""Incremental acquisition: a snapshot per source that each run extends with rows past a watermark.

A source with `watermark: COLUMN` keeps every record it has read in `<snapshot dir>/<name>.parquet`
(dvc.yaml passes `data/snapshots` and declares it a persistent output, so DVC caches each version
and never deletes it before a run). A run reads the snapshot, requests from the source only the
records whose watermark is greater than the maximum stored with the snapshot, appends them,
replaces older versions of the same `key`, and writes the snapshot again. The batch returned to the
acquire stage is the whole snapshot, so the stage output is the same whether the rows came in one
run or in ten.

A record keeps the `source_row` it got when first read, also after a newer version replaces it, so
its row id stays stable. Rejected records are kept in the snapshot too, so the quarantine table of a
later run still lists them.

The watermark stored with the snapshot moves forward only when a read is complete. After a partial
HTTP read (`on_error: keep_partial`) it stays where it was, so the next run asks again for every
record past the old maximum and the overlap is merged by `key`.

`refresh: full` ignores the stored snapshot and reads everything again. A changed source definition
(URL, query, parameters, records path, watermark or key) does the same, because the old rows no
longer answer the new question.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from stages.acquisition.base import ReadContext, SourceBatch, SourceConfig
from stages.acquisition.live import (
    REJECTED_DETAIL,
    REJECTED_RAW,
    REJECTED_REASON,
    RecordCollector,
    batch_from_frames,
)
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import atomic_path
from stages.core.schema import sha256_hex

logger = logging.getLogger(__name__)

SNAPSHOT_METADATA_KEY = b"acquire.snapshot"
SNAPSHOT_FORMAT = 1


class IncrementalSourceConfig(SourceConfig):
    """Settings of a source that can be read incrementally (SQL, HTTP)."""

    # Source column (a dotted path for HTTP) that grows with every new or changed record: an update
    # time or an increasing id. Without it the source is read whole on every run.
    watermark: str | None = Field(default=None, min_length=1)
    # Columns that identify a record; a newer version replaces the stored one. Without a key only
    # exact duplicates of a stored record are skipped.
    key: list[str] = Field(default_factory=list)
    # "full" ignores the stored snapshot and reads everything again.
    refresh: Literal["incremental", "full"] = "incremental"

    @model_validator(mode="after")
    def _incremental_settings_need_watermark(self) -> IncrementalSourceConfig:
        if self.watermark is None and self.key:
            raise ValueError("`key` only applies to incremental sources; set `watermark` too or remove `key`")
        if self.watermark is None and self.refresh != "incremental":
            raise ValueError(
                "`refresh` only applies to incremental sources; set `watermark` too or remove `refresh`"
            )
        return self


# Watermark values ----------------------------------------------------------------------------


def _watermark_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


NUMBER_KINDS = {"int", "float", "decimal"}
SUPPORTED_KINDS = {*NUMBER_KINDS, "datetime", "date", "str"}


def _native(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _comparable(first: Any, second: Any) -> bool:
    kinds = {_watermark_kind(first), _watermark_kind(second)}
    return kinds <= NUMBER_KINDS or len(kinds) == 1


def max_watermark(values: list[Any], start: Any, column: str, location: str) -> Any:
    """Return the maximum of `start` and the non-missing `values`, raising InputDataError on mixed types."""
    best = start
    for raw in values:
        value = _native(raw)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        kind = _watermark_kind(value)
        if kind not in SUPPORTED_KINDS:
            raise InputDataError(
                location,
                f"watermark values of type {kind} cannot be compared",
                f"Point `watermark` at a number, date, timestamp or text column instead of `{column}`.",
                field=column,
            )
        if best is None:
            best = value
            continue
        if not _comparable(best, value):
            raise InputDataError(
                location,
                f"watermark values mix types ({_watermark_kind(best)} and {kind}), so they cannot be ordered",
                f"Make `{column}` one type in the source, or set `refresh: full` once if its type changed.",
                field=column,
            )
        try:
            if value > best:
                best = value
        except TypeError as exc:  # for example a timestamp with a time zone against one without
            raise InputDataError(
                location,
                f"watermark values cannot be compared ({exc})",
                f"Make `{column}` consistent in the source.",
                field=column,
            ) from None
    return best


def is_newer(value: Any, watermark: Any) -> bool:
    """Return True when `value` is past `watermark`; a missing value or watermark counts as newer."""
    value = _native(value)
    if watermark is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    if not _comparable(value, watermark):
        return True
    try:
        return value > watermark
    except TypeError:
        return True


def encode_watermark(value: Any) -> dict[str, str] | None:
    """Return a JSON-ready form of a watermark value that `decode_watermark` turns back into the same type."""
    if value is None:
        return None
    kind = _watermark_kind(value)
    if kind in {"datetime", "date"}:
        text = value.isoformat()
    elif kind == "float":
        text = repr(value)  # repr round-trips a float exactly
    else:
        text = str(value)
    return {"type": kind, "value": text}


def decode_watermark(encoded: dict[str, str] | None) -> Any:
    if encoded is None:
        return None
    kind, text = encoded["type"], encoded["value"]
    decoders = {
        "int": int,
        "float": float,
        "decimal": Decimal,
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "str": str,
    }
    return decoders[kind](text)


def watermark_text(value: Any) -> str:
    """Return a watermark value as it is sent in a query parameter or shown in provenance."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


# Snapshots -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The stored state of one incremental source, or an empty start."""

    path: Path
    frame: pd.DataFrame | None
    watermark: Any
    next_source_row: int
    # "incremental", or why the run reads everything again.
    mode: str


def definition_hash(definition: dict[str, Any]) -> str:
    """Return a hash of the settings that decide which records a source returns."""
    return sha256_hex(json.dumps(definition, sort_keys=True, default=str))


def open_snapshot(
    config: IncrementalSourceConfig, context: ReadContext | None, index: int, definition: dict[str, Any]
) -> Snapshot | None:
    """Load the stored snapshot of an incremental source; return None for a source without `watermark`."""
    if config.watermark is None:
        return None
    key = f"acquire.sources[{index}]"
    if context is None or context.snapshot_dir is None:
        raise ParamsError(
            f"{key}.watermark",
            config.watermark,
            "needs a snapshot folder, but the acquire stage was run without one",
            "Run `python -m stages.acquire` with `--snapshots DIR` (dvc.yaml passes data/snapshots).",
        )
    path = Path(context.snapshot_dir) / f"{config.name}.parquet"
    if config.refresh == "full":
        return Snapshot(path, None, None, 1, "full (refresh: full)")
    if not path.is_file():
        return Snapshot(path, None, None, 1, "full (no snapshot yet)")

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(
            str(path),
            f"the snapshot is not a readable Parquet file ({exc})",
            f"Delete it to read the source again from the start, or set `{key}.refresh: full`.",
        ) from None
    metadata = (table.schema.metadata or {}).get(SNAPSHOT_METADATA_KEY)
    state = json.loads(metadata) if metadata else None
    if not state or state.get("format") != SNAPSHOT_FORMAT:
        raise InputDataError(
            str(path),
            "the file has no snapshot metadata of the current format",
            f"Delete it to read the source again from the start, or set `{key}.refresh: full`.",
        )
    if state.get("definition") != definition_hash(definition):
        logger.info(
            "source %s: URL, query, parameters, watermark or key changed since the snapshot, "
            "so every record is read again",
            config.name,
        )
        return Snapshot(path, None, None, 1, "full (source definition changed)")
    return Snapshot(
        path=path,
        frame=table.to_pandas(),
        watermark=decode_watermark(state.get("watermark")),
        next_source_row=int(state["next_source_row"]),
        mode="incremental",
    )


def write_snapshot(
    snapshot: Snapshot,
    frame: pd.DataFrame,
    watermark: Any,
    definition: dict[str, Any],
    complete: bool,
    column: str,
) -> None:
    """Write the snapshot with its state in the Parquet schema metadata, atomically and deterministically."""
    state = {
        "format": SNAPSHOT_FORMAT,
        "definition": definition_hash(definition),
        "watermark_column": column,
        "watermark": encode_watermark(watermark),
        "next_source_row": int(frame["source_row"].max()) + 1 if len(frame) else snapshot.next_source_row,
        "last_read_complete": complete,
    }
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[SNAPSHOT_METADATA_KEY] = json.dumps(state, sort_keys=True).encode("utf-8")
    table = table.replace_schema_metadata(metadata)
    with atomic_path(snapshot.path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=True,
            write_statistics=True,
            row_group_size=1_000_000,
        )


def _content_columns(frame: pd.DataFrame) -> list[str]:
    reserved = {"source_row", "source_query", "acquired_at", REJECTED_RAW, REJECTED_REASON, REJECTED_DETAIL}
    return [name for name in frame.columns if name not in reserved]


def _row_keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """Return one tuple per row of the values in `columns`, with missing values as None."""
    parts = [
        [None if value is pd.NA else value for value in frame[name].astype("string")] for name in columns
    ]
    return list(zip(*parts, strict=True)) if parts else [() for _ in range(len(frame))]


def _has_missing(row_key: tuple[Any, ...]) -> bool:
    return any(part is None for part in row_key)


def merge_records(
    previous: pd.DataFrame, fetched: pd.DataFrame, key: list[str], location: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Merge newly read records into the stored ones; return the merged records and counts.

    With `key`, a fetched record replaces the stored record with the same key (keeping the stored
    `source_row`), and within one read the last record of a key wins. Without `key`, a fetched record
    identical in every source field to a stored one is skipped.
    """
    stats = {"rows_new": 0, "rows_updated": 0, "rows_unchanged": 0, "rows_duplicate": 0}
    columns = list(dict.fromkeys([*previous.columns, *fetched.columns]))
    previous = previous.reindex(columns=columns)
    fetched = fetched.reindex(columns=columns)
    content = _content_columns(fetched)

    if not key:
        seen = set(_row_keys(previous, content))
        keep = []
        for row_key in _row_keys(fetched, content):
            duplicate = row_key in seen
            keep.append(not duplicate)
            seen.add(row_key)
            stats["rows_duplicate" if duplicate else "rows_new"] += 1
        merged = pd.concat([previous, fetched[keep]], ignore_index=True)
        return merged.sort_values("source_row", kind="stable").reset_index(drop=True), stats

    missing = [name for name in key if name not in fetched.columns or fetched[name].isna().all()]
    if missing and len(fetched):
        raise InputDataError(
            location,
            f"key column `{missing[0]}` not found in the records read",
            "Set `key` to fields the source returns.",
            field=missing[0],
        )

    # Within one read the last version of a key wins; earlier ones are counted as duplicates. A
    # record with a missing key value matches nothing, so it is always kept.
    fetched_keys = _row_keys(fetched, key)
    last_position = {
        row_key: position for position, row_key in enumerate(fetched_keys) if not _has_missing(row_key)
    }
    kept = sorted(
        {
            *last_position.values(),
            *(position for position, row_key in enumerate(fetched_keys) if _has_missing(row_key)),
        }
    )
    latest = fetched.iloc[kept]
    stats["rows_duplicate"] += len(fetched) - len(latest)

    stored_position = {
        row_key: position
        for position, row_key in enumerate(_row_keys(previous, key))
        if not _has_missing(row_key)
    }
    merged = previous.copy()
    appended = []
    for row_key, (_, record) in zip(_row_keys(latest, key), latest.iterrows(), strict=True):
        position = None if _has_missing(row_key) else stored_position.get(row_key)
        if position is None:
            appended.append(record)
            stats["rows_new"] += 1
            continue
        stored = merged.iloc[position]
        if all(_same(stored[name], record[name]) for name in content):
            stats["rows_unchanged"] += 1
            continue
        updated = record.copy()
        updated["source_row"] = stored["source_row"]
        merged.iloc[position] = updated
        stats["rows_updated"] += 1
    if appended:
        merged = pd.concat([merged, pd.DataFrame(appended, columns=columns)], ignore_index=True)
    merged["source_row"] = merged["source_row"].astype("int64")
    return merged.sort_values("source_row", kind="stable").reset_index(drop=True), stats


def _same(first: Any, second: Any) -> bool:
    first_missing = first is None or first is pd.NA or (isinstance(first, float) and np.isnan(first))
    second_missing = second is None or second is pd.NA or (isinstance(second, float) and np.isnan(second))
    if first_missing or second_missing:
        return first_missing and second_missing
    return str(first) == str(second)


def finish_read(
    config: IncrementalSourceConfig,
    snapshot: Snapshot | None,
    collector: RecordCollector,
    definition: dict[str, Any],
    *,
    complete: bool,
    extra: dict[str, Any],
) -> SourceBatch:
    """Turn one read into the source's batch; for an incremental source, merge it into the snapshot first."""
    fetched = collector.records()
    rejected = collector.rejected_records()
    if snapshot is None:
        return batch_from_frames(fetched, rejected, collector.location, extra)

    column = config.watermark
    assert column is not None
    # Numbers continue after the stored rows, so a record's source_row never changes between runs.
    offset = snapshot.next_source_row - 1
    fetched["source_row"] = fetched["source_row"] + offset
    rejected["source_row"] = rejected["source_row"] + offset

    # The server may ignore the watermark parameter; records not past the stored watermark are skipped here.
    newer = (
        [is_newer(value, snapshot.watermark) for value in collector.watermarks]
        if collector.watermarks
        else [True] * len(fetched)
    )
    not_newer = len(newer) - sum(newer)
    fetched = fetched[newer].reset_index(drop=True)
    fetched_watermarks = (
        [value for value, keep in zip(collector.watermarks, newer, strict=True) if keep]
        if collector.watermarks
        else []
    )

    previous = (
        snapshot.frame
        if snapshot.frame is not None
        else pd.DataFrame({"source_row": pd.Series(dtype="int64")})
    )
    previous_records = previous[previous[REJECTED_REASON].isna()] if REJECTED_REASON in previous else previous
    previous_rejected = (
        previous[previous[REJECTED_REASON].notna()] if REJECTED_REASON in previous else previous.iloc[0:0]
    )
    records, stats = merge_records(
        previous_records.drop(columns=[REJECTED_RAW, REJECTED_REASON, REJECTED_DETAIL], errors="ignore"),
        fetched,
        config.key,
        collector.location,
    )

    watermark_after = (
        max_watermark(fetched_watermarks, snapshot.watermark, column, collector.location)
        if complete
        else snapshot.watermark
    )
    all_rejected = (
        pd.concat([previous_rejected, rejected], ignore_index=True) if len(previous_rejected) else rejected
    )
    stored = (
        pd.concat([records, all_rejected], ignore_index=True)
        .sort_values("source_row", kind="stable")
        .reset_index(drop=True)
    )
    for name in (REJECTED_RAW, REJECTED_REASON, REJECTED_DETAIL):
        if name not in stored:
            stored[name] = pd.Series(pd.NA, index=stored.index, dtype="string")
    for name in stored.columns:
        if name != "source_row":
            stored[name] = stored[name].astype("string")
    stored["source_row"] = stored["source_row"].astype("int64")
    write_snapshot(snapshot, stored, watermark_after, definition, complete, column)

    stored_records = stored[stored[REJECTED_REASON].isna()].drop(
        columns=[REJECTED_RAW, REJECTED_REASON, REJECTED_DETAIL]
    )
    stored_rejected = stored[stored[REJECTED_REASON].notna()]
    extra = {
        **extra,
        "snapshot": str(snapshot.path),
        "refresh": snapshot.mode,
        "rows_stored_before": 0 if snapshot.frame is None else len(previous_records),
        "rows_not_newer": not_newer,
        **stats,
        "watermark_before": None if snapshot.watermark is None else watermark_text(snapshot.watermark),
        "watermark_after": None if watermark_after is None else watermark_text(watermark_after),
    }
    logger.info(
        "source %s: snapshot %s (%s): %d new, %d updated, %d stored in all",
        config.name,
        snapshot.path,
        snapshot.mode,
        stats["rows_new"],
        stats["rows_updated"],
        len(stored_records),
    )
    return batch_from_frames(stored_records, stored_rejected, collector.location, extra)
