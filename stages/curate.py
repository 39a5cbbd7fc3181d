"""curate: repair, redact, filter and deduplicate the acquired rows, gated by expectation suites."""

from __future__ import annotations

import html
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core.cli import run_stage, stage_parser
from stages.core.expectations import validate
from stages.core.io import atomic_path, read_table, write_json, write_table
from stages.core.params import parse_section, parse_seed, read_params
from stages.core.quarantine import DETAIL, REASON, STAGE
from stages.curation.config import CurateConfig, parse_task_type
from stages.curation.pipeline import CurationResult, curate

logger = logging.getLogger(__name__)

# Data Docs sites under --docs-dir, one per suite.
DOCS_SITES = ("raw", "curated")


def suite_parameters(config: CurateConfig, task_type: str, seed: int) -> dict[str, Any]:
    """Return the values that `$param` placeholders and `when` conditions in the suites can name."""
    return {"seed": seed, "task": {"type": task_type}, "curate": config.model_dump(mode="json")}


def quarantine_table(result: CurationResult) -> pd.DataFrame:
    """Return the quarantined rows; without any, an empty table with the curated columns."""
    if len(result.quarantine):
        return result.quarantine.frame()
    empty = result.rows.iloc[:0].copy()
    for column in (REASON, DETAIL, STAGE):
        empty[column] = pd.Series(dtype="string")
    return empty


def slim_summary(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop arguments and example values from a suite summary before it goes into the metrics.

    The Data Docs show both. Examples from the raw suite can contain text that is not redacted
    yet, and the metrics file is committed to Git.
    """
    if summary is None:
        return None
    slim = {key: value for key, value in summary.items() if key != "expectations"}
    slim["expectations"] = [
        {key: value for key, value in entry.items() if key not in ("kwargs", "examples")}
        | {"column": entry["kwargs"].get("column")}
        for entry in summary["expectations"]
    ]
    return slim


def write_docs_index(docs_dir: Path, suites: list[str]) -> None:
    """Write an index page linking the Data Docs site of each suite."""
    links = "\n".join(
        f'    <li><a href="{html.escape(name)}/index.html">{html.escape(name)}</a></li>' for name in suites
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8"><title>curate: expectation results</title></head>\n'
        f"<body>\n  <h1>curate: expectation results</h1>\n  <ul>\n{links}\n  </ul>\n</body></html>\n"
    )
    with atomic_path(docs_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--rows", required=True, help="Parquet table of acquired rows (input)")
    parser.add_argument("--out", required=True, help="Parquet table of curated rows")
    parser.add_argument(
        "--quarantine", required=True, help="Parquet table of removed rows with their reasons"
    )
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument("--suite", required=True, help="expectation suite that gates the curated rows")
    parser.add_argument(
        "--raw-suite",
        help="expectation suite run on the raw rows (only its error-severity checks stop the stage)",
    )
    parser.add_argument(
        "--docs-dir", help="folder for the Great Expectations Data Docs (HTML), one site per suite"
    )
    parser.add_argument("--label-issues", help="Parquet table of rows whose label the label check suspects")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    task_type = parse_task_type(params)
    config = parse_section(params, "curate", CurateConfig)
    parameters = suite_parameters(config, task_type, seed)
    docs_dir = Path(args.docs_dir) if args.docs_dir else None

    raw = read_table(args.rows)
    if docs_dir is not None:
        # Pages of an earlier run must not sit next to this run's pages if a gate stops it early.
        for name in DOCS_SITES:
            shutil.rmtree(docs_dir / name, ignore_errors=True)
    try:
        raw_summary = None
        if args.raw_suite:
            raw_summary = validate(
                raw,
                args.raw_suite,
                gate="raw rows",
                parameters=parameters,
                docs_dir=docs_dir / "raw" if docs_dir else None,
            )

        result = curate(raw, config, task_type, seed, source=args.rows)
        logger.info(
            "curated %d of %d rows; quarantined %d: %s",
            result.metrics["rows_out"],
            result.metrics["rows_in"],
            result.metrics["rows_quarantined"],
            {reason: count for reason, count in result.metrics["quarantine_reasons"].items() if count},
        )
        curated_summary = validate(
            result.rows,
            args.suite,
            gate="curated rows",
            parameters=parameters,
            docs_dir=docs_dir / "curated" if docs_dir else None,
        )
    finally:
        if docs_dir is not None:
            write_docs_index(docs_dir, [name for name in DOCS_SITES if (docs_dir / name).is_dir()])

    metrics = dict(result.metrics)
    metrics["expectations"] = {"raw": slim_summary(raw_summary), "curated": slim_summary(curated_summary)}
    write_table(result.rows, args.out)
    write_table(quarantine_table(result), args.quarantine)
    if args.label_issues:
        write_table(result.label_issues, args.label_issues)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
