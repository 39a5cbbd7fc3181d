"""split: assign curated rows to train, validation and test, check them for leakage and measure stability.

Writes a folder with train.parquet, validation.parquet, test.parquet (always all three),
quarantine.parquet and, for the kfold strategy, folds.parquet; see stages/splitting for the
strategies and checks.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stages.baselines import TfidfConfig
from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import GateError, InputDataError
from stages.core.io import read_table, write_json, write_table
from stages.core.params import TaskConfig, parse_section, parse_seed, parse_value, read_params
from stages.splitting.config import SplitConfig
from stages.splitting.leakage import check_leakage, enforce_leakage_gate, gate_failures
from stages.splitting.runner import SplitResult, split_rows
from stages.splitting.stability import measure_stability
from stages.splitting.suite import validate_splits

logger = logging.getLogger(__name__)

SPLIT_FILES = {name: f"{name}.parquet" for name in S.SPLIT_NAMES}
QUARANTINE_FILE = "quarantine.parquet"
FOLDS_FILE = "folds.parquet"


def output_tables(result: SplitResult, columns: list[str]) -> dict[str, pd.DataFrame]:
    """Return file name -> table for everything the stage writes into its output folder."""
    tables = {SPLIT_FILES[name]: result.splits[name] for name in S.SPLIT_NAMES}
    tables[QUARANTINE_FILE] = result.quarantine.frame(columns)
    if result.folds is not None:
        tables[FOLDS_FILE] = result.folds
    return tables


def write_folder(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> None:
    """Write every table into a new folder and swap it with `out_dir`, so no stale file survives."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        for name, table in tables.items():
            write_table(table, staging / name)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if old is not None:
            shutil.rmtree(old)


def check_split(result: SplitResult, config: SplitConfig, suite: str | Path | None = None) -> None:
    """Run the leakage checks and the expectation suite, recording both in `result.metrics`.

    Raises GateError when a leakage limit or an expectation fails; `result.metrics` then contains
    the counts and examples for the metrics file.
    """
    started = time.perf_counter()
    report = check_leakage(result.splits, config, time_order=config.strategy == "temporal")
    failures = gate_failures(report, config.leakage)
    result.metrics["leakage"] = {
        "limits": config.leakage.model_dump(exclude={"examples"}),
        "pairs": report,
        "passed": not failures,
        "failures": failures,
    }
    logger.info("leakage checked in %.1f s", time.perf_counter() - started)
    enforce_leakage_gate(report, config.leakage)
    if suite is not None:
        result.metrics["expectations"] = validate_splits(result.splits, suite)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--rows", required=True, help="Parquet table of curated rows")
    parser.add_argument("--out-dir", required=True, help="folder for the split, quarantine and fold tables")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument("--suite", required=True, help="Great Expectations suite (JSON) for the split tables")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    task = parse_section(params, "task", TaskConfig)
    config = parse_section(params, "split", SplitConfig)
    # Only baselines.tfidf is read: the stability measurement fits the same TF-IDF baseline.
    tfidf = parse_value((params.get("baselines") or {}).get("tfidf") or {}, "baselines.tfidf", TfidfConfig)

    frame = read_table(args.rows)
    if frame.empty:
        raise InputDataError(
            args.rows, "the table has no rows", "Check the curate stage's quarantine and metrics."
        )
    result = split_rows(frame, config, seed, args.rows)
    result.metrics["task_type"] = task.type
    try:
        check_split(result, config, args.suite)
    except GateError:
        # The metrics file shows which checks failed, with examples; the split tables are not written.
        write_json(result.metrics, args.metrics)
        raise
    has_labels = result.context.has_labels and task.type == "classification"
    result.metrics["stability"] = measure_stability(
        result, config, seed, args.rows, tfidf, has_labels=has_labels
    )

    write_folder(output_tables(result, list(frame.columns)), args.out_dir)
    write_json(result.metrics, args.metrics)
    logger.info("wrote %s and %s", args.out_dir, args.metrics)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
