"""train: LoRA fine-tuning of the base encoder as a sequence classifier, keeping the best epoch."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from stages.baselines import load_labelled
from stages.core import schema as S
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import atomic_dir, atomic_path, write_json
from stages.core.models import resolve_model
from stages.core.params import (
    ModelConfig,
    StageConfig,
    parse_section,
    parse_seed,
    read_params,
    require_classification,
)
from stages.training.loop import LoopSettings, train_loop
from stages.training.model import (
    add_lora,
    load_base_classifier,
    load_tokenizer,
    pick_device,
    save_adapter,
    tokenize,
)

logger = logging.getLogger(__name__)


class LoraSettings(StageConfig):
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default=["query", "value"], min_length=1)


class TrainConfig(StageConfig):
    lora: LoraSettings = LoraSettings()
    learning_rate: float = Field(default=2e-3, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=100, ge=0)
    epochs: int = Field(default=4, gt=0)
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=128, gt=0)
    max_length: int = Field(default=64, gt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    group_by_length: bool = True
    balance: Literal["none", "oversample", "undersample"] = "none"
    class_weights: bool = False
    device: str = "auto"
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"
    # CPU threads for torch; 0 uses every core.
    threads: int = Field(default=0, ge=0)
    resume: bool = True


def rebalance(train: pd.DataFrame, config: TrainConfig, seed: int) -> pd.DataFrame:
    """Apply the configured over- or undersampling to the train rows only."""
    if config.balance == "none":
        return train
    from stages.curation import imbalance

    method = imbalance.oversample if config.balance == "oversample" else imbalance.undersample
    balanced = method(train, seed=seed)
    logger.info("%s: %d train rows became %d", config.balance, len(train), len(balanced))
    return balanced


def loss_weights(labels: list[str], train_labels: pd.Series) -> torch.Tensor:
    """Return class weights for the loss, in the order of `labels`."""
    from stages.curation import imbalance

    weights = imbalance.class_weights(train_labels)
    return torch.tensor([float(weights[label]) for label in labels], dtype=torch.float32)


def fingerprint_inputs(
    config: TrainConfig, model: ModelConfig, seed: int, train: pd.DataFrame, validation: pd.DataFrame
) -> str:
    """Hash everything a checkpoint depends on, so a resume never mixes two different runs."""
    return S.sha256_hex(
        config.model_dump_json(),
        model.model_dump_json(),
        seed,
        *train[S.CONTENT_HASH].astype(str),
        "|",
        *validation[S.CONTENT_HASH].astype(str),
    )


def train_classifier(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config: TrainConfig,
    model_config: ModelConfig,
    seed: int,
    checkpoint_dir: Path | None = None,
):
    """Fine-tune the base model with LoRA on `train`; returns (model, tokenizer, labels, result, info)."""
    torch.manual_seed(seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    train = rebalance(train, config, seed)
    labels = sorted(train[S.LABEL].astype(str).unique())
    if len(labels) < 2:
        raise ParamsError(
            "train",
            labels,
            "needs at least two labels in the train split",
            "Check the split and curate quarantine.",
        )
    label_index = {label: index for index, label in enumerate(labels)}
    unseen = sorted(set(validation[S.LABEL].astype(str)) - set(labels))
    if unseen:
        logger.warning("validation labels absent from train count as errors: %s", unseen[:10])

    model_path = resolve_model(model_config.name)
    tokenizer = load_tokenizer(model_path, model_config.trust_remote_code)
    base = load_base_classifier(model_path, labels, model_config.trust_remote_code)
    model = add_lora(
        base, config.lora.r, config.lora.alpha, config.lora.dropout, list(config.lora.target_modules)
    )
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(
        "LoRA on %s: %d trainable of %d parameters, device %s", model_config.name, trainable, total, device
    )

    train_ids = tokenize(tokenizer, train[S.TEXT].astype(str).tolist(), config.max_length)
    validation_ids = tokenize(tokenizer, validation[S.TEXT].astype(str).tolist(), config.max_length)
    train_targets = np.array([label_index[label] for label in train[S.LABEL].astype(str)])
    validation_targets = np.array([label_index.get(label, -1) for label in validation[S.LABEL].astype(str)])

    settings = LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        group_by_length=config.group_by_length,
        max_grad_norm=config.max_grad_norm,
        seed=seed,
        mixed_precision=config.mixed_precision,
    )
    weights = loss_weights(labels, train[S.LABEL].astype(str)) if config.class_weights else None
    fingerprint = fingerprint_inputs(config, model_config, seed, train, validation)
    result = train_loop(
        model,
        train_ids,
        train_targets,
        validation_ids,
        validation_targets,
        tokenizer.pad_token_id,
        settings,
        device,
        checkpoint_dir=checkpoint_dir if config.resume else None,
        fingerprint=fingerprint,
        class_weights=weights,
    )
    info = {
        "base_model": model_config.name,
        "best_epoch": result.best_epoch,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_rows": len(train),
        "device": str(device),
        "max_length": config.max_length,
    }
    return model, tokenizer, labels, result, info


def save_adapter_folder(model, tokenizer, labels: list[str], info: dict, out: Path) -> None:
    """Write the adapter folder beside `out` and swap it into place when complete."""
    with atomic_dir(out) as folder:
        save_adapter(model, tokenizer, labels, info, folder)


def cross_validate_adapter(
    folds: pd.DataFrame, config: TrainConfig, model_config: ModelConfig, seed: int
) -> dict:
    """Train one adapter per K-fold fold and report the spread of their validation scores.

    Rows with fold -1 belong to classes too small for every fold, so they stay in train for
    every fold.
    """
    fold_ids = sorted(int(fold) for fold in folds["fold"].dropna().unique() if int(fold) >= 0)
    per_fold = []
    for fold in fold_ids:
        logger.info("cross-validation: training the adapter for fold %d of %d", fold + 1, len(fold_ids))
        in_fold = folds["fold"] == fold
        _, _, _, result, _ = train_classifier(folds[~in_fold], folds[in_fold], config, model_config, seed)
        best = result.history[result.best_epoch - 1]
        per_fold.append(
            {
                "fold": fold,
                "best_epoch": result.best_epoch,
                "validation_accuracy": best["validation_accuracy"],
                "validation_macro_f1": best["validation_macro_f1"],
            }
        )
    summary: dict = {"folds": len(per_fold), "per_fold": per_fold}
    for metric in ("validation_accuracy", "validation_macro_f1"):
        values = np.array([row[metric] for row in per_fold])
        summary[f"{metric}_mean"] = float(values.mean())
        summary[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def adapter_per_fold_requested(params: dict) -> bool:
    """Return whether the split params ask for one adapter per K-fold fold."""
    from stages.splitting.config import SplitConfig

    split = parse_section(params, "split", SplitConfig)
    return split.strategy == "kfold" and split.kfold.train_adapter_per_fold


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", required=True, help="Parquet table of train rows")
    parser.add_argument("--validation", required=True, help="Parquet table of validation rows")
    parser.add_argument("--out", required=True, help="folder for the adapter (PEFT format)")
    parser.add_argument("--checkpoints", required=True, help="folder for the resumable checkpoint")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    parser.add_argument("--curve", required=True, help="CSV of per-epoch loss and validation scores")
    parser.add_argument(
        "--folds",
        help="K-fold table of the split stage; used when split.kfold.train_adapter_per_fold is true",
    )
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    require_classification(params)
    model_config = parse_section(params, "model", ModelConfig)
    config = parse_section(params, "train", TrainConfig)

    train = load_labelled(args.train, "train")
    validation = load_labelled(args.validation, "validation")
    started = time.perf_counter()
    model, tokenizer, labels, result, info = train_classifier(
        train, validation, config, model_config, seed, checkpoint_dir=Path(args.checkpoints)
    )
    seconds = time.perf_counter() - started

    save_adapter_folder(model, tokenizer, labels, info, Path(args.out))
    best = result.history[result.best_epoch - 1]
    cross_validation = None
    if adapter_per_fold_requested(params):
        if not args.folds or not Path(args.folds).is_file():
            raise InputDataError(
                str(args.folds),
                "the K-fold table is missing",
                "Run the split stage with strategy kfold before training an adapter per fold.",
            )
        cross_validation = cross_validate_adapter(
            load_labelled(args.folds, "folds"), config, model_config, seed
        )
    write_json(
        {
            **({"cross_validation": cross_validation} if cross_validation else {}),
            "best_epoch": result.best_epoch,
            "validation_accuracy": best["validation_accuracy"],
            "validation_macro_f1": best["validation_macro_f1"],
            "train_examples_per_second": round(result.examples_per_second, 2),
            "train_seconds": round(seconds, 1),
            "trainable_parameters": info["trainable_parameters"],
            "train_rows": info["train_rows"],
            "labels": len(labels),
        },
        args.metrics,
    )
    curve = pd.DataFrame(result.history)[
        ["epoch", "train_loss", "validation_accuracy", "validation_macro_f1"]
    ]
    with atomic_path(args.curve) as tmp:
        curve.to_csv(tmp, index=False, float_format="%.6f")
    logger.info(
        "best epoch %d: validation macro-F1 %.4f; adapter saved to %s",
        result.best_epoch,
        best["validation_macro_f1"],
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
