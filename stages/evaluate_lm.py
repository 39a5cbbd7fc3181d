"""evaluate_lm: score the adapter and every baseline on the same test inputs, and check forgetting.

Each system's outputs are scored against all references of their input (BLEU, chrF, ROUGE-L), with
latency per example and generated tokens per second. Forgetting is the relative rise in perplexity
on general-domain text (WikiText-2) when the adapter is switched on. The metrics are written and the
run is logged to MLflow first; then a rise above `evaluate_lm.forgetting.max_relative_increase` fails
the stage with a gate error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from peft import PeftModel

from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError
from stages.core.io import atomic_path, read_table, write_json, write_table
from stages.core.local_lm import LocalLM, load_lm, parse_lm_config, resolve_lm_path
from stages.core.params import parse_section, parse_seed, read_params
from stages.core.tracking import log_evaluation_run
from stages.generation.config import DecodingConfig, EvaluateConfig, PromptConfig
from stages.generation.decoding import run_system
from stages.generation.forgetting import check_forgetting, measure_forgetting, read_general_text, sample_lines
from stages.generation.pairs import load_pairs, require_generation_task
from stages.generation.prompts import build_prompt, check_prompt_style
from stages.generation.scoring import REFERENCES, group_references, score_system, select_inputs
from stages.train_lm import TRAINING_INFO_FILE

logger = logging.getLogger(__name__)

ADAPTER = "adapter"
SCORE_COLUMNS = ["bleu", "chrf", "rouge_l"]


def load_adapter(lm: LocalLM, adapter_dir: Path) -> PeftModel:
    """Wrap the loaded base model with the saved adapter."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputDataError(
            str(adapter_dir),
            "no adapter_config.json: not a PEFT adapter folder",
            "Run the train_lm stage first.",
        )
    model = PeftModel.from_pretrained(lm.model, str(adapter_dir))
    model.eval()
    return model


def read_baseline_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Read every `<system>.parquet` in the baselines folder, by system name."""
    if not folder.is_dir():
        raise InputDataError(str(folder), "baselines folder not found", "Run the baselines_lm stage first.")
    return {path.stem: read_table(path) for path in sorted(folder.glob("*.parquet"))}


def write_score_plot(scores: dict[str, dict], path: Path) -> None:
    """Write one row per system and metric; `label` ("adapter bleu") is the bar name in `dvc plots`."""
    rows = [
        {"label": f"{name} {metric}", "system": name, "metric": metric, "score": score[metric]}
        for name, score in scores.items()
        for metric in SCORE_COLUMNS
    ]
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=["label", "system", "metric", "score"]).to_csv(tmp, index=False)


def evaluate_adapter(
    lm: LocalLM,
    adapter_dir: Path,
    inputs: pd.DataFrame,
    baseline_tables: dict[str, pd.DataFrame],
    general_lines: list[str],
    prompt: PromptConfig,
    decoding: DecodingConfig,
    config: EvaluateConfig,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """Measure forgetting, generate with the adapter and score it with every baseline.

    Returns the adapter's prediction table and the metrics. `lm.model` is replaced by the base
    model with the adapter merged in.
    """
    adapted = load_adapter(lm, adapter_dir)
    texts = sample_lines(general_lines, lm.tokenizer, config.forgetting, seed)
    forgetting = measure_forgetting(adapted, lm.tokenizer, texts, config.forgetting)

    # Merged weights compute base + adapter (up to float rounding) and generate faster than PEFT layers.
    lm.model = adapted.merge_and_unload()
    prompts = [build_prompt(prompt, text) for text in inputs[S.TEXT].astype(str)]
    adapter_table = run_system(lm, inputs, prompts, decoding, seed, ADAPTER)

    scores = {name: score_system(table, inputs, name) for name, table in baseline_tables.items()}
    scores[ADAPTER] = score_system(adapter_table, inputs, ADAPTER)
    for name, score in scores.items():
        logger.info(
            "%-10s BLEU %.2f  chrF %.2f  ROUGE-L %.2f  %s tokens/s",
            name,
            score["bleu"],
            score["chrf"],
            score["rouge_l"],
            score["generated_tokens_per_second"],
        )
    metrics = {
        "test_inputs": len(inputs),
        "references": int(inputs[REFERENCES].map(len).sum()),
        "systems": scores,
        "forgetting": forgetting,
    }
    return adapter_table, metrics


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--adapter", required=True, help="adapter folder written by the train_lm stage")
    parser.add_argument("--test", required=True, help="Parquet table of test rows (text, target)")
    parser.add_argument("--baselines", required=True, help="folder of baseline prediction tables")
    parser.add_argument("--base-lm", default=None, help="folder written by the prepare_model stage")
    parser.add_argument("--general-text", required=True, help="WikiText-2 test file for the forgetting check")
    parser.add_argument("--predictions", required=True, help="Parquet table for the adapter's outputs")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument("--plot", required=True, help="CSV of text metrics per system, for `dvc plots`")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    require_generation_task(params)
    lm_config = parse_lm_config(params)
    prompt = parse_section(params, "prompt", PromptConfig)
    decoding = parse_section(params, "generation", DecodingConfig)
    config = parse_section(params, "evaluate_lm", EvaluateConfig)

    if decoding.threads:
        torch.set_num_threads(decoding.threads)
    inputs = select_inputs(
        group_references(load_pairs(args.test, "test"), args.test), decoding.test_inputs, seed
    )
    baseline_tables = read_baseline_tables(Path(args.baselines))
    general_lines = read_general_text(args.general_text)

    path = resolve_lm_path(lm_config.name, args.base_lm)
    lm = load_lm(path, trust_remote_code=lm_config.trust_remote_code, device=decoding.device)
    check_prompt_style(prompt, lm.tokenizer, lm.name)
    adapter_dir = Path(args.adapter)
    adapter_table, metrics = evaluate_adapter(
        lm, adapter_dir, inputs, baseline_tables, general_lines, prompt, decoding, config, seed
    )
    write_table(adapter_table, args.predictions)
    write_json(metrics, args.metrics)
    write_score_plot(metrics["systems"], Path(args.plot))

    if config.log_to_mlflow:
        info_file = adapter_dir / TRAINING_INFO_FILE
        log_evaluation_run(
            root=Path.cwd(),
            experiment=config.experiment,
            run_name="evaluate-generation",
            params=params,
            metrics=metrics,
            data_inputs=config.data_inputs,
            artifacts={
                "adapter": adapter_dir,
                "metrics": Path(args.metrics),
                "predictions": Path(args.predictions),
            },
            tags={
                "task": "generation",
                "base_model": lm.name,
                "training_info": info_file.read_text(encoding="utf-8")[:5000] if info_file.is_file() else "",
            },
            lock_file=config.dvc_lock,
        )

    check_forgetting(metrics["forgetting"], config.forgetting.max_relative_increase)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
