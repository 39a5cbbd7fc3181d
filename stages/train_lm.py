"""train_lm: LoRA fine-tuning of a causal LM on (input, target) pairs, saved as a PEFT adapter.

Each train row becomes the prompt of its input (params `prompt`) followed by its target and the
end token, and the loss counts only the target tokens. The adapter folder loads with
`PeftModel.from_pretrained(base_model, folder)`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError
from stages.core.io import atomic_path, write_json
from stages.core.local_lm import LMConfig, load_lm, parse_lm_config, pick_device, resolve_lm_path
from stages.core.params import parse_section, parse_seed, read_params
from stages.generation.config import PromptConfig, TrainConfig
from stages.generation.pairs import load_pairs, require_generation_task, sample_rows, select_covered
from stages.generation.prompts import TrainingExample, check_prompt_style
from stages.generation.training import add_lora, build_examples, train_adapter

logger = logging.getLogger(__name__)

TRAINING_INFO_FILE = "training_info.json"


def fingerprint_run(
    config: TrainConfig, prompt: PromptConfig, lm: LMConfig, seed: int, examples: Sequence[TrainingExample]
) -> str:
    """Hash what a checkpoint depends on: settings (not the thread count), seed and the token ids."""
    token_parts = [
        ",".join(map(str, example.input_ids)) + "|" + str(example.prompt_tokens) for example in examples
    ]
    return S.sha256_hex(
        config.model_dump_json(exclude={"threads"}),
        prompt.model_dump_json(),
        lm.model_dump_json(),
        seed,
        *token_parts,
    )


def save_adapter_folder(model, tokenizer, info: dict, out: Path) -> None:
    """Save the adapter (PEFT format), the tokenizer and the training info, replacing `out` whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_json(info, staging / TRAINING_INFO_FILE)
        previous = out.with_name(f".{out.name}.previous")
        if previous.exists():
            shutil.rmtree(previous)
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        if previous.exists():
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", required=True, help="Parquet table of train rows (text, target)")
    parser.add_argument("--validation", required=True, help="Parquet table of validation rows (text, target)")
    parser.add_argument("--base-lm", default=None, help="folder written by the prepare_model stage")
    parser.add_argument("--out", required=True, help="folder for the adapter (PEFT format)")
    parser.add_argument("--checkpoints", required=True, help="folder for the resumable epoch checkpoint")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument("--curve", required=True, help="CSV of per-epoch train and validation loss")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    require_generation_task(params)
    lm_config = parse_lm_config(params)
    prompt = parse_section(params, "prompt", PromptConfig)
    config = parse_section(params, "train_lm", TrainConfig)

    train_split = load_pairs(args.train, "train")
    train_covered = select_covered(train_split, config.min_input_coverage, args.train)
    validation_covered = select_covered(
        load_pairs(args.validation, "validation"), config.min_input_coverage, args.validation
    )
    train_rows = sample_rows(train_covered, config.max_train_rows, seed)
    validation_rows = sample_rows(validation_covered, config.max_validation_rows, seed)
    if train_rows.empty:
        hint = "Check the split stage's metrics and quarantine."
        if len(train_split):
            hint = f"No row reaches `train_lm.min_input_coverage` {config.min_input_coverage}. Lower it."
        raise InputDataError(args.train, "no train rows to learn from", hint)
    logger.info(
        "training on %d of %d train rows (%d reach the input coverage), validating on %d",
        len(train_rows),
        len(train_split),
        len(train_covered),
        len(validation_rows),
    )

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    device = pick_device(config.device)
    path = resolve_lm_path(lm_config.name, args.base_lm)
    lm = load_lm(path, trust_remote_code=lm_config.trust_remote_code, device=str(device), dtype=torch.float32)
    check_prompt_style(prompt, lm.tokenizer, lm.name)
    train_examples = build_examples(lm.tokenizer, prompt, train_rows, config.max_length, args.train)
    validation_examples = build_examples(
        lm.tokenizer, prompt, validation_rows, config.max_length, args.validation
    )

    model = add_lora(lm.model, config.lora)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA on %s: %d trainable of %d parameters, device %s", lm.name, trainable, total, device)

    started = time.perf_counter()
    result = train_adapter(
        model,
        train_examples,
        validation_examples,
        config,
        seed,
        lm.tokenizer.pad_token_id,
        device,
        checkpoint_dir=Path(args.checkpoints),
        fingerprint=fingerprint_run(config, prompt, lm_config, seed, train_examples),
    )
    seconds = time.perf_counter() - started

    info = {
        "base_model": lm.name,
        "base_model_path": str(path),
        "best_epoch": result.best_epoch,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_rows": len(train_rows),
        "validation_rows": len(validation_rows),
        "prompt": prompt.model_dump(),
        "max_length": config.max_length,
        "device": str(device),
    }
    save_adapter_folder(model, lm.tokenizer, info, Path(args.out))

    best = result.history[result.best_epoch - 1]
    write_json(
        {
            "best_epoch": result.best_epoch,
            "epochs": config.epochs,
            "resumed_from_epoch": result.resumed_from_epoch,
            "train_loss": round(best["train_loss"], 6),
            "validation_loss": None if best["validation_loss"] is None else round(best["validation_loss"], 6),
            "train_rows": len(train_rows),
            "train_rows_covered": len(train_covered),
            "train_split_rows": len(train_split),
            "validation_rows": len(validation_rows),
            "train_examples_truncated": sum(example.truncated for example in train_examples),
            "train_examples_per_second": round(result.examples_per_second, 3),
            "train_seconds": round(seconds, 1),
            "trainable_parameters": trainable,
        },
        args.metrics,
    )
    curve = pd.DataFrame(result.history)[["epoch", "train_loss", "validation_loss", "learning_rate"]]
    with atomic_path(args.curve) as tmp:
        curve.to_csv(tmp, index=False, float_format="%.6f")
    logger.info(
        "best epoch %d (validation loss %s); adapter saved to %s",
        result.best_epoch,
        best["validation_loss"],
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
