"""Same inputs, params and seed give byte-identical tables and identical metrics on CPU.

The stages run in-process with the commands of dvc.yaml, twice, each time in a fresh folder that
links the repository's data/sources and expectations, on a tiny slice of BANKING77.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from stages.core.cli import run_stage

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("acquire", "curate", "split", "augment", "baselines")
# Columns that measure time, so they legitimately differ between runs.
TIMING_COLUMNS = {"latency_ms"}


def stage_arguments(stage: str) -> tuple[str, list[str]]:
    """Return (module, arguments) of a stage's command in dvc.yaml."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    words = shlex.split(pipeline["stages"][stage]["cmd"])
    assert words[:2] == ["python", "-m"], words
    return words[2], words[3:]


def tiny_params() -> dict[str, Any]:
    """The repository's params with a few hundred rows per source and few latency rows."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for source in params["acquire"]["sources"]:
        source["limit"] = 200 if source.get("split") == "train" else 60
    params["evaluate"]["latency_rows"] = 5
    params["baselines"]["keyword_rules"] = {"card_arrival": ["arrive", "arrived"]}
    # Generating rows needs the prepared language model, so augment passes the train rows through.
    params["augment"]["enabled"] = False
    # Two parallel workers still exercise the parallel path of the stability estimate.
    params["split"]["stability"].update({"seeds": 2, "bootstrap": 20, "n_jobs": 2})
    return params


def run_pipeline(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every stage of STAGES with cwd `folder`; return the folder."""
    folder.mkdir()
    (folder / "data").mkdir()
    (folder / "data" / "sources").symlink_to(REPO_ROOT / "data" / "sources", target_is_directory=True)
    (folder / "expectations").symlink_to(REPO_ROOT / "expectations", target_is_directory=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False), encoding="utf-8")
    monkeypatch.chdir(folder)
    for stage in STAGES:
        module, arguments = stage_arguments(stage)
        exit_code = run_stage(importlib.import_module(module).main, arguments)
        assert exit_code == 0, f"{stage} failed"
    return folder


def outputs(folder: Path) -> dict[str, Path]:
    """Return the data and metrics files a run wrote, by path relative to `folder`.

    The Data Docs under reports/ are left out: they carry build times (dvc.yaml does not cache them).
    """
    files = {}
    for top in ("data", "metrics"):
        for path in sorted((folder / top).rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and relative.parts[:2] != ("data", "sources"):
                files[str(relative)] = path
    return files


def without_timings(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    return frame.drop(columns=sorted(TIMING_COLUMNS & set(frame.columns)))


def differences(first: dict[str, Path], second: dict[str, Path]) -> list[str]:
    """Return a line per output that differs between two runs."""
    found = []
    for name, path in first.items():
        other = second[name]
        if name.endswith(".parquet") and TIMING_COLUMNS & set(pq.read_schema(path).names):
            # Latency columns are timed, but every other column must match exactly.
            if not without_timings(path).equals(without_timings(other)):
                found.append(f"{name}: the tables differ outside {sorted(TIMING_COLUMNS)}")
        elif path.read_bytes() != other.read_bytes():
            detail = ""
            if name.endswith(".json"):
                left, right = (json.loads(file.read_text(encoding="utf-8")) for file in (path, other))
                detail = ": " + ", ".join(changed_keys(left, right))
            found.append(f"{name} differs{detail}")
    return found


def changed_keys(left: Any, right: Any, prefix: str = "") -> list[str]:
    """Return the dotted keys whose values differ between two JSON values."""
    if isinstance(left, dict) and isinstance(right, dict):
        keys = sorted(set(left) | set(right))
        return [
            key for name in keys for key in changed_keys(left.get(name), right.get(name), f"{prefix}{name}.")
        ]
    return [] if left == right else [f"{prefix.rstrip('.')} ({left!r} != {right!r})"]


@pytest.mark.slow
def test_same_inputs_give_identical_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = outputs(run_pipeline(tmp_path / "first", monkeypatch))
    second = outputs(run_pipeline(tmp_path / "second", monkeypatch))

    assert sorted(first) == sorted(second)
    assert any(name.endswith(".parquet") for name in first)
    assert any(name.endswith(".json") for name in first)
    assert differences(first, second) == []
