"""Tests of the train_lm stage: LoRA training on (input, target) pairs, checkpoints and the saved adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from e2e_rows import build_e2e_lm, e2e_frame
from peft import PeftModel

from stages import train_lm
from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import write_table
from stages.core.local_lm import load_lm
from stages.core.params import parse_value
from stages.generation.config import PromptConfig, TrainConfig
from stages.generation.prompts import collate_training
from stages.generation.training import add_lora, build_examples, mean_target_loss, train_adapter
from stages.training import loop

torch.set_num_threads(1)

TRAIN_PARAMS = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "learning_rate": 0.01,
    "warmup_steps": 0,
    "epochs": 2,
    "batch_size": 4,
    "max_length": 96,
    "max_train_rows": 24,
    "max_validation_rows": 8,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "train": e2e_frame("devset.csv", 4, "train"),
        "validation": e2e_frame("devset.csv", 2, "validation", skip_inputs=4),
        "test": e2e_frame("testset_w_refs.csv", 3, "test"),
    }


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory, frames) -> Path:
    return build_e2e_lm(tmp_path_factory.mktemp("lm") / "tiny", list(frames.values()))


def write_inputs(
    folder: Path, frames: dict[str, pd.DataFrame], lm_folder: Path, train=None, **sections
) -> dict:
    """Write the split tables and a params file; returns the stage's command-line paths."""
    for name, frame in frames.items():
        write_table(frame, folder / f"{name}.parquet")
    params = {
        "seed": 7,
        "task": {"type": "generation"},
        "lm": {"name": str(lm_folder)},
        "train_lm": {**TRAIN_PARAMS, **(train or {})},
        **sections,
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return {
        "params": folder / "params.yaml",
        "train": folder / "train.parquet",
        "validation": folder / "validation.parquet",
        "out": folder / "adapter",
        "checkpoints": folder / "checkpoints",
        "metrics": folder / "train.json",
        "curve": folder / "curve.csv",
    }


def run_train(paths: dict) -> None:
    train_lm.main([f"--{name.replace('_', '-')}={value}" for name, value in paths.items()])


def test_training_lowers_validation_loss(frames, lm_folder):
    lm = load_lm(lm_folder, device="cpu")
    config = parse_value(TRAIN_PARAMS, "train_lm", TrainConfig)
    prompt = PromptConfig()
    train = build_examples(lm.tokenizer, prompt, frames["train"], config.max_length, "train")
    validation = build_examples(lm.tokenizer, prompt, frames["validation"], config.max_length, "validation")
    torch.manual_seed(0)
    model = add_lora(lm.model, config.lora)
    before = mean_target_loss(model, validation, lm.tokenizer.pad_token_id, 4, torch.device("cpu"))
    result = train_adapter(
        model, train, validation, config, 7, lm.tokenizer.pad_token_id, torch.device("cpu")
    )
    after = mean_target_loss(model, validation, lm.tokenizer.pad_token_id, 4, torch.device("cpu"))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert after < before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_stage_saves_loadable_peft_adapter(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder)
    run_train(paths)

    adapter = paths["out"]
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["train_rows"] == 24
    assert metrics["epochs"] == 2
    assert metrics["resumed_from_epoch"] == 0
    curve = pd.read_csv(paths["curve"])
    assert list(curve.columns) == ["epoch", "train_loss", "validation_loss", "learning_rate"]
    assert list(curve["epoch"]) == [1, 2]

    base = load_lm(lm_folder, device="cpu")
    model = PeftModel.from_pretrained(base.model, str(adapter))
    lora_weights = [param for name, param in model.named_parameters() if "lora_B" in name]
    assert lora_weights
    assert any(float(param.abs().sum()) > 0 for param in lora_weights)


def test_rerun_resumes_from_last_checkpoint(tmp_path, frames, lm_folder, monkeypatch):
    paths = write_inputs(tmp_path, frames, lm_folder)
    run_train(paths)
    first = (paths["out"] / "adapter_model.safetensors").read_bytes()
    assert (paths["checkpoints"] / loop.META_FILE).is_file()
    assert json.loads((paths["checkpoints"] / loop.META_FILE).read_text())["epoch"] == 2

    calls = []
    monkeypatch.setattr(
        "stages.generation.training.collate_training",
        lambda *args: calls.append(1) or collate_training(*args),
    )
    run_train(paths)
    # Both epochs are in the checkpoint, so the rerun builds no training or validation batch.
    assert calls == []
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["resumed_from_epoch"] == 2
    assert (paths["out"] / "adapter_model.safetensors").read_bytes() == first


def test_interrupted_training_resumes_after_finished_epoch(tmp_path, frames, lm_folder, monkeypatch):
    paths = write_inputs(tmp_path, frames, lm_folder)
    real_write = loop.write_checkpoint

    def write_then_stop(folder, fingerprint, epoch, result, model, optimizer, scheduler):
        real_write(folder, fingerprint, epoch, result, model, optimizer, scheduler)
        raise KeyboardInterrupt

    monkeypatch.setattr("stages.generation.training.write_checkpoint", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_train(paths)
    assert not paths["out"].exists()
    assert json.loads((paths["checkpoints"] / loop.META_FILE).read_text())["epoch"] == 1

    monkeypatch.setattr("stages.generation.training.write_checkpoint", real_write)
    run_train(paths)
    resumed = json.loads(paths["metrics"].read_text())
    assert resumed["resumed_from_epoch"] == 1

    fresh = write_inputs(tmp_path / "fresh", frames, lm_folder)
    run_train(fresh)
    resumed_curve = pd.read_csv(paths["curve"])
    fresh_curve = pd.read_csv(fresh["curve"])
    assert resumed_curve["train_loss"].tolist() == pytest.approx(fresh_curve["train_loss"].tolist(), rel=1e-4)


def test_checkpoint_of_other_params_is_ignored(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder)
    run_train(paths)
    write_inputs(tmp_path, frames, lm_folder, train={"learning_rate": 0.005})
    run_train(paths)
    assert json.loads(paths["metrics"].read_text())["resumed_from_epoch"] == 0


def test_classification_task_is_rejected(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder, task={"type": "classification"})
    with pytest.raises(ParamsError, match=r"`task.type` must be `generation`.*docs/generation.md"):
        run_train(paths)


def test_rows_without_target_name_the_field(tmp_path, frames, lm_folder):
    broken = dict(frames)
    broken["train"] = frames["train"].copy()
    broken["train"].loc[3, "target"] = pd.NA
    paths = write_inputs(tmp_path, broken, lm_folder)
    with pytest.raises(
        InputDataError, match=r"train.parquet, row 4, field `target`: 1 train rows have no `target`"
    ):
        run_train(paths)


def test_prompt_longer_than_max_length_raises(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder, train={"max_length": 10})
    with pytest.raises(InputDataError, match=r"leaves no room for the target.*Raise `train_lm.max_length`"):
        run_train(paths)


def test_unknown_target_module_names_the_key(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder, train={"lora": {"target_modules": ["query"]}})
    with pytest.raises(
        InputDataError, match=r"train_lm.lora.target_modules: PEFT cannot place LoRA on \['query'\]"
    ):
        run_train(paths)


@pytest.mark.parametrize(
    ("settings", "pattern"),
    [
        ({"epochs": 0}, r"`train_lm.epochs` is invalid"),
        ({"lora": {"r": 0}}, r"`train_lm.lora.r` is invalid"),
        ({"mixed_precision": "fp8"}, r"`train_lm.mixed_precision` is invalid"),
        ({"learning_rat": 0.1}, r"`train_lm.learning_rat` is not a known key"),
    ],
)
def test_bad_train_params_name_the_key(tmp_path, frames, lm_folder, settings, pattern):
    paths = write_inputs(tmp_path, frames, lm_folder, train=settings)
    with pytest.raises(ParamsError, match=pattern):
        run_train(paths)


def with_coverage(frame: pd.DataFrame, values: list[float]) -> pd.DataFrame:
    return frame.assign(**{S.INPUT_COVERAGE: (values * len(frame))[: len(frame)]})


def test_min_input_coverage_trains_on_covered_rows(tmp_path, frames, lm_folder):
    tables = dict(frames)
    tables["train"] = with_coverage(frames["train"], [1.0, 0.5, float("nan")])
    tables["validation"] = with_coverage(frames["validation"], [1.0, 0.25])
    paths = write_inputs(tmp_path, tables, lm_folder, train={"min_input_coverage": 1.0, "epochs": 1})
    run_train(paths)
    metrics = json.loads(paths["metrics"].read_text())
    # Rows with full coverage and rows without values (NaN) are kept.
    covered_rows = int((tables["train"][S.INPUT_COVERAGE] != 0.5).sum())
    assert metrics["train_split_rows"] == len(frames["train"])
    assert metrics["train_rows_covered"] == covered_rows
    assert metrics["train_rows"] == min(covered_rows, TRAIN_PARAMS["max_train_rows"])
    assert metrics["validation_rows"] == min(
        int((tables["validation"][S.INPUT_COVERAGE] == 1.0).sum()), TRAIN_PARAMS["max_validation_rows"]
    )


def test_coverage_without_column_names_setting(tmp_path, frames, lm_folder):
    paths = write_inputs(tmp_path, frames, lm_folder, train={"min_input_coverage": 0.9})
    with pytest.raises(InputDataError, match="input_coverage") as raised:
        run_train(paths)
    assert "curate.coverage.enabled" in str(raised.value)
