import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import baselines, evaluate, train
from stages.core import schema as S
from stages.core.classification import prediction_table, score_predictions
from stages.core.errors import InputDataError
from stages.core.io import write_table
from stages.core.params import ModelConfig


def table(gold, predicted, latency=None):
    frame = pd.DataFrame({S.ROW_ID: [f"r{i}" for i in range(len(gold))], S.LABEL: gold})
    latency = np.array(latency if latency is not None else [np.nan] * len(gold), dtype=float)
    return prediction_table(frame, predicted, latency)


def test_scores_match_hand_computed_values():
    scores = score_predictions(
        table(["a", "a", "b", "b"], ["a", "b", "b", "b"], [1, 2, 3, np.nan]), ["a", "b"]
    )
    assert scores["accuracy"] == 0.75
    assert scores["per_class_f1"]["a"] == pytest.approx(2 / 3)
    assert scores["per_class_f1"]["b"] == pytest.approx(0.8)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores["confusion"] == [[1, 1], [0, 2]]
    assert scores["latency_ms_p50"] == 2.0


def test_predictions_must_cover_the_test_rows(tmp_path: Path):
    test = pd.DataFrame({S.ROW_ID: ["r0", "r1"], S.LABEL: ["a", "b"], S.TEXT: ["x", "y"]})
    write_table(table(["a"], ["a"]), tmp_path / "majority.parquet")
    with pytest.raises(InputDataError, match=r"majority\.parquet.*same test rows"):
        evaluate.collect_predictions(tmp_path, table(["a", "b"], ["a", "b"]), test)


def test_evaluate_scores_every_model_and_logs_mlflow_run(
    small_splits, tiny_encoder: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name, frame in small_splits.items():
        write_table(frame, tmp_path / f"{name}.parquet")

    model_config = ModelConfig(name=str(tiny_encoder))
    config = train.TrainConfig(
        epochs=1, batch_size=16, threads=1, max_length=32, lora={"r": 4, "target_modules": ["query"]}
    )
    model, tokenizer, labels, _, info = train.train_classifier(
        small_splits["train"], small_splits["validation"], config, model_config, seed=0
    )
    train.save_adapter_folder(model, tokenizer, labels, info, tmp_path / "adapter")

    models = baselines.fit_baselines(small_splits["train"], baselines.BaselinesConfig(), seed=0)
    (tmp_path / "baselines").mkdir()
    for name, predictions in baselines.predict_baselines(
        models, small_splits["test"], latency_rows=4, seed=0
    ).items():
        write_table(predictions, tmp_path / "baselines" / f"{name}.parquet")

    params = {
        "seed": 0,
        "model": {"name": str(tiny_encoder)},
        "evaluate": {
            "latency_rows": 4,
            "max_length": 32,
            "experiment": "test-experiment",
            "data_inputs": ["test.parquet"],
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    evaluate.main(
        [
            "--adapter", "adapter",
            "--test", "test.parquet",
            "--baselines", "baselines",
            "--predictions", "adapter_predictions.parquet",
            "--metrics", "metrics/evaluate.json",
            "--per-class", "metrics/per_class.json",
            "--plots-dir", "plots",
        ]
    )  # fmt: skip

    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert sorted(metrics["models"]) == ["adapter", "majority", "tfidf"]
    for scores in metrics["models"].values():
        assert scores["rows"] == len(small_splits["test"])
        assert {"accuracy", "macro_f1", "latency_ms_p50", "latency_ms_p95"} <= set(scores)
    confusion = pd.read_csv(tmp_path / "plots" / "confusion_adapter.csv")
    assert len(confusion) == len(small_splits["test"])

    import mlflow

    runs = mlflow.search_runs(experiment_names=["test-experiment"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["tags.git_dirty"] in ("true", "false")
    assert "tags.git_commit" in run
    assert len(run["tags.data.test.parquet"]) == 32
    assert run["tags.data_version"]
    assert run["metrics.models.adapter.accuracy"] == pytest.approx(metrics["models"]["adapter"]["accuracy"])
    artifacts = mlflow.artifacts.list_artifacts(run_id=run["run_id"], artifact_path="adapter")
    assert any(item.path.endswith("adapter_model.safetensors") for item in artifacts)


def test_evaluate_rejects_a_folder_without_adapter(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    (tmp_path / "adapter").mkdir()
    with pytest.raises(InputDataError, match=r"adapter: no adapter_config\.json"):
        evaluate.main(
            ["--adapter", "adapter", "--test", "t.parquet", "--baselines", "b", "--predictions", "p.parquet",
             "--metrics", "m.json", "--per-class", "c.json", "--plots-dir", "plots"]
        )  # fmt: skip
