"""LoRA fine-tuning of a causal LM on (prompt, target) pairs: examples, the loop and its checkpoints.

The loop shares its checkpoint format and batching with the classification trainer
(`stages.training`). One checkpoint folder, replaced whole after every epoch, contains the LoRA
weights, the optimiser, scheduler and RNG states and the history. A rerun with the same inputs
therefore resumes after the last finished epoch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.generation.config import LoraParams, PromptConfig, TrainConfig
from stages.generation.prompts import (
    IGNORE_INDEX,
    TrainingExample,
    build_prompt,
    build_training_example,
    collate_training,
    encode_completion,
    encode_prompt,
)
from stages.training.batching import length_grouped_batches, random_batches, sorted_batches
from stages.training.loop import (
    TrainResult,
    load_trainable_state,
    read_checkpoint,
    trainable_state,
    write_checkpoint,
)
from stages.training.model import autocast_context

logger = logging.getLogger(__name__)


def build_examples(
    tokenizer: Any, prompt: PromptConfig, rows: pd.DataFrame, max_length: int, location: str
) -> list[TrainingExample]:
    """Tokenise every (text, target) row into a training example with the prompt masked out."""
    examples = []
    for row in rows.itertuples(index=False):
        prompt_ids = encode_prompt(tokenizer, build_prompt(prompt, str(getattr(row, S.TEXT))))
        completion_ids = encode_completion(tokenizer, prompt, str(getattr(row, S.TARGET)))
        try:
            examples.append(build_training_example(prompt_ids, completion_ids, max_length))
        except ValueError as exc:
            raise InputDataError(
                location,
                str(exc),
                "Raise `train_lm.max_length` or shorten the prompt template.",
                field=S.TEXT,
            ) from None
    truncated = sum(example.truncated for example in examples)
    if truncated:
        logger.warning(
            "%s: %d of %d targets were cut to fit train_lm.max_length %d",
            location,
            truncated,
            len(examples),
            max_length,
        )
    return examples


def add_lora(model: Any, params: LoraParams) -> PeftModel:
    """Wrap a causal LM with LoRA adapters on `params.target_modules`."""
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise InputDataError(
            "train_lm.lora.target_modules",
            f"PEFT cannot place LoRA on {list(params.target_modules)} in {type(model).__name__} ({exc})",
            "Name linear layers of this architecture, for example q_proj and v_proj for Llama-style models.",
        ) from None


def target_token_count(labels: torch.Tensor) -> int:
    """Count the positions that add to a causal LM loss: labels shifted by one, IGNORE_INDEX left out."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


@torch.inference_mode()
def mean_target_loss(
    model: Any, examples: Sequence[TrainingExample], pad_id: int, batch_size: int, device: torch.device
) -> float:
    """Return the mean loss per target token over `examples` (batches of similar length)."""
    if not examples:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    for indices in sorted_batches([len(example.input_ids) for example in examples], batch_size):
        batch = {
            name: tensor.to(device) for name, tensor in collate_training(examples, indices, pad_id).items()
        }
        tokens = target_token_count(batch["labels"])
        total += float(model(**batch).loss) * tokens
        count += tokens
    return total / count if count else float("nan")


def train_adapter(
    model: PeftModel,
    train: Sequence[TrainingExample],
    validation: Sequence[TrainingExample],
    config: TrainConfig,
    seed: int,
    pad_id: int,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
) -> TrainResult:
    """Train the LoRA weights, keeping the epoch with the lowest validation loss.

    Each epoch ends with a checkpoint in `checkpoint_dir`. A checkpoint written with the same
    `fingerprint` is resumed after its epoch, so a finished run is not trained again.
    """
    model.to(device)
    parameters = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, min(config.warmup_steps, total_steps), total_steps)
    scaler = (
        torch.amp.GradScaler("cuda") if device.type == "cuda" and config.mixed_precision == "fp16" else None
    )
    lengths = [len(example.input_ids) for example in train]

    result = TrainResult(best_epoch=0, best_state=trainable_state(model))
    best_loss = math.inf
    start_epoch = 1
    saved = read_checkpoint(checkpoint_dir, fingerprint) if checkpoint_dir is not None else None
    if saved is not None:
        meta, state = saved
        load_trainable_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        result = TrainResult(best_epoch=meta["best_epoch"], best_state=state["best"], history=meta["history"])
        losses = [row["validation_loss"] for row in result.history if row["validation_loss"] is not None]
        best_loss = min(losses, default=math.inf)
        start_epoch = meta["epoch"] + 1
        result.resumed_from_epoch = meta["epoch"]
        logger.info("resuming after epoch %d from %s", meta["epoch"], checkpoint_dir)

    seen, elapsed = 0, 0.0
    for epoch in range(start_epoch, config.epochs + 1):
        generator = np.random.default_rng([seed, epoch])
        if config.group_by_length:
            batches = length_grouped_batches(lengths, config.batch_size, generator)
        else:
            batches = random_batches(len(train), config.batch_size, generator)

        model.train()
        started = time.perf_counter()
        loss_sum, token_sum = 0.0, 0
        progress = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", mininterval=5.0)
        for indices in progress:
            batch = {
                name: tensor.to(device) for name, tensor in collate_training(train, indices, pad_id).items()
            }
            with autocast_context(device, config.mixed_precision):
                loss = model(**batch).loss
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens = target_token_count(batch["labels"])
            loss_sum += float(loss.detach()) * tokens
            token_sum += tokens
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        epoch_seconds = time.perf_counter() - started
        seen += len(train)
        elapsed += epoch_seconds

        validation_loss = mean_target_loss(model, validation, pad_id, config.batch_size, device)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / max(token_sum, 1),
            "validation_loss": validation_loss if math.isfinite(validation_loss) else None,
            "validation_perplexity": math.exp(validation_loss) if math.isfinite(validation_loss) else None,
            "learning_rate": scheduler.get_last_lr()[0],
            "seconds": epoch_seconds,
            "examples_per_second": len(train) / max(epoch_seconds, 1e-9),
        }
        result.history.append(row)
        logger.info(
            "epoch %d: train loss %.4f, validation loss %.4f (%.2f examples/s)",
            epoch,
            row["train_loss"],
            validation_loss,
            row["examples_per_second"],
        )
        # Without validation rows every epoch counts as better, so the last one is kept.
        if not math.isfinite(validation_loss) or validation_loss < best_loss:
            best_loss = validation_loss if math.isfinite(validation_loss) else best_loss
            result.best_epoch = epoch
            result.best_state = trainable_state(model)
        if checkpoint_dir is not None:
            write_checkpoint(checkpoint_dir, fingerprint, epoch, result, model, optimizer, scheduler)

    result.examples_per_second = seen / elapsed if elapsed else 0.0
    load_trainable_state(model, result.best_state)
    return result
