"""Back-translation: source language -> pivot language -> source language with two seq2seq models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from stages.augmentation.config import BackTranslationConfig
from stages.core.errors import ParamsError
from stages.core.local_lm import pick_device
from stages.core.schema import sha256_hex

logger = logging.getLogger(__name__)

PARAM_PREFIX = "augment.backtranslation"


class TranslationModelError(Exception):
    """A translation model named in params cannot be loaded."""

    def __init__(self, key: str, model: str, cause: Exception):
        self.key = key
        self.model = model
        self.cause = cause
        super().__init__(f"{key} = {model!r}: {type(cause).__name__}: {cause}")


@dataclass
class TranslationModel:
    name: str
    model: Any
    tokenizer: Any


@dataclass
class Translator:
    """The forward (to pivot) and backward (from pivot) models and the device they run on."""

    forward: TranslationModel
    backward: TranslationModel
    device: torch.device

    @property
    def name(self) -> str:
        return f"{self.forward.name} -> {self.backward.name}"


def load_translation_model(key: str, name: str, config: BackTranslationConfig) -> TranslationModel:
    """Load one seq2seq model and its tokenizer, raising TranslationModelError when impossible."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, local_files_only=config.local_files_only, trust_remote_code=config.trust_remote_code
        )
        model = AutoModelForSeq2SeqLM.from_pretrained(
            name,
            local_files_only=config.local_files_only,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
        )
    # OSError: not found locally or on the hub, or no safetensors weights; ValueError: not a seq2seq
    # model; ImportError: a tokenizer dependency such as sentencepiece is missing.
    except (OSError, ValueError, ImportError) as exc:
        raise TranslationModelError(key, name, exc) from exc
    model.eval()
    return TranslationModel(name=name, model=model, tokenizer=tokenizer)


def load_translator(config: BackTranslationConfig) -> tuple[Translator | None, str | None]:
    """Load both models; returns (translator, None), or (None, reason) when skipping is allowed.

    With `on_unavailable: fail`, a model that cannot be loaded raises ParamsError naming the param.
    """
    try:
        forward = load_translation_model(f"{PARAM_PREFIX}.forward_model", config.forward_model, config)
        backward = load_translation_model(f"{PARAM_PREFIX}.backward_model", config.backward_model, config)
    except TranslationModelError as exc:
        where = "from local files only" if config.local_files_only else "from local files or the hub"
        if config.on_unavailable == "fail":
            raise ParamsError(
                exc.key,
                exc.model,
                f"names a translation model that cannot be loaded {where} ({type(exc.cause).__name__}: "
                f"{_first_line(exc.cause)})",
                f"Put the model in the Hugging Face cache or a local folder and name that folder, or set "
                f"`{PARAM_PREFIX}.on_unavailable: skip` or `{PARAM_PREFIX}.enabled: false`.",
            ) from None
        reason = f"`{exc.key}` = {exc.model!r} cannot be loaded {where}: {_first_line(exc.cause)}"
        logger.warning("back-translation skipped: %s", reason)
        return None, reason
    device = pick_device(config.device)
    forward.model.to(device)
    backward.model.to(device)
    return Translator(forward=forward, backward=backward, device=device), None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(
    model: TranslationModel,
    texts: Sequence[str],
    config: BackTranslationConfig,
    *,
    seed: int,
    device: torch.device,
    description: str,
) -> list[str]:
    """Translate texts in batches; sampling batches are seeded from `seed` and their position."""
    outputs: list[str] = []
    bar = tqdm(total=len(texts), desc=description, unit="row")
    for start in range(0, len(texts), config.batch_size):
        batch = list(texts[start : start + config.batch_size])
        encoded = model.tokenizer(batch, return_tensors="pt", padding=True, truncation=True)
        encoded = {key: value.to(device) for key, value in encoded.items()}
        torch.manual_seed(int(sha256_hex("translate", model.name, seed, start)[:8], 16))
        sampling = config.temperature > 0
        with torch.inference_mode():
            generated = model.model.generate(
                **encoded,
                max_new_tokens=config.max_new_tokens,
                num_beams=config.num_beams,
                do_sample=sampling,
                temperature=config.temperature if sampling else None,
            )
        outputs.extend(
            text.strip() for text in model.tokenizer.batch_decode(generated, skip_special_tokens=True)
        )
        bar.update(len(batch))
    bar.close()
    return outputs


def round_trip(
    translator: Translator, texts: Sequence[str], config: BackTranslationConfig, seed: int
) -> tuple[list[str], list[str]]:
    """Return (pivot texts, back-translated texts) for `texts`."""
    pivot = translate(
        translator.forward, texts, config, seed=seed, device=translator.device, description="to pivot"
    )
    back = translate(
        translator.backward, pivot, config, seed=seed, device=translator.device, description="from pivot"
    )
    return pivot, back
