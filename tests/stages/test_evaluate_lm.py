"""Tests of the evaluate_lm stage: every system scored on one input selection, forgetting gate, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from e2e_rows import WIKITEXT, build_e2e_lm, e2e_frame
from safetensors.torch import load_file, save_file

from stages import baselines_lm, evaluate_lm, train_lm
from stages.core import schema as S
from stages.core.errors import GateError, InputDataError
from stages.core.io import read_table, write_table
from stages.generation.forgetting import read_general_text

torch.set_num_threads(1)

SYSTEMS = {"adapter", "few_shot", "template", "zero_shot"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """Splits, a tiny model, params, a trained adapter and baseline outputs, built once."""
    folder = tmp_path_factory.mktemp("evaluate")
    frames = {
        "train": e2e_frame("devset.csv", 4, "train"),
        "validation": e2e_frame("devset.csv", 2, "validation", skip_inputs=4),
        "test": e2e_frame("testset_w_refs.csv", 3, "test"),
    }
    for name, frame in frames.items():
        write_table(frame, folder / f"{name}.parquet")
    general = " ".join(read_general_text(WIKITEXT)[:30])
    lm_folder = build_e2e_lm(folder / "tiny", list(frames.values()), extra_text=general)
    paths = {name: folder / f"{name}.parquet" for name in frames}
    paths.update(folder=folder, lm=lm_folder, adapter=folder / "adapter", baselines=folder / "baselines")
    write_params(paths)
    train_lm.main(
        [
            f"--params={folder / 'params.yaml'}",
            f"--train={paths['train']}",
            f"--validation={paths['validation']}",
            f"--out={paths['adapter']}",
            f"--checkpoints={folder / 'checkpoints'}",
            f"--metrics={folder / 'train.json'}",
            f"--curve={folder / 'curve.csv'}",
        ]
    )
    run_baselines(paths)
    return paths


def write_params(paths: dict, **evaluate) -> None:
    params = {
        "seed": 5,
        "task": {"type": "generation"},
        "lm": {"name": str(paths["lm"])},
        "generation": {
            "test_inputs": 2,
            "max_new_tokens": 6,
            "batch_size": 2,
            "latency_inputs": 1,
            "device": "cpu",
        },
        "baselines_lm": {"few_shot_examples": 1},
        "train_lm": {
            "lora": {"r": 4, "alpha": 8},
            "epochs": 1,
            "batch_size": 4,
            "max_length": 96,
            "device": "cpu",
        },
        "evaluate_lm": {
            "forgetting": {
                "max_lines": 6,
                "max_tokens": 400,
                "max_length": 48,
                "max_relative_increase": 10.0,
            },
            "log_to_mlflow": False,
            **evaluate,
        },
    }
    (paths["folder"] / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def run_baselines(paths: dict) -> None:
    baselines_lm.main(
        [
            f"--params={paths['folder'] / 'params.yaml'}",
            f"--train={paths['train']}",
            f"--test={paths['test']}",
            f"--out-dir={paths['baselines']}",
            f"--metrics={paths['folder'] / 'baselines.json'}",
        ]
    )


def run_evaluate(paths: dict, adapter: Path | None = None) -> dict:
    folder = paths["folder"]
    evaluate_lm.main(
        [
            f"--params={folder / 'params.yaml'}",
            f"--adapter={adapter or paths['adapter']}",
            f"--test={paths['test']}",
            f"--baselines={paths['baselines']}",
            f"--general-text={WIKITEXT}",
            f"--predictions={folder / 'adapter_predictions.parquet'}",
            f"--metrics={folder / 'evaluate.json'}",
            f"--plot={folder / 'scores.csv'}",
        ]
    )
    return json.loads((folder / "evaluate.json").read_text())


def test_all_systems_scored_on_same_inputs(workspace):
    write_params(workspace)
    metrics = run_evaluate(workspace)
    assert metrics["test_inputs"] == 2
    assert set(metrics["systems"]) == SYSTEMS
    for scores in metrics["systems"].values():
        assert scores["inputs"] == 2
        for key in ("bleu", "chrf", "rouge_l"):
            assert 0 <= scores[key] <= 100
    assert metrics["systems"]["adapter"]["generated_tokens_per_second"] > 0
    predictions = read_table(workspace["folder"] / "adapter_predictions.parquet")
    template = read_table(workspace["baselines"] / "template.parquet")
    assert predictions[S.TEXT].tolist() == template[S.TEXT].tolist()
    plot = pd.read_csv(workspace["folder"] / "scores.csv")
    assert set(plot["system"]) == SYSTEMS
    assert set(plot["metric"]) == {"bleu", "chrf", "rouge_l"}


def test_references_counted_per_input(workspace):
    write_params(workspace)
    metrics = run_evaluate(workspace)
    test = read_table(workspace["test"])
    chosen = read_table(workspace["baselines"] / "template.parquet")[S.TEXT]
    assert metrics["references"] == int(test[S.TEXT].isin(chosen).sum())


def test_forgetting_reported_for_base_and_adapter(workspace):
    write_params(workspace)
    forgetting = run_evaluate(workspace)["forgetting"]
    assert forgetting["lines"] >= 1
    assert forgetting["tokens"] > 0
    assert forgetting["base_perplexity"] > 1
    assert forgetting["adapter_perplexity"] > 1
    expected = forgetting["adapter_perplexity"] / forgetting["base_perplexity"] - 1
    assert forgetting["relative_increase"] == pytest.approx(expected, abs=1e-4)


def test_forgetting_gate_fails_after_writing_metrics(workspace, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for file in workspace["adapter"].iterdir():
        (damaged / file.name).write_bytes(file.read_bytes())
    weights = load_file(damaged / "adapter_model.safetensors")
    generator = torch.Generator().manual_seed(0)
    noisy = {name: torch.randn(value.shape, generator=generator) * 3.0 for name, value in weights.items()}
    save_file(noisy, damaged / "adapter_model.safetensors")
    write_params(
        workspace,
        forgetting={"max_lines": 6, "max_tokens": 400, "max_length": 48, "max_relative_increase": 0.05},
    )
    (workspace["folder"] / "evaluate.json").unlink(missing_ok=True)

    with pytest.raises(GateError, match=r"gate `forgetting` failed"):
        run_evaluate(workspace, adapter=damaged)
    metrics = json.loads((workspace["folder"] / "evaluate.json").read_text())
    assert metrics["forgetting"]["relative_increase"] > 0.05


def test_baselines_of_other_selection_raise(workspace, tmp_path):
    write_params(workspace)
    stale = tmp_path / "stale"
    stale.mkdir()
    table = read_table(workspace["baselines"] / "template.parquet")
    write_table(table.iloc[:1], stale / "template.parquet")
    paths = {**workspace, "baselines": stale}
    with pytest.raises(
        InputDataError, match=r"predictions of `template`: the inputs differ.*Rerun the baselines stage"
    ):
        run_evaluate(paths)


def test_missing_adapter_names_the_stage(workspace, tmp_path):
    write_params(workspace)
    with pytest.raises(InputDataError, match=r"not a PEFT adapter folder. Run the train_lm stage first"):
        run_evaluate(workspace, adapter=tmp_path)


@pytest.mark.slow
def test_run_logged_to_mlflow_with_data_hashes(workspace, monkeypatch, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data_inputs = [str(workspace["train"]), str(workspace["test"])]
    write_params(workspace, log_to_mlflow=True, experiment="e2e-test", data_inputs=data_inputs)
    metrics = run_evaluate(workspace)

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["e2e-test"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["task"] == "generation"
    assert run.data.tags["git_dirty"] in {"true", "false"}
    assert len(run.data.tags["git_commit"]) in {7, 40} or run.data.tags["git_commit"] == "unknown"
    for path in data_inputs:
        assert len(run.data.tags[f"data.{path}"]) == 32
    assert run.data.metrics["systems.adapter.bleu"] == pytest.approx(metrics["systems"]["adapter"]["bleu"])
    assert run.data.metrics["forgetting.relative_increase"] == pytest.approx(
        metrics["forgetting"]["relative_increase"]
    )
    assert run.data.params["generation.max_new_tokens"] == "6"
