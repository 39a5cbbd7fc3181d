"""report: one self-contained HTML page about a data version, from the metrics and tables of every stage.

Sections: sources and provenance, class distribution, text lengths, quarantine per stage,
expectation suites, PII, split sizes, leakage, stability, augmentation, baselines against the
adapter, training curves, per-class F1, the confusion matrix and forgetting. Every input is
optional: a stage that has not run leaves its section with a note. The page loads nothing from
elsewhere (inline CSS and SVG), and it is logged to MLflow with the evaluation run it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import Field

from stages.core.classification import EvaluateConfig
from stages.core.cli import run_stage, stage_parser
from stages.core.io import atomic_path
from stages.core.params import ModelConfig, StageConfig, TaskConfig, parse_section, read_params
from stages.core.tracking import data_hashes, data_version, git_state, log_evaluation_run, tracking_uri
from stages.reporting import sections
from stages.reporting.html import page
from stages.reporting.inputs import ReportInputs, load_inputs

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "report"
EVALUATE_RUN_PREFIX = "evaluate-"


class ReportConfig(StageConfig):
    title: str = Field(default="Data and model report", min_length=1)
    # Bins of the text length histogram.
    length_bins: int = Field(default=30, ge=2, le=200)
    # Most frequent confusions of the adapter listed under the confusion matrix.
    top_confusions: int = Field(default=15, ge=1)
    # Attach the page to the MLflow evaluation run of the same commit and data version.
    log_to_mlflow: bool = True


# (id, title, builder) of every section, in page order.
SECTIONS: list[tuple[str, str, Callable[[ReportInputs, ReportConfig], str]]] = [
    ("sources", "Sources and provenance", lambda inputs, _: sections.sources(inputs)),
    ("classes", "Class distribution", lambda inputs, _: sections.classes(inputs)),
    ("lengths", "Text lengths", lambda inputs, config: sections.lengths(inputs, config.length_bins)),
    ("quarantine", "Quarantine per stage", lambda inputs, _: sections.quarantine(inputs)),
    ("expectations", "Expectation suites", lambda inputs, _: sections.expectations(inputs)),
    ("pii", "Personal data found and redacted", lambda inputs, _: sections.pii(inputs)),
    ("splits", "Split sizes", lambda inputs, _: sections.splits(inputs)),
    ("leakage", "Leakage between splits", lambda inputs, _: sections.leakage(inputs)),
    ("stability", "Evaluation stability", lambda inputs, _: sections.stability(inputs)),
    ("augmentation", "Augmentation", lambda inputs, _: sections.augmentation(inputs)),
    ("models", "Baselines and adapter", lambda inputs, _: sections.models(inputs)),
    ("training", "Training", lambda inputs, _: sections.training(inputs)),
    ("per-class", "Per-class F1", lambda inputs, _: sections.per_class(inputs)),
    (
        "confusion",
        "Confusion matrix",
        lambda inputs, config: sections.confusion(inputs, config.top_confusions),
    ),
    ("forgetting", "Forgetting", lambda inputs, _: sections.forgetting(inputs)),
]
SECTION_IDS = [section_id for section_id, _, _ in SECTIONS]


def render_report(inputs: ReportInputs, config: ReportConfig, header: dict[str, str]) -> str:
    """Return the whole HTML page; `header` maps field names to the run's commit, data version and model."""
    built = [(section_id, title, build(inputs, config)) for section_id, title, build in SECTIONS]
    return page(config.title, list(header.items()), built)


def header_fields(
    root: Path, params: dict, evaluate: EvaluateConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Return the page header fields and the MLflow tags (git state and data version) they come from."""
    state = git_state(root)
    version = data_version(data_hashes(root, evaluate.data_inputs))
    task = parse_section(params, "task", TaskConfig)
    model = parse_section(params, "model", ModelConfig)
    commit = state["git_commit"] + (" (working tree differs from it)" if state["git_dirty"] == "true" else "")
    header = {
        "data version": version,
        "git commit": commit,
        "git branch": state["git_branch"],
        "task": task.type,
        "base model": model.name,
        "MLflow experiment": evaluate.experiment,
    }
    return header, {**state, "data_version": version}


def log_report(root: Path, report: Path, evaluate: EvaluateConfig, tags: dict[str, str], params: dict) -> str:
    """Attach the report to the newest evaluation run of this commit and data version; return its run id.

    Without such a run (evaluation not logged, or logged at another commit), the report is logged
    as a run of its own, named `report` and tagged the same way.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(root))
    experiment = mlflow.get_experiment_by_name(evaluate.experiment)
    if experiment is not None:
        query = (
            f"tags.git_commit = '{tags['git_commit']}' and tags.data_version = '{tags['data_version']}' "
            f"and tags.git_dirty = '{tags['git_dirty']}'"
        )
        runs = mlflow.search_runs(
            experiment_ids=[experiment.experiment_id],
            filter_string=query,
            order_by=["attributes.start_time DESC"],
            output_format="list",
        )
        runs = [run for run in runs if (run.info.run_name or "").startswith(EVALUATE_RUN_PREFIX)]
        if runs:
            run_id = runs[0].info.run_id
            MlflowClient().log_artifact(run_id, str(report), artifact_path=ARTIFACT_PATH)
            logger.info("attached %s to MLflow run %s (%s)", report, run_id, runs[0].info.run_name)
            return run_id
    logger.info("no evaluation run of this commit and data version in MLflow; logging the report on its own")
    return log_evaluation_run(
        root=root,
        experiment=evaluate.experiment,
        run_name="report",
        params=params,
        metrics={},
        data_inputs=evaluate.data_inputs,
        artifacts={ARTIFACT_PATH: report},
        tags={"kind": "report"},
    )


INPUT_OPTIONS = {
    "raw": "Parquet table of acquired rows (sources and provenance)",
    "acquire_metrics": "acquire stage metrics (JSON)",
    "curate_metrics": "curate stage metrics (JSON)",
    "split_metrics": "split stage metrics (JSON): sizes, leakage, stability",
    "split_dir": "folder of train.parquet, validation.parquet and test.parquet",
    "augment_metrics": "augment stage metrics (JSON)",
    "augment_effect": "augment_effect stage metrics (JSON)",
    "train_metrics": "train stage metrics (JSON)",
    "train_curve": "training curve (CSV with an epoch column)",
    "evaluate_metrics": "evaluate stage metrics (JSON): scores per model",
    "per_class": "per-class F1 per model (JSON)",
    "predictions": "Parquet table of the adapter's test predictions",
    "forgetting_dir": "folder searched for metrics files with a `forgetting` entry (generation pipeline)",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    for name, help_text in INPUT_OPTIONS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=Path, default=None, help=f"{help_text}; optional"
        )
    parser.add_argument("--out", required=True, help="HTML file to write")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    config = parse_section(params, "report", ReportConfig)
    evaluate = parse_section(params, "evaluate", EvaluateConfig)
    root = Path.cwd()

    inputs = load_inputs({name: getattr(args, name) for name in INPUT_OPTIONS})
    for name, reason in sorted(inputs.missing.items()):
        logger.info("report: no %s (%s)", name, reason)
    header, tags = header_fields(root, params, evaluate)
    html = render_report(inputs, config, header)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    logger.info("wrote %s (%d kB) for data version %s", out, len(html.encode()) // 1024, tags["data_version"])

    if config.log_to_mlflow:
        log_report(root, out, evaluate, tags, params)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
