"""The LoRA training loop: length-grouped batches, per-epoch validation, best-epoch selection, resume."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from stages.training.batching import collate, length_grouped_batches, random_batches
from stages.training.model import autocast_context, predict_logits

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
META_FILE = "checkpoint.json"


@dataclass
class LoopSettings:
    """Optimisation settings of one training run."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    group_by_length: bool
    max_grad_norm: float
    seed: int
    mixed_precision: str = "auto"


@dataclass
class TrainResult:
    """Result of the training loop: the best epoch's trainable weights and the per-epoch history."""

    best_epoch: int
    best_state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    examples_per_second: float = 0.0
    resumed_from_epoch: int = 0


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copy the trainable parameters (LoRA weights and the classification head) to the CPU."""
    return {
        name: param.detach().cpu().clone() for name, param in model.named_parameters() if param.requires_grad
    }


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable parameters back into `model`."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def evaluate_split(model, input_ids, labels: np.ndarray, pad_id: int, settings: LoopSettings, device) -> dict:
    """Return validation accuracy and macro-F1."""
    logits = predict_logits(
        model, input_ids, pad_id, settings.eval_batch_size, device, settings.mixed_precision
    )
    predicted = logits.argmax(axis=1)
    present = np.unique(labels[labels >= 0])
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)),
    }


def read_checkpoint(folder: Path, fingerprint: str) -> tuple[dict, dict] | None:
    """Return (metadata, state) of the last complete checkpoint made with the same inputs, or None."""
    meta_path = folder / META_FILE
    state_path = folder / STATE_FILE
    if not (meta_path.is_file() and state_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("fingerprint") != fingerprint:
        logger.info("checkpoint in %s was made with other data or params: starting afresh", folder)
        return None
    # weights_only=True restricts loading to tensors and plain containers: nothing is unpickled.
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    return meta, state


def write_checkpoint(
    folder: Path, fingerprint: str, epoch: int, result: TrainResult, model, optimizer, scheduler
) -> None:
    """Write a checkpoint after `epoch`; the folder is replaced whole, so a kill leaves the previous one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state = {
        "model": trainable_state(model),
        "best": result.best_state,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, tmp / STATE_FILE)
    meta = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "best_epoch": result.best_epoch,
        "history": result.history,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def train_loop(
    model: torch.nn.Module,
    train_ids: list[list[int]],
    train_labels: np.ndarray,
    validation_ids: list[list[int]],
    validation_labels: np.ndarray,
    pad_id: int,
    settings: LoopSettings,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    class_weights: torch.Tensor | None = None,
) -> TrainResult:
    """Train `model`, validating after each epoch and keeping the epoch with the best macro-F1."""
    model.to(device)
    parameters = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / settings.batch_size)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer,
        num_warmup_steps=min(settings.warmup_steps, steps_per_epoch * settings.epochs),
        num_training_steps=steps_per_epoch * settings.epochs,
    )
    scaler = (
        torch.amp.GradScaler("cuda") if device.type == "cuda" and settings.mixed_precision == "fp16" else None
    )
    if class_weights is not None:
        class_weights = class_weights.to(device)
    targets = torch.as_tensor(train_labels, dtype=torch.long)
    lengths = [len(ids) for ids in train_ids]

    result = TrainResult(best_epoch=0, best_state=trainable_state(model))
    best_f1 = -1.0
    start_epoch = 1
    if checkpoint_dir is not None:
        saved = read_checkpoint(checkpoint_dir, fingerprint)
        if saved is not None:
            meta, state = saved
            load_trainable_state(model, state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            result = TrainResult(
                best_epoch=meta["best_epoch"], best_state=state["best"], history=meta["history"]
            )
            best_f1 = max((row["validation_macro_f1"] for row in result.history), default=-1.0)
            start_epoch = meta["epoch"] + 1
            result.resumed_from_epoch = meta["epoch"]
            logger.info("resuming after epoch %d from %s", meta["epoch"], checkpoint_dir)

    seen, elapsed = 0, 0.0
    for epoch in range(start_epoch, settings.epochs + 1):
        generator = np.random.default_rng([settings.seed, epoch])
        if settings.group_by_length:
            batches = length_grouped_batches(lengths, settings.batch_size, generator)
        else:
            batches = random_batches(len(train_ids), settings.batch_size, generator)

        model.train()
        started = time.perf_counter()
        total_loss = 0.0
        progress = tqdm(batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch", mininterval=5.0)
        for indices in progress:
            batch = {name: tensor.to(device) for name, tensor in collate(train_ids, indices, pad_id).items()}
            labels = targets[indices].to(device)
            with autocast_context(device, settings.mixed_precision):
                logits = model(**batch).logits
            loss = F.cross_entropy(logits.float(), labels, weight=class_weights)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss += float(loss.detach()) * len(indices)
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        epoch_seconds = time.perf_counter() - started
        seen += len(train_ids)
        elapsed += epoch_seconds

        scores = evaluate_split(model, validation_ids, validation_labels, pad_id, settings, device)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / max(len(train_ids), 1),
            "validation_accuracy": scores["accuracy"],
            "validation_macro_f1": scores["macro_f1"],
            "seconds": epoch_seconds,
        }
        result.history.append(row)
        logger.info(
            "epoch %d: train loss %.4f, validation accuracy %.4f, macro-F1 %.4f (%.0f examples/s)",
            epoch,
            row["train_loss"],
            row["validation_accuracy"],
            row["validation_macro_f1"],
            len(train_ids) / max(epoch_seconds, 1e-9),
        )
        if scores["macro_f1"] > best_f1:
            best_f1 = scores["macro_f1"]
            result.best_epoch = epoch
            result.best_state = trainable_state(model)
        if checkpoint_dir is not None:
            write_checkpoint(checkpoint_dir, fingerprint, epoch, result, model, optimizer, scheduler)

    result.examples_per_second = seen / elapsed if elapsed else 0.0
    load_trainable_state(model, result.best_state)
    return result
