"""Running a loaded language model over the selected test inputs, timed the same way for every system."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stages.core.local_lm import LocalLM, Prompt, Sampling, generate
from stages.generation.config import DecodingConfig
from stages.generation.scoring import prediction_table

logger = logging.getLogger(__name__)


def sampling_from(config: DecodingConfig) -> Sampling:
    return Sampling(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        repetition_penalty=config.repetition_penalty,
    )


def time_single_requests(
    lm: LocalLM, prompts: Sequence[Prompt], config: DecodingConfig, seed: int
) -> np.ndarray:
    """Generate for a seeded sample of `config.latency_inputs` prompts one at a time.

    Returns the wall time of each in milliseconds, NaN for prompts outside the sample. Run it after
    a batched pass, so that first-call set-up costs are not counted.
    """
    latency = np.full(len(prompts), np.nan)
    count = min(config.latency_inputs, len(prompts))
    if count == 0:
        return latency
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(len(prompts), size=count, replace=False))
    sampling = sampling_from(config)
    for index in chosen:
        result = generate(lm, [prompts[index]], sampling, seed=seed, batch_size=1, progress=False)
        latency[index] = result.seconds * 1000.0
    return latency


def run_system(
    lm: LocalLM,
    inputs: pd.DataFrame,
    prompts: Sequence[Prompt],
    config: DecodingConfig,
    seed: int,
    name: str,
) -> pd.DataFrame:
    """Generate one output per input in left-padded batches and return the prediction table."""
    result = generate(
        lm,
        list(prompts),
        sampling_from(config),
        seed=seed,
        batch_size=config.batch_size,
        description=f"generating ({name})",
    )
    per_example_ms = result.seconds * 1000.0 / max(len(prompts), 1)
    single = time_single_requests(lm, prompts, config, seed)
    logger.info("%s: %d outputs, %.1f generated tokens/s", name, len(result.texts), result.tokens_per_second)
    return prediction_table(
        inputs, result.texts, result.per_prompt_new_tokens, [per_example_ms] * len(prompts), single
    )
