"""baselines_lm: outputs of the untuned model (zero-shot, few-shot) and of a rule-based template.

Every system generates one output per selected test input (params `generation.test_inputs`), the
same inputs the evaluate_lm stage gives the adapter, and writes a prediction table `<system>.parquet`.
evaluate_lm scores all tables the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError
from stages.core.io import atomic_dir, write_json, write_table
from stages.core.local_lm import LocalLM, load_lm, parse_lm_config, resolve_lm_path
from stages.core.params import parse_section, parse_seed, read_params
from stages.generation.config import BaselinesConfig, DecodingConfig, PromptConfig
from stages.generation.decoding import run_system
from stages.generation.mr_template import realise_mr
from stages.generation.pairs import load_pairs, require_generation_task
from stages.generation.prompts import build_prompt, check_prompt_style
from stages.generation.scoring import (
    REFERENCES,
    group_references,
    prediction_table,
    score_system,
    select_inputs,
)

logger = logging.getLogger(__name__)


def few_shot_examples(train: pd.DataFrame, count: int, seed: int) -> list[tuple[str, str]]:
    """Pick `count` (input, target) pairs from the train split, each of a different input, seeded."""
    if count == 0:
        return []
    ordered = train.sort_values(S.ROW_ID, kind="stable")
    first_per_input = ordered.drop_duplicates(S.TEXT).reset_index(drop=True)
    if len(first_per_input) < count:
        raise InputDataError(
            "train split",
            f"has {len(first_per_input)} distinct inputs, "
            f"fewer than baselines_lm.few_shot_examples = {count}",
            "Lower `baselines_lm.few_shot_examples`.",
        )
    chosen = np.sort(np.random.default_rng(seed).choice(len(first_per_input), size=count, replace=False))
    picked = first_per_input.iloc[chosen]
    return [(str(text), str(target)) for text, target in zip(picked[S.TEXT], picked[S.TARGET], strict=True)]


def template_outputs(inputs: pd.DataFrame, tokenizer) -> pd.DataFrame:
    """Realise every input with the rule-based template, timing each call."""
    outputs, latency = [], []
    for text in inputs[S.TEXT].astype(str):
        started = time.perf_counter()
        try:
            outputs.append(realise_mr(text))
        except ValueError as exc:
            raise InputDataError(
                "test split",
                f"input {text[:80]!r} is not a meaning representation ({exc})",
                "Set `baselines_lm.template: false` for inputs that are not `slot[value]` lists.",
                field=S.TEXT,
            ) from None
        latency.append((time.perf_counter() - started) * 1000.0)
    tokens = [len(tokenizer(output, add_special_tokens=False)["input_ids"]) for output in outputs]
    return prediction_table(inputs, outputs, tokens, latency)


def run_baselines(
    lm: LocalLM,
    inputs: pd.DataFrame,
    train: pd.DataFrame,
    prompt: PromptConfig,
    decoding: DecodingConfig,
    config: BaselinesConfig,
    seed: int,
) -> tuple[dict[str, pd.DataFrame], list[tuple[str, str]]]:
    """Return one prediction table per enabled baseline, and the few-shot demonstrations used."""
    tables: dict[str, pd.DataFrame] = {}
    texts = list(inputs[S.TEXT].astype(str))
    if config.template:
        tables["template"] = template_outputs(inputs, lm.tokenizer)
    if config.zero_shot:
        prompts = [build_prompt(prompt, text) for text in texts]
        tables["zero_shot"] = run_system(lm, inputs, prompts, decoding, seed, "zero_shot")
    examples = few_shot_examples(train, config.few_shot_examples, seed)
    if examples:
        prompts = [build_prompt(prompt, text, examples) for text in texts]
        tables["few_shot"] = run_system(lm, inputs, prompts, decoding, seed, "few_shot")
    return tables, examples


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument(
        "--train", required=True, help="Parquet table of train rows (few-shot demonstrations)"
    )
    parser.add_argument("--test", required=True, help="Parquet table of test rows (text, target)")
    parser.add_argument("--base-lm", default=None, help="folder written by the prepare_model stage")
    parser.add_argument("--out-dir", required=True, help="folder for one prediction table per baseline")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    require_generation_task(params)
    lm_config = parse_lm_config(params)
    prompt = parse_section(params, "prompt", PromptConfig)
    decoding = parse_section(params, "generation", DecodingConfig)
    config = parse_section(params, "baselines_lm", BaselinesConfig)

    if decoding.threads:
        torch.set_num_threads(decoding.threads)
    train = load_pairs(args.train, "train")
    inputs = select_inputs(
        group_references(load_pairs(args.test, "test"), args.test), decoding.test_inputs, seed
    )
    path = resolve_lm_path(lm_config.name, args.base_lm)
    lm = load_lm(path, trust_remote_code=lm_config.trust_remote_code, device=decoding.device)
    baseline_prompt = config.prompt or prompt
    check_prompt_style(baseline_prompt, lm.tokenizer, lm.name)

    tables, examples = run_baselines(lm, inputs, train, baseline_prompt, decoding, config, seed)
    scores = {}
    with atomic_dir(args.out_dir) as out_dir:
        for name, table in tables.items():
            write_table(table, out_dir / f"{name}.parquet")
            scores[name] = score_system(table, inputs, name)
            logger.info(
                "%-10s BLEU %.2f  chrF %.2f  ROUGE-L %.2f",
                name,
                scores[name]["bleu"],
                scores[name]["chrf"],
                scores[name]["rouge_l"],
            )
    write_json(
        {
            "test_inputs": len(inputs),
            "references": int(inputs[REFERENCES].map(len).sum()),
            "few_shot_examples": [{"text": text, "target": target} for text, target in examples],
            "systems": scores,
        },
        args.metrics,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
