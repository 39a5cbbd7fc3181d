"""Readers for local files: CSV, JSON Lines and Parquet."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from stages.acquisition.base import (
    INVALID_UNICODE,
    ReadContext,
    SourceBatch,
    SourceConfig,
    lone_surrogate_field,
    register,
    rejected_frame,
)
from stages.core.errors import InputDataError

# Fields above this size are kept (curate's length rule quarantines them) instead of failing the read.
MAX_FIELD_BYTES = 64 * 1024 * 1024
# Raw text of a rejected record kept in quarantine, in characters.
RAW_PREVIEW_CHARS = 2000
# JSON Lines records end at \n, \r\n or \r only. str.splitlines() also splits at U+2028, U+0085 and
# other characters that JSON strings may contain unescaped.
JSONL_LINE_END = re.compile(r"\r\n|\r|\n")
# Only lines with a \u escape of a UTF-16 surrogate (D800 to DFFF) need the slower Unicode check.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class FileSourceConfig(SourceConfig):
    path: str = Field(min_length=1)
    # "auto" reads UTF-8, with or without a byte-order mark, and UTF-16 with a byte-order mark.
    encoding: str = "auto"


class CsvSourceConfig(FileSourceConfig):
    type: Literal["csv"] = "csv"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)


class JsonlSourceConfig(FileSourceConfig):
    type: Literal["jsonl"] = "jsonl"


class ParquetSourceConfig(SourceConfig):
    type: Literal["parquet"] = "parquet"
    path: str = Field(min_length=1)


def _existing_file(path: str, key: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise InputDataError(
            path,
            "file not found",
            f"Check `{key}.path` in params.yaml (paths are relative to the repository root).",
        )
    if file.stat().st_size == 0:
        raise InputDataError(
            path, "file is empty", f"Point `{key}.path` at a file with data, or remove the source."
        )
    return file


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_text(path: str, data: bytes, encoding: str, key: str) -> str:
    """Decode file bytes, detecting a byte-order mark when `encoding` is "auto"."""
    if encoding == "auto":
        if data.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        else:
            encoding = "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputDataError(
            path,
            f"unknown encoding {encoding!r}",
            f"Set `{key}.encoding` to a Python codec name such as utf-8 or cp1252.",
        ) from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = _line_of_offset(data, exc.start)
        raise InputDataError(
            path,
            f"line {line}: byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid {encoding}",
            f"Save the file as UTF-8, or set `{key}.encoding` to its encoding (for example cp1252).",
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputDataError(
            path,
            f"line {line}: contains NUL bytes, so it looks binary or UTF-16 without a byte-order mark",
            f"Convert it to UTF-8 text, or set `{key}.encoding` (for example utf-16-le).",
        )
    return text


@register("csv", CsvSourceConfig)
def read_csv(config: CsvSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Read a CSV file with a header row; rows with the wrong number of fields are rejected."""
    key = f"acquire.sources[{index}]"
    file = _existing_file(config.path, key)
    raw_bytes = file.read_bytes()
    text = decode_text(config.path, raw_bytes, config.encoding, key)
    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=config.delimiter, quotechar=config.quotechar, strict=True
    )

    header: list[str] | None = None
    records: list[list[str]] = []
    record_lines: list[int] = []
    rejected: list[tuple[int, str, str, str]] = []
    while True:
        start_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputDataError(
                config.path,
                f"line {start_line}: {exc} (often an unbalanced quote that runs to the end of the file)",
                "Fix the quoting in the file, or set `quotechar` for this source.",
            ) from None
        if not fields or (len(fields) == 1 and fields[0] == "" and header is not None):
            continue  # a blank line is not a record
        if header is None:
            header = [name.strip() for name in fields]
            _check_header(config.path, header, key)
            continue
        if len(fields) != len(header):
            raw = config.delimiter.join(fields)[:RAW_PREVIEW_CHARS]
            detail = f"line {start_line}: expected {len(header)} fields, found {len(fields)}"
            rejected.append((start_line, raw, "malformed_row", detail))
            continue
        records.append(fields)
        record_lines.append(start_line)

    if header is None:
        raise InputDataError(
            config.path,
            "file has no header row",
            f"Add a header row naming the columns, or fix `{key}.path`.",
        )
    if not records and not rejected:
        raise InputDataError(
            config.path,
            "file has a header but no data rows",
            f"Add data rows, or remove `{key}` from params.yaml.",
        )
    frame = pd.DataFrame(records, columns=header, dtype="string")
    frame["source_row"] = pd.Series(record_lines, dtype="int64")
    return SourceBatch(records=frame, location=config.path, rejected=rejected_frame(rejected))


