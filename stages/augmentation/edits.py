"""Random word deletion and random word swap (the cheap edits of "EDA", Wei and Zou 2019)."""

from __future__ import annotations

import numpy as np


def delete_words(words: list[str], rate: float, generator: np.random.Generator) -> list[str]:
    """Drop each word with probability `rate`; one randomly chosen word survives if all would go."""
    if rate <= 0 or len(words) <= 1:
        return list(words)
    keep = generator.random(len(words)) >= rate
    if not keep.any():
        keep[generator.integers(len(words))] = True
    return [word for word, kept in zip(words, keep, strict=True) if kept]


def swap_words(words: list[str], rate: float, generator: np.random.Generator) -> list[str]:
    """Swap two randomly chosen positions round(rate * len) times, at least once when rate > 0."""
    result = list(words)
    if rate <= 0 or len(result) < 2:
        return result
    swaps = max(1, round(rate * len(result)))
    for _ in range(swaps):
        first, second = generator.choice(len(result), size=2, replace=False)
        result[first], result[second] = result[second], result[first]
    return result


def edit_text(text: str, deletion_rate: float, swap_rate: float, generator: np.random.Generator) -> str:
    """Apply deletion then swap to the whitespace-separated words of `text`."""
    words = text.split()
    words = delete_words(words, deletion_rate, generator)
    words = swap_words(words, swap_rate, generator)
    return " ".join(words)
