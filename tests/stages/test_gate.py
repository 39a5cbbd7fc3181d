import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from stages import gate
from stages.core.cli import run_stage
from stages.core.errors import GateError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Two stages that behave like the data stages: `acquire` writes its metrics, `split` reads
# mode.txt and passes, raises a GateError, raises an InputDataError or crashes.
FAKE_STAGE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from stages.core.cli import run_stage
    from stages.core.errors import GateError, InputDataError
    from stages.core.io import write_json


    def main(argv):
        name = argv[0]
        mode = Path("mode.txt").read_text().strip() if name == "split" else "pass"
        if mode == "gate":
            raise GateError("leakage", "train_vs_test: exact leakage on 2 rows (1.00%)\\n  e.g. 'same text'")
        if mode == "input":
            raise InputDataError("data/rows.csv", "label is empty", "Fill in the label", row=7, field="label")
        if mode == "crash":
            raise RuntimeError("unexpected")
        rows_out = 9 if mode == "miscount" else 8
        metrics = {"rows_in": 10, "rows_out": rows_out, "rows_quarantined": 2,
                   "quarantine_reasons": {"exact_duplicate": 2}}
        if name == "split":
            metrics["sizes"] = {"train": 6, "validation": 1, "test": 1}
            failures = ["train_vs_test: near leakage on 1 rows"]
            metrics["leakage"] = {"passed": mode != "leaky", "failures": failures}
        Path(name).mkdir(exist_ok=True)
        (Path(name) / "out.txt").write_text(mode)
        write_json(metrics, f"metrics/{name}.json")


    if __name__ == "__main__":
        raise SystemExit(run_stage(main, sys.argv[1:]))
    """
)


@pytest.fixture
def fake_pipeline(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "pipeline"
    root.mkdir()
    (root / "fake_stage.py").write_text(FAKE_STAGE)
    (root / "mode.txt").write_text("pass")
    stages = {
        "acquire": {
            "cmd": "python fake_stage.py acquire",
            "deps": ["fake_stage.py"],
            "outs": ["acquire"],
            "metrics": [{"metrics/acquire.json": {"cache": False}}],
        },
        "split": {
            "cmd": "python fake_stage.py split",
            "deps": ["fake_stage.py", "mode.txt", "acquire"],
            "outs": ["split"],
            "metrics": [{"metrics/split.json": {"cache": False}}],
        },
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return root


def run_gate(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_stage(gate.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gate_passes_and_prints_row_counts(fake_pipeline: Path, capsys):
    code, out, err = run_gate(capsys)

    assert code == 0, err
    assert "acquire    ran       rows in 10, out 8; quarantined 2 (exact_duplicate 2)" in out
    assert "train 6, validation 1, test 1; leakage gate passed" in out
    assert "data-quality gate passed: 2 stages checked" in out


def test_gate_reports_unchanged_stages(fake_pipeline: Path, capsys):
    assert run_gate(capsys)[0] == 0

    code, out, _ = run_gate(capsys)

    assert code == 0
    assert "acquire    unchanged rows in 10" in out


def test_gate_failure_names_gate_and_rows(fake_pipeline: Path, capsys):
    (fake_pipeline / "mode.txt").write_text("gate")

    code, out, err = run_gate(capsys)

    assert code == 2
    assert "split      FAILED" in out
    assert "error: gate `leakage` failed:" in err
    assert "raised by the `split` stage:" in err
    assert "train_vs_test: exact leakage on 2 rows (1.00%)" in err
    assert "e.g. 'same text'" in err
    assert "details: metrics/split.json" in err
    assert "Traceback" not in out + err


def test_gate_input_error_exits_one(fake_pipeline: Path, capsys):
    (fake_pipeline / "mode.txt").write_text("input")

    code, _, err = run_gate(capsys)

    assert code == 1
    assert "error: stage `split` failed:" in err
    assert "data/rows.csv, row 7, field `label`: label is empty. Fill in the label" in err


def test_gate_stage_crash_exits_one_without_traceback(fake_pipeline: Path, capsys):
    (fake_pipeline / "mode.txt").write_text("crash")

    code, out, err = run_gate(capsys)

    assert code == 1
    assert "the stage crashed: RuntimeError: unexpected" in err
    assert "Traceback" not in out + err


def test_gate_checks_row_accounting_in_metrics(fake_pipeline: Path, capsys):
    (fake_pipeline / "mode.txt").write_text("miscount")

    code, _, err = run_gate(capsys)

    assert code == 2
    assert "gate `metrics` failed" in err
    assert "split: rows in (10) != rows out (9) + rows quarantined (2), -1 rows unaccounted for" in err


def test_gate_checks_leakage_verdict_in_metrics(fake_pipeline: Path, capsys):
    (fake_pipeline / "mode.txt").write_text("leaky")

    code, _, err = run_gate(capsys)

    assert code == 2
    assert "split: leakage train_vs_test: near leakage on 1 rows" in err


def test_gate_reports_dvc_errors(fake_pipeline: Path, capsys):
    code, _, err = run_gate(capsys, "no_such_stage")

    assert code == 1
    assert "dvc repro:" in err
    assert "no_such_stage" in err


def test_parse_repro_output_reads_failed_stage():
    output = "\n".join(
        [
            "Stage 'acquire' didn't change, skipping",
            "Running stage 'curate':",
            "> python -m stages.curate --rows data/raw/rows.parquet",
            "12:00:01 INFO stages.curate: read 120 rows",
            "error: gate `curated_suite` failed:",
            "  expect_column_values_to_be_in_set(label): 1 of 120 rows, e.g. 'refund_requested'",
            "12:00:02 INFO stages.curate: stopped",
            "ERROR: failed to reproduce 'curate': failed to run: python -m stages.curate, exited with 2",
        ]
    )

    outcome = gate.parse_repro_output(output, 255)

    assert outcome.stages == ["acquire", "curate"]
    assert outcome.ran == {"curate"}
    assert outcome.failed_stage == "curate"
    assert outcome.stage_exit_code == 2
    assert outcome.message[0] == "gate `curated_suite` failed:"
    assert outcome.message[1:] == [
        "  expect_column_values_to_be_in_set(label): 1 of 120 rows, e.g. 'refund_requested'"
    ]
    error = gate.failure_error(outcome, {"curate": {"metrics": ["metrics/curate.json"], "outs": []}})
    assert isinstance(error, GateError)
    assert error.gate == "curated_suite"
