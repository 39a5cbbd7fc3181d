"""acquire: read every configured source into one table with the common schema and provenance."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from stages.acquisition.base import PROVENANCE_RECORD_COLUMNS, ReadContext, SourceBatch, SourceConfig
from stages.acquisition.registry import READERS
from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import write_json, write_table
from stages.core.params import StageConfig, parse_seed, parse_value, read_params
from stages.core.quarantine import DETAIL as QUARANTINE_DETAIL
from stages.core.quarantine import Quarantine

logger = logging.getLogger(__name__)

# Accepted spellings of the three split names in a source's split column.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


class AcquireConfig(StageConfig):
    sources: list[dict[str, Any]] = Field(min_length=1)


def parse_sources(raw_sources: list[dict[str, Any]]) -> list[SourceConfig]:
    """Validate each source against the config model of its type."""
    configs = []
    names: set[str] = set()
    for index, raw in enumerate(raw_sources):
        key = f"acquire.sources[{index}]"
        if not isinstance(raw, dict):
            raise ParamsError(key, raw, "must be a mapping with at least `name` and `type`")
        source_type = raw.get("type")
        if source_type not in READERS:
            known = ", ".join(sorted(READERS))
            raise ParamsError(f"{key}.type", source_type, f"is not a known source type (known: {known})")
        model, _ = READERS[source_type]
        config = parse_value(raw, key, model)
        if config.name in names:
            raise ParamsError(
                f"{key}.name", config.name, "is used by an earlier source", "Give each source a unique name."
            )
        names.add(config.name)
        configs.append(config)
    return configs


def sample_records(records: pd.DataFrame, config: SourceConfig, seed: int) -> pd.DataFrame:
    """Apply `limit` and `sample_rows`, keeping records in source order."""
    if config.limit is not None:
        records = records.iloc[: config.limit]
    if config.sample_rows is not None and config.sample_rows < len(records):
        generator = np.random.default_rng([seed, int(S.sha256_hex(config.name)[:8], 16)])
        chosen = np.sort(generator.choice(len(records), size=config.sample_rows, replace=False))
        records = records.iloc[chosen]
    return records


def to_common_schema(
    batch: SourceBatch, config: SourceConfig, index: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map source columns to the common schema; returns (rows, rows with an unknown split value)."""
    key = f"acquire.sources[{index}].columns"
    records = batch.records.reset_index(drop=True)
    mapping = config.columns.model_dump()
    available = [name for name in records.columns if name not in PROVENANCE_RECORD_COLUMNS]
    frame = pd.DataFrame(index=records.index)

    for common, source_column in mapping.items():
        if source_column is None:
            frame[common] = pd.Series(pd.NA, index=records.index, dtype="string")
            continue
        if source_column not in records.columns and records.empty:
            # Every record of the source was rejected, so no field names are known.
            frame[common] = pd.Series(pd.NA, index=records.index, dtype="string")
            continue
        if source_column not in records.columns:
            fix = f"Set `{key}.{common}` to one of those columns."
            # One column whose name contains a common delimiter: the file uses another delimiter.
            separators = [mark for mark in (";", "\t", "|") if len(available) == 1 and mark in available[0]]
            if config.type == "csv" and separators:
                fix += (
                    f" The header seems delimited by {separators[0]!r}: "
                    f"set `acquire.sources[{index}].delimiter`."
                )
            raise InputDataError(
                batch.location,
                f"column `{source_column}` (mapped to `{common}`) not found; columns are {available}",
                fix,
                field=source_column,
            )
        try:
            frame[common] = _as_string(records[source_column])
        except _InvalidCellError as exc:
            raise InputDataError(
                batch.location,
                exc.problem,
                exc.fix,
                row=int(records["source_row"].iloc[exc.position]),
                field=source_column,
            ) from None

    if config.split is not None:
        frame[S.SPLIT] = config.split
    normalised = frame[S.SPLIT].str.strip().str.lower().map(SPLIT_ALIASES)
    unknown = frame[S.SPLIT].notna() & normalised.isna()
    frame[S.SPLIT] = normalised.astype("string")

    frame[S.SOURCE] = config.name
    frame[S.SOURCE_TYPE] = config.type
    frame[S.SOURCE_LOCATION] = batch.location
    frame[S.SOURCE_ROW] = records["source_row"].astype("int64").to_numpy()
    frame[S.SOURCE_QUERY] = _provenance(records, "source_query", batch.query)
    frame[S.ACQUIRED_AT] = _provenance(records, "acquired_at", batch.acquired_at)
    frame[S.SYNTHETIC] = batch.synthetic
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    frame[S.ROW_ID] = S.row_ids(config.name, batch.location, frame[S.SOURCE_ROW])
    frame = frame[S.ALL_COLUMNS]
    return frame[~unknown], frame[unknown]


def _provenance(records: pd.DataFrame, column: str, batch_value: str | None) -> pd.Series:
    """Return the reader's per-record provenance column when it has one, else the batch value on every row."""
    if column in records.columns:
        return records[column].astype("string")
    return pd.Series(batch_value, index=records.index, dtype="string")


class _InvalidCellError(ValueError):
    """A value that cannot be turned into text; `position` is its 0-based position in the column."""

    def __init__(self, position: int, problem: str, fix: str):
        super().__init__(problem)
        self.position = position
        self.problem = problem
        self.fix = fix


