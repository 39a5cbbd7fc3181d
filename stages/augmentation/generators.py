"""Building the generators the augmentation methods use from params: the local LM and the translators."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from stages.augmentation.backtranslation import load_translator
from stages.augmentation.config import AugmentConfig
from stages.augmentation.pipeline import Generators
from stages.core.local_lm import LocalLM, Sampling, generate, load_lm, parse_lm_config, resolve_lm_path

logger = logging.getLogger(__name__)


def fewshot_generate_fn(lm: LocalLM, config: AugmentConfig, seed: int):
    """Return a function that samples one answer per chat prompt with the few-shot settings."""
    settings = config.fewshot
    sampling = Sampling(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        repetition_penalty=settings.repetition_penalty,
    )

    def run(prompts):
        return generate(
            lm,
            prompts,
            sampling,
            seed=seed,
            batch_size=settings.batch_size,
            description="few-shot generation",
        )

    return run


def build_generators(
    config: AugmentConfig,
    params: dict[str, Any],
    base_lm: str | Path | None,
    seed: int,
    *,
    has_targets: bool,
    lm: LocalLM | None = None,
) -> tuple[Generators, LocalLM | None]:
    """Load what the enabled methods need; nothing is loaded when no class is targeted.

    `lm` reuses an already loaded model (the effect stage runs several augmentations). Returns the
    generators and the loaded model.
    """
    generators = Generators()
    if not (config.enabled and has_targets):
        return generators, lm
    if config.fewshot.enabled:
        if config.fewshot.threads:
            torch.set_num_threads(config.fewshot.threads)
        if lm is None:
            lm_config = parse_lm_config(params)
            path = resolve_lm_path(lm_config.name, base_lm)
            lm = load_lm(path, trust_remote_code=lm_config.trust_remote_code, device=config.fewshot.device)
        generators.fewshot = fewshot_generate_fn(lm, config, seed)
        generators.fewshot_model = lm.name
    if config.backtranslation.enabled:
        generators.translator, generators.translator_unavailable = load_translator(config.backtranslation)
    return generators, lm
