"""runs: print the MLflow evaluation runs as one table, every baseline beside the adapter.

Each row is one run, newest first, keyed by the git commit and data version it was tagged with
(see stages/core/tracking.py). The columns hold one metric (`models.<name>.<metric>`) per model.

    python -m stages.runs                       # macro-F1 of the last 20 runs
    python -m stages.runs --metric accuracy --max-rows 5
    python -m stages.runs --markdown            # a Markdown table, e.g. for a CI job summary
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from stages.core.classification import DEFAULT_EXPERIMENT
from stages.core.cli import run_stage
from stages.core.errors import InputDataError, ParamsError
from stages.core.params import read_params
from stages.core.tracking import tracking_uri

logger = logging.getLogger(__name__)

MODEL_METRIC = re.compile(r"^metrics\.models\.(?P<model>[^.]+)\.(?P<metric>.+)$")
# The adapter is the model under test: it comes last, right of the baselines it is compared with.
LAST_MODEL = "adapter"
KEY_COLUMNS = ["commit", "data_version", "started_utc", "run"]


def default_experiment(params_path: str) -> str:
    """Return `evaluate.experiment` from the params file, or the stage default when it is not set."""
    path = Path(params_path)
    if not path.is_file():
        return DEFAULT_EXPERIMENT
    section = read_params(path).get("evaluate") or {}
    if not isinstance(section, dict):
        raise ParamsError("evaluate", section, "must be a mapping")
    name = section.get("experiment", DEFAULT_EXPERIMENT)
    if not isinstance(name, str) or not name:
        raise ParamsError("evaluate.experiment", name, "must be a non-empty string")
    return name


def display_uri(uri: str) -> str:
    """Return the tracking URI without any user name or password it carries."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()


def sqlite_path(uri: str) -> Path | None:
    """Return the database file of a `sqlite:///` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def fetch_runs(uri: str, experiment: str, max_rows: int) -> pd.DataFrame:
    """Return the newest `max_rows` runs of `experiment` as MLflow's flat table (one row per run)."""
    import mlflow

    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        # Opening a missing SQLite store would create an empty one.
        raise InputDataError(
            str(database),
            "MLflow store not found",
            "Run `dvc repro` to log an evaluation, or set MLFLOW_TRACKING_URI to the store to read.",
        )
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise InputDataError(
            display_uri(uri),
            f"no MLflow experiment named {experiment!r}",
            "Pass --experiment NAME (see `evaluate.experiment` in params.yaml), or run `dvc repro` first.",
        )
    return mlflow.search_runs(
        experiment_names=[experiment],
        max_results=max_rows,
        order_by=["attributes.start_time DESC"],
        output_format="pandas",
    )


def model_names(runs: pd.DataFrame, metric: str) -> list[str]:
    """Return the models that have `metric` in any run: baselines sorted by name, then the adapter."""
    names = set()
    for column in runs.columns:
        match = MODEL_METRIC.match(column)
        if match and match["metric"] == metric:
            names.add(match["model"])
    return sorted(names, key=lambda name: (name == LAST_MODEL, name))


def _tag(runs: pd.DataFrame, name: str) -> pd.Series:
    column = f"tags.{name}"
    if column not in runs:
        return pd.Series([""] * len(runs), index=runs.index, dtype="object")
    return runs[column].fillna("").astype(str)


def runs_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Build the printed table: commit, data version, start time, run name, then one column per model.

    A commit tagged with a dirty working tree gets a `+dirty` suffix, because its code may differ
    from the commit.
    """
    commits = _tag(runs, "git_commit").str.slice(0, 10)
    dirty = _tag(runs, "git_dirty") == "true"
    table = pd.DataFrame(
        {
            "commit": [
                f"{commit}+dirty" if is_dirty else commit
                for commit, is_dirty in zip(commits, dirty, strict=True)
            ],
            "data_version": _tag(runs, "data_version"),
            "started_utc": (
                pd.to_datetime(runs["start_time"], utc=True).dt.strftime("%Y-%m-%d %H:%M")
                if "start_time" in runs
                else ""
            ),
            "run": _tag(runs, "mlflow.runName"),
        },
        index=runs.index,
    )
    names = model_names(runs, metric)
    for name in names:
        table[name] = runs[f"metrics.models.{name}.{metric}"]
    # Runs without any model score (for example a report logged on its own) have nothing to compare.
    table = table[table[names].notna().any(axis=1)] if names else table.iloc[0:0]
    return table.reset_index(drop=True)


def format_table(table: pd.DataFrame, markdown: bool) -> str:
    """Render the table as aligned plain text or as a Markdown table; missing values show as `-`."""
    header = list(table.columns)
    rows = [
        [_cell(value, column in KEY_COLUMNS) for column, value in zip(header, record, strict=True)]
        for record in table.itertuples(index=False)
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" if column in KEY_COLUMNS else "---:" for column in header) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if column in KEY_COLUMNS else cell.rjust(width)
            for cell, width, column in zip(cells, widths, header, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def _cell(value: object, is_key: bool) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if is_key:
        return str(value) or "-"
    return f"{float(value):.4f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Print the MLflow evaluation runs: one row per run, one column per model.",
    )
    parser.add_argument("--params", default="params.yaml", help="params file that names the experiment")
    parser.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment name (default: `evaluate.experiment` from the params file)",
    )
    parser.add_argument("--max-rows", type=int, default=20, help="newest runs to show (default: 20)")
    parser.add_argument(
        "--metric",
        default="macro_f1",
        help="metric per model, e.g. macro_f1, accuracy, weighted_f1, latency_ms_p50 (default: macro_f1)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.max_rows < 1:
        parser.error(f"--max-rows must be at least 1, got {args.max_rows}")

    experiment = args.experiment or default_experiment(args.params)
    uri = tracking_uri(Path.cwd())
    runs = fetch_runs(uri, experiment, args.max_rows)
    source = f"experiment {experiment!r} at {display_uri(uri)}"
    if runs.empty:
        print(f"no runs in {source}")
        return
    table = runs_table(runs, args.metric)
    if not model_names(runs, args.metric):
        available = sorted({m["metric"] for c in runs.columns if (m := MODEL_METRIC.match(c))})
        raise InputDataError(
            source,
            f"no run has the metric `models.<model>.{args.metric}`",
            f"Pass --metric with one of: {', '.join(available) or '(none logged)'}.",
        )
    print(f"{args.metric} per model in the {len(table)} newest evaluation runs of {source}")
    print(format_table(table, args.markdown))


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
