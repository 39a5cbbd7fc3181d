"""Tests of the augment_effect stage: the low-resource comparison with and without augmentation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from augment_data import NORMALISE, PLANTED_ANSWER, build_splits, config, planted_generator

from stages import augment_effect as stage
from stages.augmentation.config import EffectConfig
from stages.augmentation.effect import (
    effect_augment_config,
    merge_overrides,
    run_effect,
    sample_shots,
    tfidf_fit_predict,
)
from stages.augmentation.pipeline import Generators
from stages.baselines import TfidfConfig
from stages.core import schema as S
from stages.core.errors import ParamsError


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return build_splits()


def test_sample_shots_per_class(splits):
    subset = sample_shots(splits["train"], 3, seed=1)
    assert subset[S.LABEL].value_counts().to_dict() == {"card_lost": 3, "top_up": 3, "refund": 3}
    assert set(subset[S.ROW_ID]) <= set(splits["train"][S.ROW_ID])


def test_sample_shots_seeded(splits):
    first = sample_shots(splits["train"], 3, seed=1)
    second = sample_shots(splits["train"], 3, seed=1)
    other = sample_shots(splits["train"], 3, seed=2)
    assert first[S.ROW_ID].tolist() == second[S.ROW_ID].tolist()
    assert first[S.ROW_ID].tolist() != other[S.ROW_ID].tolist()


def test_merge_overrides_nested():
    merged = merge_overrides({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 5}, "e": [1]})
    assert merged == {"a": 1, "b": {"c": 5, "d": 3}, "e": [1]}


def test_effect_overrides_validated():
    effect = EffectConfig(augment={"fewshot": {"k": 0}})
    with pytest.raises(ParamsError, match=r"augment_effect\.augment \(merged over augment\)\.fewshot\.k"):
        effect_augment_config({"augment": {}}, effect)


def test_effect_reports_both_scores(splits):
    effect = EffectConfig(shots_per_class=4, repeats=2)
    cfg = config(target_classes="all")

    def make_generators(_config, _seed, _has_targets):
        return Generators(fewshot=planted_generator(PLANTED_ANSWER), fewshot_model="planted-model")

    metrics = run_effect(
        splits["train"],
        splits["validation"],
        splits["test"],
        effect,
        cfg,
        3,
        tfidf_fit_predict(TfidfConfig(), 3),
        make_generators,
        NORMALISE,
    )
    assert metrics["repeats"] == 2
    assert [item["real_rows"] for item in metrics["per_repeat"]] == [12, 12]
    assert metrics["added_rows_mean"] > 0
    for name in ("accuracy", "macro_f1"):
        without = metrics[f"test_{name}_without_augmentation"]
        with_augmentation = metrics[f"test_{name}_with_augmentation"]
        assert 0 <= without <= 1
        assert 0 <= with_augmentation <= 1
        assert metrics[f"delta_{name}"] == pytest.approx(with_augmentation - without, abs=1e-5)
        assert f"delta_{name}_std" in metrics


def test_disabled_effect_writes_skip(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("augment_effect:\n  enabled: false\n", encoding="utf-8")
    metrics = tmp_path / "effect.json"
    missing = str(tmp_path / "missing.parquet")
    stage.main(
        [
            "--params", str(params),
            "--train", missing,
            "--validation", missing,
            "--test", missing,
            "--base-lm", str(tmp_path),
            "--metrics", str(metrics),
        ]
    )  # fmt: skip
    assert json.loads(metrics.read_text(encoding="utf-8")) == {
        "skipped": True,
        "reason": "augment_effect.enabled is false",
    }


def test_stage_without_generation(splits, tmp_path):
    folder = tmp_path / "split"
    folder.mkdir()
    for name, frame in splits.items():
        frame.to_parquet(folder / f"{name}.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(
        "augment_effect:\n"
        "  shots_per_class: 4\n"
        "  augment:\n"
        "    target_classes: all\n"
        "    fewshot: {enabled: false}\n"
        "    backtranslation: {enabled: false}\n"
        "    filters: {label_check: {min_probability: 0.0}}\n",
        encoding="utf-8",
    )
    metrics_path = tmp_path / "effect.json"
    stage.main(
        [
            "--params", str(params),
            "--train", str(folder / "train.parquet"),
            "--validation", str(folder / "validation.parquet"),
            "--test", str(folder / "test.parquet"),
            "--base-lm", str(tmp_path / "unused"),
            "--metrics", str(metrics_path),
        ]
    )  # fmt: skip
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert metrics["model"] == "tfidf"
    assert metrics["per_repeat"][0]["added_by_method"]["edits"] > 0
    assert isinstance(pd.Series(metrics).get("delta_macro_f1"), float)


def test_lora_trainer_predicts_test_labels(small_splits, tiny_encoder):
    params = {
        "model": {"name": str(tiny_encoder)},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "threads": 1,
            "max_length": 32,
            "warmup_steps": 1,
            "lora": {"r": 4, "target_modules": ["query"]},
        },
    }
    fit_predict = stage.lora_fit_predict(params, small_splits["validation"], seed=0)
    predictions = fit_predict(small_splits["train"], small_splits["test"])
    assert len(predictions) == len(small_splits["test"])
    assert set(predictions) <= set(small_splits["train"][S.LABEL])
