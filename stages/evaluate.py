"""evaluate: score every baseline and the adapter on the same test split, and log the run to MLflow."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stages.baselines import load_labelled
from stages.core import schema as S
from stages.core.classification import (
    PREDICTION,
    EvaluateConfig,
    prediction_table,
    score_predictions,
    time_single_predictions,
)
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError
from stages.core.io import atomic_dir, read_table, write_json, write_table
from stages.core.models import resolve_model
from stages.core.params import ModelConfig, parse_section, parse_seed, read_params, require_classification
from stages.core.tracking import log_evaluation_run
from stages.training.model import (
    TRAINING_INFO_FILE,
    load_adapter_classifier,
    load_tokenizer,
    pick_device,
    predict_logits,
    tokenize,
)

logger = logging.getLogger(__name__)

ADAPTER = "adapter"


def predict_with_adapter(
    adapter_dir: Path, test: pd.DataFrame, model_config: ModelConfig, config: EvaluateConfig, seed: int
) -> pd.DataFrame:
    """Load the adapter with PeftModel.from_pretrained and predict the test rows."""
    base_path = resolve_model(model_config.name)
    device = pick_device(config.device)
    model, labels = load_adapter_classifier(adapter_dir, base_path, model_config.trust_remote_code)
    model.to(device)
    tokenizer = load_tokenizer(str(adapter_dir), model_config.trust_remote_code, key="evaluate --adapter")

    def predict(texts: list[str]) -> list[str]:
        ids = tokenize(tokenizer, texts, config.max_length)
        logits = predict_logits(model, ids, tokenizer.pad_token_id, config.batch_size, device)
        return [labels[index] for index in logits.argmax(axis=1)]

    texts = test[S.TEXT].astype(str).tolist()
    predictions = predict(texts)
    latency = time_single_predictions(predict, texts, config.latency_rows, seed)
    return prediction_table(test, predictions, latency)


def collect_predictions(
    baselines_dir: Path, adapter_table: pd.DataFrame, test: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Gather every model's prediction table and check they cover exactly the test rows."""
    tables = {path.stem: read_table(path) for path in sorted(baselines_dir.glob("*.parquet"))}
    tables[ADAPTER] = adapter_table
    expected = set(test[S.ROW_ID].astype(str))
    for name, table in tables.items():
        if set(table[S.ROW_ID].astype(str)) != expected:
            raise InputDataError(
                str(baselines_dir / f"{name}.parquet"),
                "predictions do not cover the same test rows",
                "Rerun `dvc repro` so every model predicts the current test split.",
            )
    return tables


def score_all(tables: dict[str, pd.DataFrame], labels: list[str]) -> dict[str, dict]:
    """Score every prediction table with the same metrics and label set."""
    return {name: score_predictions(table, labels) for name, table in tables.items()}


def summary_metrics(scores: dict[str, dict]) -> dict:
    """Return the DVC metrics file content: headline numbers per model, plus the adapter's lead."""
    summary = {
        name: {
            key: value
            for key, value in score.items()
            if key not in ("per_class_f1", "confusion") and value is not None
        }
        for name, score in scores.items()
    }
    metrics: dict = {"models": summary}
    if "tfidf" in scores and ADAPTER in scores:
        metrics["adapter_minus_tfidf"] = {
            "accuracy": scores[ADAPTER]["accuracy"] - scores["tfidf"]["accuracy"],
            "macro_f1": scores[ADAPTER]["macro_f1"] - scores["tfidf"]["macro_f1"],
        }
    return metrics


def write_plots(scores: dict[str, dict], labels: list[str], target: Path) -> None:
    """Write the confusion matrix of each model and the per-class F1 table as DVC plot files.

    The files go into a new folder that replaces `target` whole when every file is written.
    """
    with atomic_dir(target) as folder:
        for name, score in scores.items():
            matrix = np.asarray(score["confusion"])
            rows = [
                {"actual": labels[i], "predicted": labels[j]}
                for i in range(len(labels))
                for j in range(len(labels))
                for _ in range(int(matrix[i, j]))
            ]
            pd.DataFrame(rows, columns=["actual", "predicted"]).to_csv(
                folder / f"confusion_{name}.csv", index=False
            )
        per_class = pd.DataFrame(
            [
                {"label": label, "model": name, "f1": round(score["per_class_f1"][label], 6)}
                for name, score in scores.items()
                for label in labels
            ]
        )
        per_class.to_csv(folder / "per_class_f1.csv", index=False)
        # One file per model as well: DVC draws each file of a multi-file bar plot in its own panel.
        for name, rows in per_class.groupby("model", sort=True):
            rows[["label", "f1"]].to_csv(folder / f"per_class_f1_{name}.csv", index=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--adapter", required=True, help="adapter folder written by the train stage")
    parser.add_argument("--test", required=True, help="Parquet table of test rows")
    parser.add_argument("--baselines", required=True, help="folder of baseline prediction tables")
    parser.add_argument("--predictions", required=True, help="Parquet table for the adapter's predictions")
    parser.add_argument("--metrics", required=True, help="JSON metrics file (headline numbers per model)")
    parser.add_argument("--per-class", required=True, help="JSON metrics file of per-class F1 per model")
    parser.add_argument(
        "--plots-dir", required=True, help="folder for confusion matrix and per-class F1 plots"
    )
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    task = require_classification(params)
    model_config = parse_section(params, "model", ModelConfig)
    config = parse_section(params, "evaluate", EvaluateConfig)
    adapter_dir = Path(args.adapter)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputDataError(
            str(adapter_dir),
            "no adapter_config.json: not a PEFT adapter folder",
            "Run the train stage first (`dvc repro train`).",
        )

    test = load_labelled(args.test, "test")
    adapter_table = predict_with_adapter(adapter_dir, test, model_config, config, seed)
    write_table(adapter_table, args.predictions)
    tables = collect_predictions(Path(args.baselines), adapter_table, test)
    labels = sorted(
        set(test[S.LABEL].astype(str)) | {str(p) for t in tables.values() for p in t[PREDICTION].dropna()}
    )
    scores = score_all(tables, labels)

    metrics = summary_metrics(scores)
    write_json(metrics, args.metrics)
    write_json({name: score["per_class_f1"] for name, score in scores.items()}, args.per_class)
    write_plots(scores, labels, Path(args.plots_dir))
    for name, score in scores.items():
        logger.info(
            "%-10s accuracy %.4f  macro-F1 %.4f  p50 %s ms",
            name,
            score["accuracy"],
            score["macro_f1"],
            score["latency_ms_p50"],
        )

    if config.log_to_mlflow:
        root = Path.cwd()
        info_file = adapter_dir / TRAINING_INFO_FILE
        log_evaluation_run(
            root=root,
            experiment=config.experiment,
            run_name=f"evaluate-{task.type}",
            params=params,
            metrics=metrics,
            data_inputs=config.data_inputs,
            artifacts={"adapter": adapter_dir, "metrics": Path(args.metrics), "plots": Path(args.plots_dir)},
            tags={
                "task": task.type,
                "base_model": model_config.name,
                "training_info": info_file.read_text(encoding="utf-8")[:5000] if info_file.is_file() else "",
            },
        )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
