"""The expectation-suite runner: results, gate errors, params placeholders, conditions and Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.core.errors import GateError, InputDataError, ParamsError
from stages.core.expectations import validate

BANKING77 = Path(__file__).resolve().parents[2] / "data" / "sources" / "banking77"


@pytest.fixture
def rows() -> pd.DataFrame:
    raw = pd.read_csv(BANKING77 / "test.csv").groupby("category").head(3).head(30).reset_index(drop=True)
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(len(raw))],
            "text": raw["text"].astype("string"),
            "label": raw["category"].astype("string"),
        }
    )


def write_suite(folder: Path, expectations: list[dict], **extra) -> Path:
    path = folder / "suite.json"
    path.write_text(json.dumps({"name": "checks", "expectations": expectations, **extra}), encoding="utf-8")
    return path


def test_passing_suite_returns_a_summary(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        ],
    )
    summary = validate(rows, suite, gate="test")
    assert summary["success"] is True
    assert summary["evaluated"] == 2
    assert summary["expectations"][0]["unexpected_count"] == 0
    assert summary["expectations"][1]["observed_value"] == len(rows)


def test_failure_names_expectation_count_and_examples(rows, tmp_path):
    rows.loc[4, "text"] = "ab"
    rows.loc[9, "text"] = "x"
    suite = write_suite(
        tmp_path,
        [{"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "text", "min_value": 3}}],
    )
    with pytest.raises(GateError) as raised:
        validate(rows, suite, gate="curated rows")
    message = str(raised.value)
    assert "gate `curated rows` failed" in message
    assert "expect_column_value_lengths_to_be_between(column='text', min_value=3)" in message
    assert f"2 of {len(rows)} rows unexpected" in message
    assert "row r4: 'ab'" in message


def test_warnings_do_not_raise(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "label", "value_set": ["card_arrival"]},
                "severity": "warning",
            }
        ],
    )
    summary = validate(rows, suite, gate="test")
    assert summary["success"] is True
    assert summary["failed"] == 1
    assert summary["expectations"][0]["unexpected_count"] == len(rows) - 3


def test_params_placeholders_are_resolved(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {
                "type": "expect_column_value_lengths_to_be_between",
                "kwargs": {"column": "text", "min_value": {"$param": "curate.min_chars"}},
            }
        ],
    )
    assert validate(rows, suite, gate="test", parameters={"curate": {"min_chars": 3}})["success"]
    with pytest.raises(GateError, match="min_value=500"):
        validate(rows, suite, gate="test", parameters={"curate": {"min_chars": 500}})


def test_missing_param_names_the_key(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {
                "type": "expect_column_value_lengths_to_be_between",
                "kwargs": {"column": "text", "min_value": {"$param": "curate.nope"}},
            }
        ],
    )
    with pytest.raises(ParamsError, match=r"`curate.nope` is needed by expectation #0"):
        validate(rows, suite, gate="test", parameters={"curate": {}})


def test_when_conditions_skip_expectations(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {
                "type": "expect_column_to_exist",
                "kwargs": {"column": "target"},
                "when": {"task.type": "generation"},
            },
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "label", "value_set": {"$param": "allowed"}},
                "when": {"allowed": {"$not_empty": True}},
            },
            {"type": "expect_column_to_exist", "kwargs": {"column": "text"}},
        ],
    )
    summary = validate(
        rows, suite, gate="test", parameters={"task": {"type": "classification"}, "allowed": []}
    )
    assert summary["evaluated"] == 1
    assert summary["skipped"] == 2


def test_value_count_column_checks_rows_per_class(rows, tmp_path):
    rows.loc[0, "label"] = "rare_class"
    suite = write_suite(
        tmp_path,
        [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "label_rows", "min_value": 2}}],
        derived_columns=[{"name": "label_rows", "kind": "value_count", "column": "label"}],
    )
    with pytest.raises(
        GateError, match=r"1 of 30 rows unexpected .*row r0: label='rare_class' \(label_rows=1\)"
    ):
        validate(rows, suite, gate="test")


def test_normalised_key_finds_duplicates(rows, tmp_path):
    rows.loc[1, "text"] = rows.loc[0, "text"].upper() + "!!"
    suite = write_suite(
        tmp_path,
        [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "key"}}],
        derived_columns=[{"name": "key", "kind": "normalised_key", "columns": ["text"]}],
    )
    with pytest.raises(GateError, match="2 of 30 rows unexpected"):
        validate(rows, suite, gate="test")


def test_missing_column_is_reported(rows, tmp_path):
    suite = write_suite(
        tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "target"}}]
    )
    with pytest.raises(GateError, match="expect_column_values_to_not_be_null\\(column='target'\\)"):
        validate(rows, suite, gate="test")


def test_unknown_expectation_type_names_file_and_index(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [
            {"type": "expect_column_to_exist", "kwargs": {"column": "text"}},
            {"type": "expect_magic", "kwargs": {}},
        ],
    )
    with pytest.raises(InputDataError, match=r"suite.json: expectation #1: unknown type 'expect_magic'"):
        validate(rows, suite, gate="test")


def test_invalid_kwargs_are_an_input_error(rows, tmp_path):
    suite = write_suite(
        tmp_path, [{"type": "expect_column_to_exist", "kwargs": {"column": "text", "bogus": 1}}]
    )
    with pytest.raises(InputDataError, match="expectation #0 \\(expect_column_to_exist\\): invalid kwargs"):
        validate(rows, suite, gate="test")


def test_invalid_suite_files(rows, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InputDataError, match="invalid JSON at line 1"):
        validate(rows, broken, gate="test")
    with pytest.raises(InputDataError, match="expectation suite not found"):
        validate(rows, tmp_path / "absent.json", gate="test")
    empty = write_suite(tmp_path, [])
    with pytest.raises(InputDataError, match="non-empty list"):
        validate(rows, empty, gate="test")


def test_data_docs_are_built_and_replaced(rows, tmp_path):
    suite = write_suite(
        tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "stale.html").write_text("old", encoding="utf-8")
    validate(rows, suite, gate="test", docs_dir=docs)
    assert (docs / "index.html").is_file()
    assert list((docs / "validations").rglob("*.html"))
    assert not (docs / "stale.html").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".docs")] == []


def test_data_docs_are_built_for_failures_too(rows, tmp_path):
    suite = write_suite(
        tmp_path,
        [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": []}}],
    )
    docs = tmp_path / "docs"
    with pytest.raises(GateError):
        validate(rows, suite, gate="test", docs_dir=docs)
    assert (docs / "index.html").is_file()
