"""Forgetting check: perplexity on general-domain text with and without the adapter, and its gate.

The general-domain text is the WikiText-2 test file in its tokenised form (`test.txt` of the
word-level language-model data). Words and punctuation are separated by spaces, number separators
are written ` @-@ `, ` @,@ ` and ` @.@ `, section headings look like ` = Title = ` and rare words
are replaced by `<unk>`. The lines are turned back into ordinary text before scoring, because the
model was trained on ordinary text.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from stages.core.errors import GateError, InputDataError
from stages.generation.config import ForgettingConfig

logger = logging.getLogger(__name__)

UNKNOWN_TOKEN = "<unk>"
NUMBER_SEPARATORS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}
SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}])")
SPACE_AFTER = re.compile(r"([(\[{$£#]) ")
CONTRACTION = re.compile(r" (n't|'(?:s|re|ve|ll|d|m|t)\b)")
PLURAL_POSSESSIVE = re.compile(r"(\ws) ' ")
CLOCK_TIME = re.compile(r"(\d) : (\d)")
QUOTED = re.compile(r'" (.*?) "')
SPACES = re.compile(r"\s+")


def detokenize(line: str) -> str:
    """Undo WikiText tokenisation in one line: joined number separators, punctuation and quotes."""
    text = line.strip()
    for marked, plain in NUMBER_SEPARATORS.items():
        text = text.replace(marked, plain)
    text = QUOTED.sub(r'"\1"', text)
    text = CONTRACTION.sub(r"\1", text)
    text = PLURAL_POSSESSIVE.sub(r"\1' ", text)
    text = CLOCK_TIME.sub(r"\1:\2", text)
    text = SPACE_BEFORE.sub(r"\1", text)
    text = SPACE_AFTER.sub(r"\1", text)
    return SPACES.sub(" ", text).strip()


def is_heading(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("=") and stripped.endswith("=")


def eligible_lines(raw_lines: Sequence[str]) -> list[str]:
    """Return the detokenised paragraphs: blank lines, headings and lines with `<unk>` left out."""
    lines = []
    for raw in raw_lines:
        if not raw.strip() or is_heading(raw) or UNKNOWN_TOKEN in raw:
            continue
        lines.append(detokenize(raw))
    return lines


def read_general_text(path: str | Path) -> list[str]:
    """Read the WikiText file and return its eligible, detokenised lines."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            str(path),
            "file not found",
            "Restore data/sources/wikitext2/test.txt or pass --general-text PATH.",
        )
    lines = eligible_lines(path.read_text(encoding="utf-8").splitlines())
    if not lines:
        raise InputDataError(
            str(path),
            "no line is left after leaving out blanks, headings and lines with <unk>",
            "Use a WikiText-style file with ordinary paragraphs.",
        )
    return lines


def sample_lines(lines: Sequence[str], tokenizer: Any, config: ForgettingConfig, seed: int) -> list[str]:
    """Draw lines in a seeded order until `max_lines` lines or `max_tokens` scored tokens are reached."""
    order = np.random.default_rng(seed).permutation(len(lines))
    chosen: list[str] = []
    tokens = 0
    for index in order:
        if len(chosen) >= config.max_lines or tokens >= config.max_tokens:
            break
        count = min(len(tokenizer(lines[index], add_special_tokens=True)["input_ids"]), config.max_length)
        if count < 2:
            continue
        chosen.append(lines[index])
        tokens += count
    return chosen


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    description: str = "perplexity",
) -> tuple[float, int]:
    """Return (perplexity, predicted tokens) of `model` over `texts`, each cut to `max_length` tokens.

    The perplexity is exp of the mean negative log-likelihood over all predicted tokens, so long
    and short lines weigh by their token counts whatever the batching.
    """
    encoded = [
        tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        for text in texts
    ]
    # Batches of similar length waste little compute on padding; the sum does not depend on the order.
    encoded = sorted((ids for ids in encoded if len(ids) >= 2), key=len, reverse=True)
    if not encoded:
        raise ValueError("no text has the two tokens needed to score one prediction")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    total_nll = 0.0
    total_tokens = 0
    model.eval()
    for start in tqdm(range(0, len(encoded), batch_size), desc=description, unit="batch", leave=False):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
        targets = input_ids[:, 1:].reshape(-1)
        weights = mask[:, 1:].reshape(-1).bool()
        losses = torch.nn.functional.cross_entropy(predicted[weights], targets[weights], reduction="sum")
        total_nll += float(losses)
        total_tokens += int(weights.sum())
    return math.exp(total_nll / total_tokens), total_tokens


def measure_forgetting(
    peft_model: Any, tokenizer: Any, texts: Sequence[str], config: ForgettingConfig
) -> dict[str, float | int]:
    """Score `texts` with the adapter switched off (the base model) and on; returns both and the change."""
    if not hasattr(peft_model, "disable_adapter"):
        raise TypeError("measure_forgetting needs a PEFT model, whose adapter can be switched off")
    with peft_model.disable_adapter():
        base, tokens = perplexity(
            peft_model, tokenizer, texts, config.max_length, config.batch_size, "perplexity (base)"
        )
    adapted, _ = perplexity(
        peft_model, tokenizer, texts, config.max_length, config.batch_size, "perplexity (adapter)"
    )
    increase = adapted / base - 1.0
    logger.info(
        "general-text perplexity: base %.3f, with adapter %.3f (%+.1f%%)", base, adapted, 100 * increase
    )
    return {
        "lines": len(texts),
        "tokens": tokens,
        "base_perplexity": round(base, 4),
        "adapter_perplexity": round(adapted, 4),
        "relative_increase": round(increase, 6),
        "max_relative_increase": config.max_relative_increase,
    }


def check_forgetting(result: dict[str, float | int], max_relative_increase: float) -> None:
    """Raise GateError when the adapter raised general-text perplexity by more than allowed."""
    increase = float(result["relative_increase"])
    if increase > max_relative_increase:
        raise GateError(
            "forgetting",
            f"general-text perplexity rose by {100 * increase:.1f}% with the adapter "
            f"({result['base_perplexity']} -> {result['adapter_perplexity']}), above the allowed "
            f"{100 * max_relative_increase:.1f}% (`evaluate_lm.forgetting.max_relative_increase`). "
            "Train with a lower learning rate, fewer epochs or a smaller LoRA rank, or raise the threshold.",
        )
