"""augment_effect: test scores with and without augmentation in a low-resource setting.

The train split is cut to `augment_effect.shots_per_class` rows per class (10 by default, as in
the few-shot experiments of the BANKING77 paper, Casanueva et al. 2020). The augment stage's
methods and filters (with `augment_effect.augment` merged over `augment`) add rows to that
subset. One classifier is trained on the subset and another on the subset plus the new rows.
Both are scored on the full test split, and the metrics are their scores and the differences.
`enabled: false` writes a metrics file that says the comparison was skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stages.augmentation.config import AugmentConfig, EffectConfig
from stages.augmentation.effect import FitPredict, effect_augment_config, run_effect, tfidf_fit_predict
from stages.augmentation.generators import build_generators
from stages.augmentation.normalise import build_normaliser
from stages.augmentation.pipeline import check_train
from stages.baselines import BaselinesConfig
from stages.core.cli import run_stage, stage_parser
from stages.core.io import read_table, write_json
from stages.core.local_lm import LocalLM
from stages.core.params import ModelConfig, parse_section, parse_seed, read_params

logger = logging.getLogger(__name__)


def lora_fit_predict(params: dict[str, Any], validation: pd.DataFrame, seed: int) -> FitPredict:
    """Return a trainer that fine-tunes the `model` encoder with LoRA (params `train`) on a table."""
    from stages.train import TrainConfig, train_classifier
    from stages.training.model import predict_logits, tokenize

    train_config = parse_section(params, "train", TrainConfig)
    model_config = parse_section(params, "model", ModelConfig)

    def run(train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
        model, tokenizer, labels, _, _ = train_classifier(train, validation, train_config, model_config, seed)
        input_ids = tokenize(tokenizer, test["text"].astype(str).tolist(), train_config.max_length)
        device = next(model.parameters()).device
        logits = predict_logits(
            model,
            input_ids,
            tokenizer.pad_token_id,
            train_config.eval_batch_size,
            device,
            train_config.mixed_precision,
        )
        return [labels[index] for index in np.argmax(logits, axis=1)]

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", required=True, help="Parquet table of train rows (the split stage's)")
    parser.add_argument("--validation", required=True, help="Parquet table of validation rows")
    parser.add_argument("--test", required=True, help="Parquet table of test rows")
    parser.add_argument("--base-lm", required=True, help="folder of the prepared instruction model")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    effect = parse_section(params, "augment_effect", EffectConfig)
    if not effect.enabled:
        logger.info("augment_effect.enabled is false: the comparison is skipped")
        write_json({"skipped": True, "reason": "augment_effect.enabled is false"}, args.metrics)
        return
    augment_config = effect_augment_config(params, effect)
    normalise = build_normaliser(params)

    train = read_table(args.train)
    check_train(train, args.train)
    validation = read_table(args.validation)
    test = read_table(args.test)

    if effect.model == "tfidf":
        fit_predict = tfidf_fit_predict(parse_section(params, "baselines", BaselinesConfig).tfidf, seed)
    else:
        fit_predict = lora_fit_predict(params, validation, seed)

    loaded: dict[str, LocalLM | None] = {"lm": None}

    def make_generators(config: AugmentConfig, repeat_seed: int, has_targets: bool):
        generators, loaded["lm"] = build_generators(
            config, params, args.base_lm, repeat_seed, has_targets=has_targets, lm=loaded["lm"]
        )
        return generators

    began = time.perf_counter()
    metrics = run_effect(
        train, validation, test, effect, augment_config, seed, fit_predict, make_generators, normalise
    )
    # The duration is logged, not kept in the metrics, so that equal runs write equal metrics.
    seconds = time.perf_counter() - began
    write_json(metrics, args.metrics)
    logger.info(
        "augment_effect: test macro-F1 %.4f without, %.4f with augmentation (delta %+.4f) in %.1f s",
        metrics["test_macro_f1_without_augmentation"],
        metrics["test_macro_f1_with_augmentation"],
        metrics["delta_macro_f1"],
        seconds,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
