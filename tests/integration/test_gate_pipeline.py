"""`python -m stages.gate` on a temporary copy of the repository: a clean tiny config, then broken data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

TRAIN_ROWS = 300
TEST_ROWS = 100


def load_params(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())


def save_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def add_source(root: Path, name: str, rows: list[dict[str, str]], split: str) -> None:
    """Write a CSV source under data/sources and list it in acquire.sources."""
    path = root / "data" / "sources" / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    params = load_params(root)
    params["acquire"]["sources"].append(
        {
            "name": name,
            "type": "csv",
            "path": f"data/sources/{name}.csv",
            "columns": {"text": "text", "label": "category"},
            "split": split,
        }
    )
    save_params(root, params)


def acquired_rows(root: Path, split: str) -> pd.DataFrame:
    limit = TRAIN_ROWS if split == "train" else TEST_ROWS
    return pd.read_csv(root / "data" / "sources" / "banking77" / f"{split}.csv").iloc[:limit]


@pytest.fixture
def gate_repo(repo_copy: Path) -> tuple[Path, dict[str, str]]:
    """The repository copy with a few hundred rows of the embedded data, as a git repository."""
    params = load_params(repo_copy)
    for source in params["acquire"]["sources"]:
        source["limit"] = TRAIN_ROWS if source.get("split") == "train" else TEST_ROWS
    stability = params.get("split", {}).get("stability")
    if isinstance(stability, dict):
        stability.update({"seeds": 2, "bootstrap": 20})
    save_params(repo_copy, params)

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.invalid"
    subprocess.run(["git", "init", "-q"], cwd=repo_copy, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo_copy, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "tiny data"], cwd=repo_copy, env=env, check=True)
    return repo_copy, env


def run_gate(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.gate"], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )


def test_gate_passes_on_clean_data(gate_repo):
    root, env = gate_repo

    result = run_gate(root, env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "data-quality gate passed" in result.stdout
    assert f"acquire    ran       rows in {TRAIN_ROWS + TEST_ROWS}" in result.stdout
    assert "curate     ran       rows in" in result.stdout
    assert "leakage gate passed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_gate_fails_on_test_row_copied_into_train(gate_repo):
    root, env = gate_repo
    test_row = acquired_rows(root, "test").iloc[0]
    # One extra word keeps the copy apart from curate's exact-duplicate key. With curate's
    # near-duplicate removal switched off, only the split stage's leakage check can catch it.
    add_source(
        root, "planted", [{"text": f"{test_row['text']} x", "category": test_row["category"]}], "train"
    )
    params = load_params(root)
    params["curate"].setdefault("near_duplicates", {})["enabled"] = False
    save_params(root, params)

    result = run_gate(root, env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "split      FAILED" in result.stdout
    assert re.search(r"gate `\w*leakage` failed", result.stderr)
    assert "train_vs_test: near leakage on 1 rows" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_gate_fails_on_label_outside_allowed_list(gate_repo):
    root, env = gate_repo
    labels = sorted(
        set(acquired_rows(root, "train")["category"]) | set(acquired_rows(root, "test")["category"])
    )
    add_source(
        root,
        "unknown-label",
        [{"text": "How do I close my savings account?", "category": "close_savings"}],
        "train",
    )
    params = load_params(root)
    params["curate"]["labels"] = {"allowed": labels, "unknown": "error"}
    save_params(root, params)

    result = run_gate(root, env)

    assert result.returncode != 0, result.stdout + result.stderr
    assert "curate     FAILED" in result.stdout
    assert "close_savings" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