def _check_header(path: str, header: list[str], key: str) -> None:
    seen: set[str] = set()
    duplicates = sorted({name for name in header if name in seen or seen.add(name)})
    if duplicates:
        raise InputDataError(
            path,
            f"line 1: duplicate column names {duplicates}",
            "Rename the columns so that each name is unique.",
        )
    if any(name == "" for name in header):
        position = header.index("") + 1
        raise InputDataError(
            path,
            f"line 1: column {position} has an empty name",
            "Give every column a name in the header row.",
        )


@register("jsonl", JsonlSourceConfig)
def read_jsonl(config: JsonlSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Read JSON Lines; invalid lines and lines that are not objects are rejected with their line number."""
    key = f"acquire.sources[{index}]"
    file = _existing_file(config.path, key)
    text = decode_text(config.path, file.read_bytes(), config.encoding, key)

    objects: list[dict] = []
    lines: list[int] = []
    rejected: list[tuple[int, str, str, str]] = []
    for number, line in enumerate(JSONL_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rejected.append(
                (
                    number,
                    line[:RAW_PREVIEW_CHARS],
                    "invalid_json",
                    f"line {number}, column {exc.colno}: {exc.msg}",
                )
            )
            continue
        if not isinstance(value, dict):
            rejected.append(
                (
                    number,
                    line[:RAW_PREVIEW_CHARS],
                    "not_an_object",
                    f"line {number}: a JSON {type(value).__name__}, expected an object",
                )
            )
            continue
        invalid_field = lone_surrogate_field(value) if SURROGATE_ESCAPE.search(line) else None
        if invalid_field is not None:
            rejected.append(
                (
                    number,
                    line[:RAW_PREVIEW_CHARS],
                    INVALID_UNICODE,
                    f"line {number}, field `{invalid_field}`: a \\u escape encodes a lone surrogate, "
                    "which is not valid Unicode text",
                )
            )
            continue
        objects.append(value)
        lines.append(number)

    if not objects and not rejected:
        raise InputDataError(
            config.path, "file has no records", f"Add records, or remove `{key}` from params.yaml."
        )
    frame = pd.json_normalize(objects, sep=".") if objects else pd.DataFrame()
    frame["source_row"] = pd.Series(lines, dtype="int64")
    return SourceBatch(records=frame, location=config.path, rejected=rejected_frame(rejected))


@register("parquet", ParquetSourceConfig)
def read_parquet(config: ParquetSourceConfig, index: int, context: ReadContext | None = None) -> SourceBatch:
    """Read a Parquet file; `source_row` is the 1-based row index."""
    key = f"acquire.sources[{index}]"
    file = _existing_file(config.path, key)
    try:
        _check_unique_columns(config.path, pq.read_schema(file).names)
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(
            config.path, f"not a readable Parquet file ({exc})", f"Check `{key}.path` and `{key}.type`."
        ) from None
    _check_utf8_columns(config.path, table)
    frame = table.to_pandas()
    if frame.empty:
        raise InputDataError(
            config.path, "file has no rows", f"Add rows, or remove `{key}` from params.yaml."
        )
    frame = frame.reset_index(drop=True)
    frame["source_row"] = pd.Series(range(1, len(frame) + 1), dtype="int64")
    return SourceBatch(records=frame, location=config.path)


def _check_unique_columns(path: str, names: list[str]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputDataError(
            path,
            f"duplicate column names {duplicates}",
            "Rewrite the file so that each column name is unique.",
            field=duplicates[0],
        )


def _check_utf8_columns(path: str, table: pa.Table) -> None:
    """Raise InputDataError for the first string value that is not valid UTF-8."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            row = _first_invalid_utf8_row(column)
            raise InputDataError(
                path,
                "a string value is not valid UTF-8",
                "Rewrite the file with UTF-8 strings (the writer stored bytes of another encoding).",
                row=row,
                field=name,
            ) from None


def _first_invalid_utf8_row(column: pa.ChunkedArray) -> int | None:
    """Return the 1-based row of the first value of a string column that is not valid UTF-8."""
    binary = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
    for position, value in enumerate(binary.to_pylist(), start=1):
        if value is None:
            continue
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return position
    return None
