"""Bad inputs of tests/corpus/cases.yaml: every case ends in a clear error, a quarantine or clean rows.

Stages run in-process through `run_stage`, as `python -m stages.<name>` runs them, so an exception
that is not a pipeline error escapes as a traceback and fails the case.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import traceback
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from stages.core.cli import run_stage

CORPUS = Path(__file__).parent / "corpus"
REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("acquire", "curate", "split")
# Corpus inputs hold one or two rows per label, below the class size the curated suite expects.
CORPUS_CURATE_PARAMS = {"imbalance": {"min_rows_per_class": 1}}


def load_cases() -> list[dict[str, Any]]:
    return yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))["cases"]


CASES = load_cases()


def generate_input(spec: dict[str, Any], folder: Path) -> Path:
    """Write an input too large to keep in the repository."""
    if spec["kind"] == "long_row":
        path = folder / "long_row.csv"
        long_text = ("my card " * (spec["chars"] // 8 + 1))[: spec["chars"]]
        path.write_text(f"text,label\n{long_text},card_arrival\nmy card has not arrived yet,card_arrival\n")
        return path
    raise ValueError(f"unknown generated input {spec['kind']!r}")


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge `overrides` into a copy of `base`, mapping into mapping."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(case: dict[str, Any], folder: Path) -> Path:
    path = folder / "params.yaml"
    if "params_text" in case:
        path.write_text(case["params_text"], encoding="utf-8")
        return path
    input_path = generate_input(case["generate"], folder) if "generate" in case else CORPUS / case["input"]
    source = merge(
        {
            "name": "corpus",
            "type": input_path.suffix.lstrip("."),
            "path": str(input_path),
            "columns": {"text": "text", "label": "label"},
        },
        case.get("source", {}),
    )
    base = {"seed": 0, "acquire": {"sources": [source]}, "curate": CORPUS_CURATE_PARAMS}
    params = merge(base, case.get("params", {}))
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def stage_arguments(params: Path, out: Path) -> dict[str, list[str]]:
    """Return the command-line arguments of each stage, with outputs under `out`."""
    return {
        "acquire": [
            "--params", str(params),
            "--out", str(out / "raw" / "rows.parquet"),
            "--quarantine", str(out / "raw" / "quarantine.parquet"),
            "--metrics", str(out / "metrics" / "acquire.json"),
        ],
        "curate": [
            "--params", str(params),
            "--rows", str(out / "raw" / "rows.parquet"),
            "--out", str(out / "curated" / "rows.parquet"),
            "--quarantine", str(out / "curated" / "quarantine.parquet"),
            "--metrics", str(out / "metrics" / "curate.json"),
            "--suite", str(REPO_ROOT / "expectations" / "curated.json"),
        ],
        "split": [
            "--params", str(params),
            "--rows", str(out / "curated" / "rows.parquet"),
            "--out-dir", str(out / "split"),
            "--metrics", str(out / "metrics" / "split.json"),
            "--suite", str(REPO_ROOT / "expectations" / "splits.json"),
        ],
    }  # fmt: skip


def output_tables(stage: str, out: Path) -> tuple[Path, Path]:
    """Return the (rows, quarantine) tables a stage writes."""
    folder = {"acquire": "raw", "curate": "curated"}[stage]
    return out / folder / "rows.parquet", out / folder / "quarantine.parquet"


def check_row_accounting(stage: str, out: Path) -> dict[str, int]:
    """Assert rows in = rows out + rows quarantined from the metrics and the tables; return reason counts."""
    metrics = json.loads((out / "metrics" / f"{stage}.json").read_text(encoding="utf-8"))
    rows_path, quarantine_path = output_tables(stage, out)
    rows = pq.read_table(rows_path)
    quarantine = pq.read_table(quarantine_path)

    assert metrics["rows_in"] == metrics["rows_out"] + metrics["rows_quarantined"], metrics
    assert rows.num_rows == metrics["rows_out"]
    assert quarantine.num_rows == metrics["rows_quarantined"]
    reasons = quarantine.column("quarantine_reason").to_pylist() if quarantine.num_rows else []
    counts = {reason: reasons.count(reason) for reason in sorted(set(reasons))}
    assert counts == {reason: count for reason, count in metrics["quarantine_reasons"].items() if count}
    return counts


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input_case(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    expect = case["expect"]
    stages = case.get("stages", ["acquire"])
    assert expect["outcome"] in {"error", "quarantine", "ok"}
    assert set(stages) <= set(STAGES)
    params = write_params(case, tmp_path)
    out = tmp_path / "out"
    arguments = stage_arguments(params, out)

    reasons: dict[str, dict[str, int]] = {}
    for stage in stages:
        main = importlib.import_module(f"stages.{stage}").main
        try:
            exit_code = run_stage(main, arguments[stage])
        except Exception:
            pytest.fail(f"{stage} raised instead of reporting an error:\n{traceback.format_exc()}")
        captured = capsys.readouterr()
        output = captured.out + captured.err
        assert "Traceback" not in output

        if expect["outcome"] == "error" and stage == expect["stage"]:
            assert exit_code != 0, f"{stage} succeeded but the case expects an error"
            errors = [line for line in output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, output[-3000:]
            # A gate failure lists its failed expectations on the lines after the first.
            message = output[output.index(errors[0]) :]
            assert re.search(expect["message"], message), message
            return
        assert exit_code == 0, f"{stage} failed:\n{output[-3000:]}"
        if stage != "split":
            reasons[stage] = check_row_accounting(stage, out)

    assert expect["outcome"] != "error", f"no stage failed, expected {expect['stage']} to fail"
    expected_reasons = expect.get("quarantine", {}) if expect["outcome"] == "quarantine" else {}
    for stage, counts in reasons.items():
        assert counts == expected_reasons.get(stage, {}), f"{stage} quarantine reasons"
    for stage, count in expect.get("rows_out", {}).items():
        assert pq.read_table(output_tables(stage, out)[0]).num_rows == count, f"{stage} rows out"
    if "texts" in expect:
        last = [stage for stage in stages if stage != "split"][-1]
        texts = pq.read_table(output_tables(last, out)[0]).column("text").to_pylist()
        assert texts == expect["texts"]


def test_corpus_has_every_kind_of_case():
    outcomes = [case["expect"]["outcome"] for case in CASES]
    assert len(CASES) >= 30
    assert {"error", "quarantine", "ok"} <= set(outcomes)
    assert len({case["id"] for case in CASES}) == len(CASES)


def test_corpus_inputs_exist_and_are_used():
    used = {CORPUS / case["input"] for case in CASES if "input" in case}
    on_disk = {path for path in (CORPUS / "inputs").iterdir() if path.is_file()}
    assert used <= on_disk, sorted(str(path) for path in used - on_disk)
    assert on_disk <= used, sorted(str(path) for path in on_disk - used)
