from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from split_data import banking_rows, e2e_rows, with_timestamps

from stages import split as stage
from stages.core import schema as S
from stages.core.cli import run_stage
from stages.core.errors import GateError, ParamsError
from stages.core.io import read_table, write_table

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE = REPO_ROOT / "expectations" / "splits.json"


@pytest.fixture(scope="module")
def banking() -> pd.DataFrame:
    frame = banking_rows(train_rows=1200, test_rows=400, seed=5)
    frame["near_dup_cluster"] = pd.Series(range(len(frame)), dtype="int64")
    return frame


def _write_inputs(
    tmp_path: Path, frame: pd.DataFrame, split: dict[str, Any], task: str = "classification"
) -> list[str]:
    rows = tmp_path / "rows.parquet"
    write_table(frame, rows)
    params = {
        "seed": 42,
        "task": {"type": task},
        "split": split,
        "baselines": {"tfidf": {"ngram_range": [1, 2], "min_df": 1, "max_features": 50000, "C": 10.0}},
    }
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    return [
        "--params",
        str(params_file),
        "--rows",
        str(rows),
        "--out-dir",
        str(tmp_path / "split"),
        "--metrics",
        str(tmp_path / "metrics" / "split.json"),
        "--suite",
        str(SUITE),
    ]


def _metrics(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "metrics" / "split.json").read_text(encoding="utf-8"))


def test_predefined_writes_folder_and_metrics(tmp_path, banking):
    stage.main(_write_inputs(tmp_path, banking, {"strategy": "predefined", "stability": {"enabled": False}}))

    folder = tmp_path / "split"
    assert sorted(path.name for path in folder.iterdir()) == [
        "quarantine.parquet",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    tables = {name: read_table(folder / f"{name}.parquet") for name in S.SPLIT_NAMES}
    for name, table in tables.items():
        assert list(table.columns) == list(banking.columns)
        assert (table[S.SPLIT] == name).all()
    metrics = _metrics(tmp_path)
    assert metrics["rows_in"] == len(banking)
    assert metrics["rows_in"] == sum(len(table) for table in tables.values()) + metrics["rows_quarantined"]
    assert metrics["sizes"] == {name: len(table) for name, table in tables.items()}
    assert metrics["leakage"]["passed"]
    assert set(metrics["leakage"]["pairs"]) == {"train_vs_validation", "train_vs_test", "validation_vs_test"}
    assert metrics["per_class"]["test"]["card_arrival"] == int(
        ((banking[S.SPLIT] == "test") & (banking[S.LABEL] == "card_arrival")).sum()
    )
    assert metrics["expectations"]["success"]


def test_extra_columns_pass_through(tmp_path, banking):
    stage.main(_write_inputs(tmp_path, banking, {"strategy": "holdout", "stability": {"enabled": False}}))

    train = read_table(tmp_path / "split" / "train.parquet")
    assert train["near_dup_cluster"].dtype == "int64"
    assert set(train[S.ROW_ID]) <= set(banking[S.ROW_ID])


def test_kfold_writes_folds_table(tmp_path, banking):
    split = {
        "strategy": "kfold",
        "kfold": {"folds": 4, "validation_fold": 1},
        "stability": {"enabled": False},
    }

    stage.main(_write_inputs(tmp_path, banking, split))

    folder = tmp_path / "split"
    folds = read_table(folder / "folds.parquet")
    validation = read_table(folder / "validation.parquet")
    test = read_table(folder / "test.parquet")
    # Classes with fewer rows than folds are in train for every fold (fold -1).
    assert set(folds["fold"].unique()) == {-1, 0, 1, 2, 3}
    assert set(folds.loc[folds["fold"] == -1, S.LABEL]) == set(
        _metrics(tmp_path)["strategy_details"]["fold_assignment"]["rare_classes"]
    )
    assert (validation["fold"] == 1).all()
    assert test["fold"].isna().all()
    assert len(folds) == (banking[S.SPLIT] == "train").sum()
    metrics = _metrics(tmp_path)
    assert metrics["strategy_details"]["train_adapter_per_fold"] is False
    assert set(metrics["per_fold_class"]) == {"-1", "0", "1", "2", "3"}


def test_strategy_change_removes_stale_folds(tmp_path, banking):
    stage.main(_write_inputs(tmp_path, banking, {"strategy": "kfold", "stability": {"enabled": False}}))
    assert (tmp_path / "split" / "folds.parquet").exists()

    stage.main(_write_inputs(tmp_path, banking, {"strategy": "holdout", "stability": {"enabled": False}}))

    assert not (tmp_path / "split" / "folds.parquet").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".split.")]


