"""Loading the base encoder, wrapping it with LoRA, loading a saved adapter, and batched prediction."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from stages.core.errors import InputDataError, ParamsError
from stages.training.batching import collate, sorted_batches

logger = logging.getLogger(__name__)

LABEL_MAP_FILE = "label_map.json"
TRAINING_INFO_FILE = "training_info.json"


def pick_device(requested: str) -> torch.device:
    """Return the device for `train.device`: "auto" takes CUDA when present."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(
            "train.device", requested, "names a CUDA device but none is available", "Use `auto` or `cpu`."
        )
    return torch.device(requested)


def autocast_context(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager:
    """Return the autocast context for `train.mixed_precision` ("auto", "bf16", "fp16" or "no").

    On CUDA, "auto" is bf16 where the GPU supports it and fp16 elsewhere. On CPU only an explicit
    "bf16" autocasts (to bfloat16): it is faster on CPUs with native bf16 instructions (AVX512-BF16,
    AMX) and slower on others, so "auto" keeps float32 there. Other devices run float32.
    """
    if mixed_precision == "no":
        return contextlib.nullcontext()
    if device.type == "cpu":
        if mixed_precision == "bf16":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.float16 if mixed_precision == "fp16" else torch.bfloat16
    if mixed_precision == "auto" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def load_tokenizer(
    model_path: str, trust_remote_code: bool, key: str = "model.name"
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of `model_path`, turning a missing model into a params error."""
    try:
        return AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ParamsError(
            key,
            model_path,
            f"could not be loaded ({str(exc).splitlines()[0]})",
            "Give a local folder, a packaged model, or a hub id reachable from this machine.",
        ) from None


def load_base_classifier(
    model_path: str, labels: Sequence[str], trust_remote_code: bool, key: str = "model.name"
) -> torch.nn.Module:
    """Load the base model with a fresh classification head for `labels` (weights from safetensors)."""
    label2id = {label: index for index, label in enumerate(labels)}
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model_path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id=label2id,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise ParamsError(
            key,
            model_path,
            f"could not be loaded as a sequence classifier from safetensors ({str(exc).splitlines()[0]})",
            "Give a model folder with model.safetensors, or a hub id reachable from this machine.",
        ) from None


def add_lora(
    model: torch.nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]
) -> PeftModel:
    """Wrap `model` with LoRA adapters; the classification head is trained in full and saved with them."""
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ParamsError(
            "train.lora.target_modules",
            target_modules,
            f"does not match the model's layers ({str(exc).splitlines()[0]})",
            "List module names of the base model, for BERT-like encoders: query, key, value, dense.",
        ) from None


def save_adapter(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str], info: dict, folder: Path
) -> None:
    """Save the adapter in PEFT's format, with the tokenizer, label map and training info."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / LABEL_MAP_FILE).write_text(
        json.dumps({"labels": list(labels)}, indent=2) + "\n", encoding="utf-8"
    )
    (folder / TRAINING_INFO_FILE).write_text(
        json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def read_adapter_labels(folder: Path) -> list[str]:
    """Read the label list saved beside an adapter."""
    path = folder / LABEL_MAP_FILE
    if not path.is_file():
        raise InputDataError(str(path), "label map not found", "Rerun the train stage.")
    return list(json.loads(path.read_text(encoding="utf-8"))["labels"])


def load_adapter_classifier(
    folder: Path, base_model_path: str, trust_remote_code: bool
) -> tuple[PeftModel, list[str]]:
    """Load the base model and the saved adapter with `PeftModel.from_pretrained`."""
    labels = read_adapter_labels(folder)
    base = load_base_classifier(base_model_path, labels, trust_remote_code)
    model = PeftModel.from_pretrained(base, str(folder))
    model.eval()
    return model, labels


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Tokenise without padding, truncating to `max_length` tokens."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    input_ids: Sequence[list[int]],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    mixed_precision: str = "auto",
) -> np.ndarray:
    """Return logits for every example, in input order, batching examples of similar length."""
    model.eval()
    outputs: list[np.ndarray] = [np.empty(0)] * len(input_ids)
    for indices in sorted_batches([len(ids) for ids in input_ids], batch_size):
        batch = {name: tensor.to(device) for name, tensor in collate(input_ids, indices, pad_id).items()}
        with autocast_context(device, mixed_precision):
            logits = model(**batch).logits.float().cpu().numpy()
        for row, index in enumerate(indices):
            outputs[index] = logits[row]
    return np.stack(outputs) if outputs else np.empty((0, 0))