def _as_string(values: pd.Series) -> pd.Series:
    """Return values as nullable strings: numbers become their text, lists and dicts their JSON.

    Bytes are decoded as UTF-8, and bytes that are not UTF-8 raise _InvalidCellError.
    """
    if pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
        return values.astype("string")

    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return pd.NA
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, np.ndarray):
            # Parquet list columns arrive as numpy arrays.
            value = value.tolist()
        if isinstance(value, (list, dict)):
            return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)

    converted = []
    for position, value in enumerate(values):
        try:
            converted.append(convert(value))
        except UnicodeDecodeError as exc:
            raise _InvalidCellError(
                position,
                f"binary value is not UTF-8 text (byte 0x{value[exc.start]:02x} at offset {exc.start})",
                "Store the column as UTF-8 strings, or map another column.",
            ) from None
    return pd.Series(converted, index=values.index, dtype="string")


def rejected_to_quarantine(batch: SourceBatch, config: SourceConfig) -> pd.DataFrame:
    """Turn records a reader could not parse into rows of the common schema."""
    rejected = batch.rejected
    frame = pd.DataFrame(
        {column: pd.Series(pd.NA, index=rejected.index, dtype="string") for column in S.ALL_COLUMNS}
    )
    frame[S.TEXT] = rejected["raw"].astype("string")
    frame[S.SOURCE] = config.name
    frame[S.SOURCE_TYPE] = config.type
    frame[S.SOURCE_LOCATION] = batch.location
    frame[S.SOURCE_ROW] = rejected["source_row"].astype("int64")
    frame[S.SYNTHETIC] = batch.synthetic
    frame[S.ROW_ID] = S.row_ids(config.name, batch.location, frame[S.SOURCE_ROW])
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    return frame


def acquire(
    configs: list[SourceConfig], seed: int, snapshot_dir: Path | None = None
) -> tuple[pd.DataFrame, Quarantine, dict[str, Any]]:
    """Read every source; returns the rows, the quarantine and per-source counts.

    `snapshot_dir` is where incremental sources (those with `watermark`) keep their snapshots.
    """
    quarantine = Quarantine("acquire")
    parts = []
    per_source: dict[str, dict[str, Any]] = {}
    rows_in = 0
    context = ReadContext(seed=seed, snapshot_dir=snapshot_dir)
    for index, config in enumerate(configs):
        _, reader = READERS[config.type]
        logger.info("reading source %s (%s)", config.name, config.type)
        batch = reader(config, index, context)
        batch.records = sample_records(batch.records, config, seed)
        rows_in += len(batch.records) + len(batch.rejected)

        rows, unknown_split = to_common_schema(batch, config, index)
        rejected = rejected_to_quarantine(batch, config)
        for reason, group in rejected.groupby(batch.rejected["reason"].to_numpy(), sort=True):
            quarantine.add(group, str(reason), batch.rejected.loc[group.index, "detail"])
        split_column = config.columns.split
        quarantine.add(
            unknown_split,
            "unknown_split",
            f"split column `{split_column}` must hold train, validation or test",
        )
        parts.append(rows)
        per_source[config.name] = {
            **batch.extra,
            "rows": len(rows),
            "quarantined": len(rejected) + len(unknown_split),
        }
        logger.info(
            "source %s: %d rows, %d quarantined",
            config.name,
            len(rows),
            per_source[config.name]["quarantined"],
        )

    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=S.ALL_COLUMNS)
    quarantine.check(rows_in, len(table))
    metrics = {
        "rows_in": rows_in,
        "rows_out": len(table),
        "rows_quarantined": len(quarantine),
        "quarantine_reasons": quarantine.counts(),
        "sources": per_source,
    }
    return table, quarantine, metrics


def _no_rows_problem(quarantine: Quarantine) -> tuple[str, str]:
    """Return (problem, fix) for a run that kept no row, naming the first rejected record if there is one."""
    if len(quarantine) == 0:
        return "no rows were read from any source", "Check the sources in `acquire.sources`."
    rejected = quarantine.frame()
    reasons = ", ".join(f"{reason}: {count}" for reason, count in quarantine.counts().items())
    first = rejected.iloc[0]
    return (
        f"no rows were read: all {len(rejected)} records were rejected ({reasons}); "
        f"the first is in {first[S.SOURCE_LOCATION]}: {first[QUARANTINE_DETAIL]}",
        "Fix the rejected records in the source, or the source's settings in `acquire.sources`.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", required=True, help="Parquet table of acquired rows")
    parser.add_argument("--quarantine", required=True, help="Parquet table of rejected records")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument(
        "--snapshots",
        default=None,
        help="folder of the snapshots that incremental sources extend (created if missing)",
    )
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    config = parse_value(params.get("acquire") or {}, "acquire", AcquireConfig)
    sources = parse_sources(config.sources)
    snapshot_dir = Path(args.snapshots) if args.snapshots else None
    if snapshot_dir is not None:
        # DVC expects the declared output folder even when no source is incremental.
        snapshot_dir.mkdir(parents=True, exist_ok=True)
    table, quarantine, metrics = acquire(sources, seed, snapshot_dir)
    if table.empty:
        raise InputDataError("acquire", *_no_rows_problem(quarantine))
    write_table(table, args.out)
    write_table(quarantine.frame(S.ALL_COLUMNS), args.quarantine)
    write_json(metrics, args.metrics)
    logger.info(
        "acquired %d rows from %d sources (%d quarantined)", len(table), len(sources), len(quarantine)
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
