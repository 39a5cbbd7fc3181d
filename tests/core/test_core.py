import hashlib
from pathlib import Path

import pandas as pd
import pytest

from stages.core import schema as S
from stages.core.cli import run_stage
from stages.core.errors import InputDataError, ParamsError, RowAccountingError
from stages.core.io import atomic_path, read_table, write_json, write_table
from stages.core.params import parse_seed, read_params
from stages.core.quarantine import Quarantine


def test_write_table_is_byte_identical_for_equal_frames(tmp_path: Path):
    frame = pd.DataFrame({"text": ["a", "b", None], "n": [1, 2, 3]})
    write_table(frame, tmp_path / "one.parquet")
    write_table(frame.copy(), tmp_path / "two.parquet")
    digests = [
        hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("one.parquet", "two.parquet")
    ]
    assert digests[0] == digests[1]


def test_table_round_trip_keeps_columns_and_values(tmp_path: Path):
    frame = pd.DataFrame({S.TEXT: pd.array(["x", None], dtype="string"), S.SOURCE_ROW: [2, 3]})
    write_table(frame, tmp_path / "t.parquet")
    back = read_table(tmp_path / "t.parquet")
    assert list(back.columns) == [S.TEXT, S.SOURCE_ROW]
    assert back[S.TEXT].isna().tolist() == [False, True]
    assert back[S.SOURCE_ROW].tolist() == [2, 3]


def test_atomic_path_leaves_old_file_when_block_fails(tmp_path: Path):
    target = tmp_path / "out.json"
    write_json({"version": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert target.read_text().strip().endswith("}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"]


def test_read_table_names_missing_file(tmp_path: Path):
    with pytest.raises(InputDataError, match=r"missing\.parquet: file not found"):
        read_table(tmp_path / "missing.parquet")


def test_quarantine_counts_reasons_and_checks_accounting():
    rows = pd.DataFrame({S.TEXT: ["a", "b", "c"]})
    quarantine = Quarantine("curate")
    quarantine.add(rows.iloc[:2], "empty_text")
    quarantine.add(rows.iloc[2:], "too_long", pd.Series(["1200 chars"], index=[2]))
    assert quarantine.counts() == {"empty_text": 2, "too_long": 1}
    assert quarantine.frame()["quarantine_detail"].tolist() == ["", "", "1200 chars"]
    quarantine.check(rows_in=10, rows_out=7)
    with pytest.raises(
        RowAccountingError, match=r"rows in \(10\) != rows out \(8\) \+ rows quarantined \(3\)"
    ):
        quarantine.check(rows_in=10, rows_out=8)


def test_params_file_errors_are_readable(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(InputDataError, match=r"invalid YAML at line"):
        read_params(bad)
    with pytest.raises(InputDataError, match="params file not found"):
        read_params(tmp_path / "none.yaml")


@pytest.mark.parametrize("seed", [-1, 1.5, "42", True])
def test_seed_must_be_non_negative_integer(seed):
    with pytest.raises(ParamsError, match=r"`seed` must be a non-negative integer"):
        parse_seed({"seed": seed})


def test_run_stage_prints_one_line_instead_of_traceback(capsys):
    def failing(argv):
        raise ParamsError("split.test_size", 1.2, "must be between 0 and 1")

    assert run_stage(failing, []) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: params.yaml: `split.test_size` must be between 0 and 1, got 1.2"
    assert "Traceback" not in err


def test_row_ids_are_stable_and_distinct():
    rows = pd.Series([2, 3, 4])
    first = S.row_ids("source", "file.csv", rows)
    assert first.tolist() == S.row_ids("source", "file.csv", rows).tolist()
    assert first.nunique() == 3
    assert S.row_ids("other", "file.csv", rows)[0] != first[0]
