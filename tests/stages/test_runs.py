from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages import runs
from stages.core.errors import InputDataError
from stages.core.tracking import log_evaluation_run


def scores(adapter: float, tfidf: float) -> dict:
    return {
        "models": {
            "adapter": {"accuracy": adapter + 0.01, "macro_f1": adapter},
            "tfidf": {"accuracy": tfidf + 0.01, "macro_f1": tfidf},
            "majority": {"accuracy": 0.05, "macro_f1": 0.001},
        }
    }


@pytest.fixture(scope="module")
def store_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite MLflow store with two evaluation runs on two data versions, and a params file."""
    folder = tmp_path_factory.mktemp("runs-store")
    (folder / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"experiment": "intents"}}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        for version, (adapter, tfidf) in enumerate([(0.81, 0.74), (0.86, 0.75)]):
            (folder / "rows.parquet").write_text(f"data version {version}")
            log_evaluation_run(
                root=folder,
                experiment="intents",
                run_name=f"evaluate-{version}",
                params={"seed": version},
                metrics=scores(adapter, tfidf),
                data_inputs=["rows.parquet"],
            )
    return folder


@pytest.fixture
def store(store_folder: Path, monkeypatch) -> Path:
    monkeypatch.chdir(store_folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_folder / 'mlflow.db'}")
    return store_folder


def test_runs_prints_every_model_per_run(store: Path, capsys):
    runs.main([])

    lines = capsys.readouterr().out.splitlines()
    assert "macro_f1 per model in the 2 newest evaluation runs of experiment 'intents'" in lines[0]
    header = lines[1].split()
    assert header == ["commit", "data_version", "started_utc", "run", "majority", "tfidf", "adapter"]
    newest, oldest = lines[3], lines[4]
    assert newest.split()[-3:] == ["0.0010", "0.7500", "0.8600"]
    assert oldest.split()[-3:] == ["0.0010", "0.7400", "0.8100"]
    assert "evaluate-1" in newest
    assert newest.split()[1] != oldest.split()[1]  # two data versions


def test_runs_metric_and_max_rows_options(store: Path, capsys):
    runs.main(["--metric", "accuracy", "--max-rows", "1"])

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[3].split()[-2:] == ["0.7600", "0.8700"]


def test_runs_markdown_table(store: Path, capsys):
    runs.main(["--markdown"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "| commit | data_version | started_utc | run | majority | tfidf | adapter |"
    assert lines[2] == "|---|---|---|---|---:|---:|---:|"
    assert lines[3].endswith("| 0.0010 | 0.7500 | 0.8600 |")


def test_runs_tags_dirty_commits():
    frame = pd.DataFrame(
        {
            "tags.git_commit": ["0123456789abcdef", "fedcba9876543210"],
            "tags.git_dirty": ["true", "false"],
            "tags.data_version": ["aaa", "bbb"],
            "tags.mlflow.runName": ["evaluate-classification", "report"],
            "start_time": pd.to_datetime(["2026-01-02 03:04", "2026-01-01 00:00"], utc=True),
            "metrics.models.adapter.macro_f1": [0.9, None],
        }
    )
    table = runs.runs_table(frame, "macro_f1")

    assert table["commit"].tolist() == ["0123456789+dirty"]  # the run without scores is left out
    assert table["started_utc"].tolist() == ["2026-01-02 03:04"]


def test_runs_unknown_experiment_is_an_error(store: Path):
    with pytest.raises(InputDataError, match=r"no MLflow experiment named 'nope'.*--experiment"):
        runs.main(["--experiment", "nope"])


def test_runs_unknown_metric_is_an_error(store: Path):
    with pytest.raises(InputDataError, match=r"models\.<model>\.f2.*one of: accuracy, macro_f1"):
        runs.main(["--metric", "f2"])


def test_runs_missing_store_is_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(InputDataError, match=r"mlflow\.db: MLflow store not found.*dvc repro"):
        runs.main(["--experiment", "intents"])
    assert not (tmp_path / "mlflow.db").exists()


def test_runs_uri_hides_credentials():
    assert (
        runs.display_uri("postgresql://user:secret@db.example:5432/mlflow")
        == "postgresql://db.example:5432/mlflow"
    )
    assert runs.display_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
