"""In-context example generation: few-shot prompts from real train rows, and parsing the model's lists."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.augmentation.config import FewShotConfig
from stages.core import schema as S
from stages.core.local_lm import GenerationResult, Message

# A generating function: one chat prompt (list of messages) in, one text out, plus throughput.
GenerateFn = Callable[[Sequence[Sequence[Message]]], GenerationResult]


@dataclass(frozen=True)
class FewShotPrompt:
    """One prompt for one class, with the train rows it shows (the parents of what it yields)."""

    label: str
    parent_ids: tuple[str, ...]
    messages: tuple[Message, ...]
    prompt_hash: str


def display_label(label: str, mode: str) -> str:
    """Write a label for a prompt: "humanize" turns `card_arrival` into `card arrival`."""
    if mode == "raw":
        return label
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def build_prompts(
    train: pd.DataFrame, labels: Sequence[str], config: FewShotConfig, seed: int
) -> list[FewShotPrompt]:
    """Build `prompts_per_class` prompts per label, each showing up to `k` seeded random rows of it."""
    prompts = []
    for label in labels:
        rows = train[train[S.LABEL].astype(str) == label]
        if rows.empty:
            continue
        for number in range(config.prompts_per_class):
            generator = np.random.default_rng([seed, int(S.sha256_hex("fewshot", label)[:8], 16), number])
            size = min(config.k, len(rows))
            chosen = rows.iloc[np.sort(generator.choice(len(rows), size=size, replace=False))]
            examples = "\n".join(
                f"{position}. {text}" for position, text in enumerate(chosen[S.TEXT].astype(str), start=1)
            )
            content = config.template.format(
                label=display_label(label, config.label_display),
                examples=examples,
                n=config.examples_per_prompt,
            )
            messages: list[Message] = []
            if config.system_prompt:
                messages.append({"role": "system", "content": config.system_prompt})
            messages.append({"role": "user", "content": content})
            if config.assistant_prefix:
                messages.append({"role": "assistant", "content": config.assistant_prefix})
            prompts.append(
                FewShotPrompt(
                    label=label,
                    parent_ids=tuple(chosen[S.ROW_ID].astype(str)),
                    messages=tuple(messages),
                    prompt_hash=prompt_hash(messages),
                )
            )
    return prompts


def prompt_hash(messages: Sequence[Message]) -> str:
    """Return the sha256 of the messages as canonical JSON."""
    return S.sha256_hex(json.dumps(list(messages), sort_keys=True, ensure_ascii=False))


# "1.", "2)", "3:", "(4)", "#5", "- ", "* ", "• " at the start of a line.
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]-]|#\s*\d{1,3}\s*[.):]?|[-*•·–])\s*")
# An inline run such as "1. foo 2. bar 3. baz" on one line.
_INLINE_NUMBER = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)]\s+")
# "Customer: ...", "Message 3: ...", "Example: ...".
_SPEAKER = re.compile(r"^(?:customer|message|user|example|query|text)\s*\d*\s*[:\-]\s*", re.IGNORECASE)
_QUOTE_PAIRS = {'"': '"', "“": "”", "'": "'", "«": "»", "‘": "’", "`": "`"}


def strip_quotes(text: str) -> str:
    """Remove matching quotes (straight, curly or guillemets) around the whole text, repeatedly."""
    text = text.strip()
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        text = text[1:-1].strip()
    # A list item quoted at the start but cut before its closing quote.
    if text[:1] in ('"', "“") and text.count(text[0]) == 1:
        text = text[1:].strip()
    return text


def parse_candidates(output: str) -> list[str]:
    """Split a model's output into candidate texts.

    Numbered or bulleted lines are list items; when any line has a list marker, lines without one
    (preambles such as "Here are five messages:" and closing remarks) are dropped. Without markers,
    every non-empty line is a candidate, and a single line numbered inline ("1. a 2. b") is split.
    Quotes around an item, markdown bold and speaker prefixes ("Customer:") are removed.
    """
    lines = [line for line in output.replace("\r", "\n").split("\n") if line.strip()]
    if len(lines) == 1 and len(_INLINE_NUMBER.findall(lines[0])) >= 2:
        lines = [part for part in _INLINE_NUMBER.split(lines[0]) if part.strip()]
        marked = [True] * len(lines)
    else:
        marked = [bool(_LIST_MARKER.match(line)) for line in lines]
    any_marked = any(marked)

    candidates = []
    for line, has_marker in zip(lines, marked, strict=True):
        if any_marked and not has_marker:
            continue
        text = _LIST_MARKER.sub("", line, count=1) if has_marker else line
        text = text.replace("**", "").strip()
        text = _SPEAKER.sub("", text)
        text = strip_quotes(text)
        if not text or text.endswith(":"):
            continue
        candidates.append(text)
    return candidates


@dataclass
class FewShotOutput:
    """Output of one prompt: the raw text, the parsed candidates and whether generation was cut off."""

    prompt: FewShotPrompt
    raw: str
    candidates: list[str]
    truncated: bool


def run_fewshot(
    prompts: Sequence[FewShotPrompt], generate_fn: GenerateFn, max_new_tokens: int
) -> tuple[list[FewShotOutput], GenerationResult]:
    """Generate one output per prompt and parse it.

    A prefilled assistant message (the `assistant_prefix`) is put back in front of the output
    before parsing. An output that used all `max_new_tokens` tokens is marked truncated, because
    its last item is probably cut mid-sentence.
    """
    result = generate_fn([list(prompt.messages) for prompt in prompts])
    if len(result.texts) != len(prompts):
        raise RuntimeError(f"the generator returned {len(result.texts)} texts for {len(prompts)} prompts")
    token_counts = result.per_prompt_new_tokens or [0] * len(prompts)
    outputs = []
    for prompt, text, tokens in zip(prompts, result.texts, token_counts, strict=True):
        last = prompt.messages[-1] if prompt.messages else None
        prefix = last["content"] if last is not None and last["role"] == "assistant" else ""
        raw = f"{prefix} {text}" if prefix else text
        outputs.append(
            FewShotOutput(
                prompt=prompt,
                raw=raw,
                candidates=parse_candidates(raw),
                truncated=tokens >= max_new_tokens,
            )
        )
    return outputs, result
