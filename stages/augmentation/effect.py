"""Measuring what augmentation buys in a low-resource setting: train with and without it, score on test."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from stages.augmentation.config import AugmentConfig, EffectConfig
from stages.augmentation.pipeline import AugmentResult, Generators, augment_train
from stages.baselines import TfidfConfig, build_tfidf_classifier
from stages.core import schema as S
from stages.core.params import parse_value

logger = logging.getLogger(__name__)

# Trains on a table and returns one predicted label per text of the test table.
FitPredict = Callable[[pd.DataFrame, pd.DataFrame], list[str]]


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with `overrides` merged key by key (nested mappings merge, other values replace)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def effect_augment_config(params: dict[str, Any], effect: EffectConfig) -> AugmentConfig:
    """Return the `augment` config with `augment_effect.augment` merged over it, validated."""
    raw = merge_overrides(params.get("augment") or {}, effect.augment)
    return parse_value(raw, "augment_effect.augment (merged over augment)", AugmentConfig)


def sample_shots(train: pd.DataFrame, shots: int, seed: int) -> pd.DataFrame:
    """Keep `shots` seeded random rows per class (all rows of a smaller class), in table order."""
    train = train.reset_index(drop=True)
    generator = np.random.default_rng(seed)
    shuffled = train.iloc[generator.permutation(len(train))]
    kept = shuffled.groupby(shuffled[S.LABEL].astype(str), sort=False).head(shots)
    return train.loc[np.sort(kept.index.to_numpy())].reset_index(drop=True)


def tfidf_fit_predict(config: TfidfConfig, seed: int) -> FitPredict:
    """Return a TF-IDF + logistic regression trainer with the baseline's settings."""

    def run(train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
        model = build_tfidf_classifier(config, seed)
        model.fit(train[S.TEXT].astype(str).tolist(), train[S.LABEL].astype(str).tolist())
        return [str(label) for label in model.predict(test[S.TEXT].astype(str).tolist())]

    return run


def score(test: pd.DataFrame, predictions: list[str]) -> dict[str, float]:
    gold = test[S.LABEL].astype(str).to_numpy()
    labels = sorted(set(gold))
    return {
        "accuracy": round(float(accuracy_score(gold, predictions)), 6),
        "macro_f1": round(
            float(f1_score(gold, predictions, labels=labels, average="macro", zero_division=0)), 6
        ),
    }


def run_effect(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    effect: EffectConfig,
    augment_config: AugmentConfig,
    seed: int,
    fit_predict: FitPredict,
    make_generators: Callable[[AugmentConfig, int, bool], Generators],
    normalise: Callable[[pd.Series], pd.Series],
) -> dict[str, Any]:
    """Score classifiers trained with and without augmentation on `shots_per_class` rows per class.

    Both classifiers are scored on the full test split. Each repeat draws its own subset
    (seed + repeat). The augmentation sees only the subset as train, plus validation and test for
    its duplicate checks, as it would in a low-resource project.
    """
    repeats = []
    for repeat in range(effect.repeats):
        repeat_seed = seed + repeat
        subset = sample_shots(train, effect.shots_per_class, repeat_seed)
        generators = make_generators(augment_config, repeat_seed, True)
        result: AugmentResult = augment_train(
            subset,
            {"validation": validation, "test": test},
            augment_config,
            repeat_seed,
            generators,
            normalise,
        )
        without = score(test, fit_predict(subset, test))
        with_augmentation = score(test, fit_predict(result.train, test))
        repeats.append(
            {
                "seed": repeat_seed,
                "real_rows": len(subset),
                "added_rows": len(result.new_rows),
                "added_by_method": {
                    method: stats["accepted"] for method, stats in result.metrics["methods"].items()
                },
                "rejected_by_reason": result.metrics["rejected_by_reason"],
                "tokens_per_second": result.metrics["tokens_per_second"],
                "without_augmentation": without,
                "with_augmentation": with_augmentation,
            }
        )
        logger.info(
            "repeat %d: %d real rows, %d added; test accuracy %.4f -> %.4f, macro-F1 %.4f -> %.4f",
            repeat,
            len(subset),
            len(result.new_rows),
            without["accuracy"],
            with_augmentation["accuracy"],
            without["macro_f1"],
            with_augmentation["macro_f1"],
        )
    return summarise_effect(repeats, effect)


def summarise_effect(repeats: list[dict[str, Any]], effect: EffectConfig) -> dict[str, Any]:
    """Average the scores over repeats and report the differences (augmented minus real only)."""
    summary: dict[str, Any] = {
        "model": effect.model,
        "shots_per_class": effect.shots_per_class,
        "repeats": len(repeats),
        "added_rows_mean": round(float(np.mean([item["added_rows"] for item in repeats])), 2),
    }
    for metric in ("accuracy", "macro_f1"):
        without = np.array([item["without_augmentation"][metric] for item in repeats])
        with_augmentation = np.array([item["with_augmentation"][metric] for item in repeats])
        delta = with_augmentation - without
        summary[f"test_{metric}_without_augmentation"] = round(float(without.mean()), 6)
        summary[f"test_{metric}_with_augmentation"] = round(float(with_augmentation.mean()), 6)
        summary[f"delta_{metric}"] = round(float(delta.mean()), 6)
        if len(repeats) > 1:
            summary[f"delta_{metric}_std"] = round(float(delta.std(ddof=1)), 6)
    summary["per_repeat"] = repeats
    return summary