@pytest.mark.parametrize("strategy", ["predefined", "holdout", "stratified", "kfold", "temporal"])
def test_same_seed_byte_identical(tmp_path, banking, strategy):
    frame = with_timestamps(banking, seed=1)
    split = {"strategy": strategy, "stability": {"enabled": False}}
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    stage.main(_write_inputs(first, frame, split))
    stage.main(_write_inputs(second, frame, split))

    names = sorted(path.name for path in (first / "split").iterdir())
    for name in names:
        assert (first / "split" / name).read_bytes() == (second / "split" / name).read_bytes(), name
    assert (first / "metrics" / "split.json").read_text() == (second / "metrics" / "split.json").read_text()


def test_temporal_quarantine_table(tmp_path, banking):
    frame = with_timestamps(banking, seed=1, bad=4, missing=2)

    stage.main(
        _write_inputs(
            tmp_path, frame, {"strategy": "temporal", "group_by": "none", "stability": {"enabled": False}}
        )
    )

    quarantine = read_table(tmp_path / "split" / "quarantine.parquet")
    assert quarantine["quarantine_reason"].value_counts().to_dict() == {
        "unparseable_timestamp": 4,
        "missing_timestamp": 2,
    }
    assert (quarantine["quarantine_stage"] == "split").all()
    metrics = _metrics(tmp_path)
    assert metrics["leakage"]["pairs"]["train_vs_test"]["time_order"]["rows"] == 0


def test_leakage_gate_fails_stage(tmp_path, banking, capsys):
    frame = banking.copy()
    test_rows = frame.index[frame[S.SPLIT] == "test"][:3]
    train_rows = frame.index[frame[S.SPLIT] == "train"][:3]
    frame.loc[test_rows, S.TEXT] = frame.loc[train_rows, S.TEXT].str.upper().to_numpy()
    argv = _write_inputs(tmp_path, frame, {"strategy": "predefined"})

    with pytest.raises(GateError, match=r"train_vs_test: exact leakage on 3 rows"):
        stage.main(argv)
    assert run_stage(stage.main, argv) == 2

    assert "gate `split_leakage` failed" in capsys.readouterr().err
    metrics = _metrics(tmp_path)
    assert not metrics["leakage"]["passed"]
    assert metrics["leakage"]["pairs"]["train_vs_test"]["exact"]["rows"] == 3
    assert not (tmp_path / "split").exists()


def test_e2e_groups_stay_whole(tmp_path):
    frame = e2e_rows(limit=1200)

    stage.main(_write_inputs(tmp_path, frame, {"strategy": "holdout"}, task="generation"))

    tables = {name: read_table(tmp_path / "split" / f"{name}.parquet") for name in S.SPLIT_NAMES}
    owners = pd.concat([table.assign(part=name) for name, table in tables.items()])
    assert (owners.groupby(S.GROUP)["part"].nunique() == 1).all()
    metrics = _metrics(tmp_path)
    assert metrics["leakage"]["pairs"]["train_vs_test"]["group"]["rows"] == 0
    assert metrics["stability"]["skipped"].startswith("the TF-IDF baseline needs class labels")
    assert "per_class" not in metrics


def test_bad_params_name_key(tmp_path, banking):
    argv = _write_inputs(tmp_path, banking, {"ratios": {"train": 0.7, "validation": 0.1, "test": 0.1}})

    with pytest.raises(
        ParamsError, match=r"`split.ratios` is invalid \(train \+ validation \+ test must sum to 1, but 0.7"
    ):
        stage.main(argv)


def test_stability_metrics_written(tmp_path, banking):
    split = {"strategy": "stratified", "stability": {"seeds": 2, "bootstrap": 50, "n_jobs": 1}}

    stage.main(_write_inputs(tmp_path, banking, split))

    stability = _metrics(tmp_path)["stability"]
    assert stability["method"] == "resplits"
    assert set(stability["test_macro_f1"]) == {"mean", "std", "min", "max", "n"}
    assert stability["bootstrap"]["test_accuracy"]["ci95"][0] <= stability["runs"][0]["test_accuracy"]
