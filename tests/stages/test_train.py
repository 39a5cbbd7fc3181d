from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from stages import train
from stages.core.errors import ParamsError
from stages.core.params import ModelConfig
from stages.training import loop


def tiny_config(**overrides) -> train.TrainConfig:
    settings = {
        "epochs": 2,
        "batch_size": 16,
        "eval_batch_size": 32,
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "max_length": 32,
        "threads": 1,
        "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
    }
    settings.update(overrides)
    return train.TrainConfig(**settings)


def test_training_saves_loadable_peft_adapter(small_splits, tiny_encoder: Path, tmp_path: Path):
    model_config = ModelConfig(name=str(tiny_encoder))
    model, tokenizer, labels, _, info = train.train_classifier(
        small_splits["train"], small_splits["validation"], tiny_config(), model_config, seed=0
    )
    out = tmp_path / "adapter"
    train.save_adapter_folder(model, tokenizer, labels, info, out)

    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=len(labels))
    reloaded = PeftModel.from_pretrained(base, str(out))
    batch = tokenizer(["my card has not arrived"], return_tensors="pt")
    with torch.inference_mode():
        model.eval()
        reloaded.eval()
        expected = model(**batch).logits
        actual = reloaded(**batch).logits
    assert torch.allclose(expected, actual, atol=1e-5)


def test_best_epoch_has_highest_validation_macro_f1(small_splits, tiny_encoder: Path):
    _, _, _, result, _ = train.train_classifier(
        small_splits["train"],
        small_splits["validation"],
        tiny_config(epochs=3),
        ModelConfig(name=str(tiny_encoder)),
        seed=0,
    )
    scores = [row["validation_macro_f1"] for row in result.history]
    assert len(scores) == 3
    assert scores[result.best_epoch - 1] == max(scores)


def test_same_seed_gives_same_adapter(small_splits, tiny_encoder: Path):
    runs = [
        train.train_classifier(
            small_splits["train"],
            small_splits["validation"],
            tiny_config(epochs=1),
            ModelConfig(name=str(tiny_encoder)),
            seed=5,
        )[3]
        for _ in range(2)
    ]
    for name, value in runs[0].best_state.items():
        assert torch.equal(value, runs[1].best_state[name]), name


def test_interrupted_training_resumes_from_checkpoint(
    small_splits, tiny_encoder: Path, tmp_path: Path, monkeypatch
):
    model_config = ModelConfig(name=str(tiny_encoder))
    straight = train.train_classifier(
        small_splits["train"], small_splits["validation"], tiny_config(), model_config, seed=2
    )[3]

    checkpoints = tmp_path / "checkpoints"
    real_evaluate = loop.evaluate_split
    calls = {"count": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_split", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.train_classifier(
            small_splits["train"],
            small_splits["validation"],
            tiny_config(),
            model_config,
            seed=2,
            checkpoint_dir=checkpoints,
        )
    monkeypatch.setattr(loop, "evaluate_split", real_evaluate)

    resumed = train.train_classifier(
        small_splits["train"],
        small_splits["validation"],
        tiny_config(),
        model_config,
        seed=2,
        checkpoint_dir=checkpoints,
    )[3]
    assert resumed.resumed_from_epoch == 1
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for name, value in straight.best_state.items():
        assert torch.allclose(value, resumed.best_state[name], atol=1e-6), name


def test_checkpoint_of_other_data_is_ignored(small_splits, tiny_encoder: Path, tmp_path: Path):
    model_config = ModelConfig(name=str(tiny_encoder))
    checkpoints = tmp_path / "checkpoints"
    train.train_classifier(
        small_splits["train"],
        small_splits["validation"],
        tiny_config(epochs=1),
        model_config,
        seed=2,
        checkpoint_dir=checkpoints,
    )
    fewer_rows = small_splits["train"].iloc[:-4]
    result = train.train_classifier(
        fewer_rows,
        small_splits["validation"],
        tiny_config(epochs=1),
        model_config,
        seed=2,
        checkpoint_dir=checkpoints,
    )[3]
    assert result.resumed_from_epoch == 0


def test_wrong_target_modules_name_the_key(small_splits, tiny_encoder: Path):
    config = tiny_config(lora={"r": 4, "alpha": 8, "target_modules": ["q_proj"]})
    with pytest.raises(ParamsError, match=r"train\.lora\.target_modules"):
        train.train_classifier(
            small_splits["train"],
            small_splits["validation"],
            config,
            ModelConfig(name=str(tiny_encoder)),
            seed=0,
        )


def test_missing_model_names_the_key(small_splits, tmp_path: Path):
    missing = ModelConfig(name=str(tmp_path / "no-such-model"))
    with pytest.raises(ParamsError, match=r"model\.name"):
        train.train_classifier(
            small_splits["train"], small_splits["validation"], tiny_config(), missing, seed=0
        )


@pytest.mark.parametrize(
    ("settings", "pattern"),
    [
        ({"learning_rate": -1}, r"train\.learning_rate"),
        ({"epochs": "three"}, r"train\.epochs"),
        ({"lora": {"r": 0}}, r"train\.lora\.r"),
        ({"batchsize": 8}, r"train\.batchsize.*not a known key"),
    ],
)
def test_bad_train_params_name_the_key(settings, pattern):
    from stages.core.params import parse_section

    with pytest.raises(ParamsError, match=pattern):
        parse_section({"train": settings}, "train", train.TrainConfig)


def test_adapter_per_fold_reports_spread(small_splits, tiny_encoder: Path):
    folds = small_splits["train"].copy()
    folds["fold"] = [index % 2 for index in range(len(folds))]
    folds.loc[folds.index[:2], "fold"] = -1  # rows of too-small classes stay in train for every fold
    summary = train.cross_validate_adapter(
        folds, tiny_config(epochs=1), ModelConfig(name=str(tiny_encoder)), seed=0
    )
    assert summary["folds"] == 2
    assert [row["fold"] for row in summary["per_fold"]] == [0, 1]
    assert 0 <= summary["validation_macro_f1_mean"] <= 1
    assert summary["validation_macro_f1_std"] >= 0


def test_adapter_per_fold_only_with_kfold_param():
    assert not train.adapter_per_fold_requested({"split": {"strategy": "predefined"}})
    assert train.adapter_per_fold_requested(
        {"split": {"strategy": "kfold", "kfold": {"train_adapter_per_fold": True}}}
    )
