"""Prompts from inputs, and tokenised training examples whose loss counts only the target tokens.

A prompt is tokenised here exactly as `stages.core.local_lm.generate` tokenises it. A chat prompt
(a list of messages) goes through the tokenizer's chat template with the assistant turn opened and
is encoded without added special tokens. A plain prompt (a string) is encoded with them. So the
adapter is trained on the very token sequences it continues at generation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stages.core.errors import ParamsError
from stages.core.local_lm import Message, Prompt
from stages.generation.config import INPUT_PLACEHOLDER, PromptConfig

# Label value that torch's cross-entropy ignores, so those positions add nothing to the loss.
IGNORE_INDEX = -100


def check_prompt_style(config: PromptConfig, tokenizer: Any, model_name: str) -> None:
    """Raise ParamsError when the chat style is requested for a tokenizer without a chat template."""
    if config.style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ParamsError(
            "prompt.style",
            config.style,
            f"needs a chat template, but the tokenizer of {model_name} has none",
            "Set `prompt.style: plain` for base models.",
        )


def fill(template: str, text: str) -> str:
    return template.replace(INPUT_PLACEHOLDER, text)


def build_prompt(config: PromptConfig, text: str, examples: Sequence[tuple[str, str]] = ()) -> Prompt:
    """Return the prompt for one input, after optional (input, target) demonstration pairs.

    The chat style returns messages: the system turn, one user/assistant pair per demonstration,
    and the user turn with the input. The plain style returns one string of filled templates.
    """
    if config.style == "chat":
        messages: list[Message] = []
        if config.system is not None:
            messages.append({"role": "system", "content": config.system})
        for example_text, example_target in examples:
            messages.append({"role": "user", "content": fill(config.instruction, example_text)})
            messages.append({"role": "assistant", "content": example_target})
        messages.append({"role": "user", "content": fill(config.instruction, text)})
        return messages

    blocks = [
        fill(config.plain_template, example_text) + config.target_prefix + example_target
        for example_text, example_target in examples
    ]
    blocks.append(fill(config.plain_template, text))
    return "\n\n".join(blocks)


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Return the token ids of a prompt, the same ids `local_lm.generate` feeds the model."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    text = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_completion(tokenizer: Any, config: PromptConfig, target: str) -> list[int]:
    """Return the token ids the model must produce after the prompt: the target, then EOS.

    EOS is the tokenizer's end token, which for chat models is the end-of-turn token, so a trained
    adapter stops by itself at generation time.
    """
    if tokenizer.eos_token_id is None:
        raise ParamsError(
            "lm.name",
            getattr(tokenizer, "name_or_path", "?"),
            "has a tokenizer without an EOS token",
            "Use a causal LM whose tokenizer defines `eos_token`.",
        )
    text = target if config.style == "chat" else config.target_prefix + target
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], int(tokenizer.eos_token_id)]


@dataclass(frozen=True)
class TrainingExample:
    """Token ids of prompt + completion, with labels that are IGNORE_INDEX on every prompt token."""

    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    # True when the completion was cut to fit `max_length`.
    truncated: bool


def build_training_example(
    prompt_ids: list[int], completion_ids: list[int], max_length: int
) -> TrainingExample:
    """Join prompt and completion ids and mask the prompt out of the loss.

    When the pair is longer than `max_length`, the completion loses its end; a prompt that leaves
    no room for a single completion token raises ValueError.
    """
    room = max_length - len(prompt_ids)
    if room < 1:
        raise ValueError(
            f"the prompt has {len(prompt_ids)} tokens, "
            f"which leaves no room for the target within max_length {max_length}"
        )
    kept_completion = completion_ids[:room]
    return TrainingExample(
        input_ids=[*prompt_ids, *kept_completion],
        labels=[IGNORE_INDEX] * len(prompt_ids) + kept_completion,
        prompt_tokens=len(prompt_ids),
        truncated=len(kept_completion) < len(completion_ids),
    )


def collate_training(
    examples: Sequence[TrainingExample], indices: Sequence[int], pad_id: int
) -> dict[str, torch.Tensor]:
    """Pad the examples at `indices` on the right; padding gets attention 0 and label IGNORE_INDEX."""
    width = max(len(examples[index].input_ids) for index in indices)
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, index in enumerate(indices):
        example = examples[index]
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
