"""The curate stage end to end: files written, round trip, determinism, gates and params errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "curation"))
from curation_samples import REPO_ROOT, banking_rows, common_schema, every_other_class, pii_rows

from stages import curate as stage
from stages.core import schema as S
from stages.core.cli import run_stage
from stages.core.errors import GateError, ParamsError
from stages.core.io import read_table, write_table
from stages.curation.config import CurateConfig
from stages.curation.pipeline import curate


def sample_rows() -> pd.DataFrame:
    """Ten real classes, twelve train and five test rows each, plus a few planted problems."""
    classes = every_other_class(10)
    train = banking_rows("train", classes, per_label=12)
    test = banking_rows("test", classes, per_label=5)
    planted = common_schema(
        [
            pii_rows()["text"].iloc[0],
            "",
            test["text"].iloc[0],
            "Ich warte seit zwei Wochen auf meine neue Bankkarte.",
        ],
        [classes[0]] * 4,
        "train",
        range(50001, 50005),
    )
    return pd.concat([train, test, planted], ignore_index=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_table(sample_rows(), tmp_path / "raw" / "rows.parquet")
    return tmp_path


def set_params(workspace: Path, **curate_values) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in curate_values.items():
        section = params["curate"]
        *parents, key = dotted.split("__")
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def arguments(workspace: Path, out: str = "out") -> list[str]:
    folder = workspace / out
    return [
        "--params", str(workspace / "params.yaml"),
        "--rows", str(workspace / "raw" / "rows.parquet"),
        "--out", str(folder / "rows.parquet"),
        "--quarantine", str(folder / "quarantine.parquet"),
        "--metrics", str(folder / "curate.json"),
        "--suite", str(REPO_ROOT / "expectations" / "curated.json"),
        "--raw-suite", str(REPO_ROOT / "expectations" / "raw.json"),
        "--docs-dir", str(folder / "docs"),
        "--label-issues", str(folder / "label_issues.parquet"),
    ]  # fmt: skip


def test_stage_writes_every_output(workspace: Path):
    stage.main(arguments(workspace))
    out = workspace / "out"
    for name in ("rows.parquet", "quarantine.parquet", "label_issues.parquet", "curate.json"):
        assert (out / name).is_file(), name
    assert (out / "docs" / "index.html").is_file()
    assert (out / "docs" / "raw" / "index.html").is_file()
    assert (out / "docs" / "curated" / "index.html").is_file()
    metrics = json.loads((out / "curate.json").read_text(encoding="utf-8"))
    assert metrics["expectations"]["curated"]["success"] is True
    assert metrics["expectations"]["raw"]["success"] is True


def test_metrics_account_for_every_row(workspace: Path):
    stage.main(arguments(workspace))
    out = workspace / "out"
    metrics = json.loads((out / "curate.json").read_text(encoding="utf-8"))
    quarantine = read_table(out / "quarantine.parquet")
    rows = read_table(out / "rows.parquet")
    assert metrics["rows_in"] == len(sample_rows())
    assert metrics["rows_in"] == len(rows) + len(quarantine)
    assert metrics["rows_quarantined"] == len(quarantine)
    assert sum(metrics["quarantine_reasons"].values()) == len(quarantine)
    for reason in ("empty_text", "duplicates_test_row", "language_not_allowed"):
        assert metrics["quarantine_reasons"][reason] == 1, reason
    assert metrics["pii"]["rows_redacted"] == 1


def test_curated_parquet_round_trips(workspace: Path):
    stage.main(arguments(workspace))
    params = yaml.safe_load((workspace / "params.yaml").read_text(encoding="utf-8"))
    config = CurateConfig.model_validate(params["curate"])
    expected = curate(sample_rows(), config, "classification", seed=params["seed"]).rows
    written = read_table(workspace / "out" / "rows.parquet")
    assert list(written.columns) == list(expected.columns)
    assert written.dtypes.astype(str).tolist() == expected.dtypes.astype(str).tolist()
    pd.testing.assert_frame_equal(written, expected)


def test_outputs_are_byte_identical_across_runs(workspace: Path):
    stage.main(arguments(workspace, "first"))
    stage.main(arguments(workspace, "second"))
    for name in ("rows.parquet", "quarantine.parquet", "label_issues.parquet", "curate.json"):
        first = (workspace / "first" / name).read_bytes()
        second = (workspace / "second" / name).read_bytes()
        assert first == second, name


def test_gate_failure_stops_the_stage(workspace: Path):
    set_params(workspace, imbalance__min_rows_per_class=1000)
    with pytest.raises(GateError) as raised:
        stage.main(arguments(workspace))
    message = str(raised.value)
    assert "gate `curated rows` failed" in message
    assert "expect_column_values_to_be_between(column='label_rows', min_value=1000)" in message
    rows_out = len(sample_rows()) - 3
    assert f"{rows_out} of {rows_out} rows unexpected (100.00%)" in message
    assert not (workspace / "out" / "rows.parquet").exists()
    assert (workspace / "out" / "docs" / "curated" / "index.html").is_file()


def test_gate_failure_exits_with_one_line(workspace: Path, capsys):
    set_params(workspace, imbalance__min_rows_per_class=1000)
    assert run_stage(stage.main, arguments(workspace)) == 2
    assert "\nerror: gate `curated rows` failed:\n" in capsys.readouterr().err


def test_raw_suite_rejects_duplicate_row_ids(workspace: Path):
    rows = sample_rows()
    rows.loc[1, S.ROW_ID] = rows.loc[0, S.ROW_ID]
    write_table(rows, workspace / "raw" / "rows.parquet")
    with pytest.raises(
        GateError,
        match=r"gate `raw rows` failed:(.|\n)*expect_column_values_to_be_unique\(column='row_id'\): 2 of",
    ):
        stage.main(arguments(workspace))


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"near_duplicates__num_bands": 7}, "curate.near_duplicates"),
        ({"max_chars": "long"}, "curate.max_chars"),
        ({"pii__phone_min_digits": 1}, "curate.pii.phone_min_digits"),
    ],
)
def test_bad_params_value_names_the_key(workspace: Path, values: dict, key: str):
    set_params(workspace, **values)
    with pytest.raises(ParamsError, match=rf"params.yaml: `{key}`"):
        stage.main(arguments(workspace))
