"""Tokenised examples and batches grouped by length, so that little compute is spent on padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# A batch is sorted inside a window of this many batches; larger windows pad less but mix less.
MEGABATCH_FACTOR = 50


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, generator: np.random.Generator
) -> list[np.ndarray]:
    """Shuffle example indices, sort them by length within windows, and shuffle the batches.

    Each batch contains examples of similar length, while the order of batches and which examples
    meet in a window change with the seed and epoch.
    """
    order = generator.permutation(len(lengths))
    lengths = np.asarray(lengths)
    window = batch_size * MEGABATCH_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batch_order = generator.permutation(len(batches))
    return [batches[i] for i in batch_order]


def random_batches(count: int, batch_size: int, generator: np.random.Generator) -> list[np.ndarray]:
    """Shuffle example indices and cut them into batches."""
    order = generator.permutation(count)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Cut indices sorted by length into batches, for fast inference with little padding."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(input_ids: Sequence[list[int]], indices: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples at `indices` to the longest among them."""
    width = max(len(input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, index in enumerate(indices):
        tokens = input_ids[index]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask}
