"""`dvc repro` of the whole pipeline in a temporary copy of the repository, on a tiny config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def output_hashes(root: Path, stages: tuple[str, ...]) -> dict[str, str]:
    """Return path -> md5 of the data and metrics outputs of `stages` recorded in dvc.lock.

    The Data Docs under reports/ are left out: their pages carry build times.
    """
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = [out for stage in stages for out in lock["stages"][stage]["outs"]]
    return {out["path"]: out["md5"] for out in outs if not out["path"].startswith("reports/")}


def tiny_params(root: Path) -> None:
    """Shrink the default run: a few hundred rows of four intents, one short epoch."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for source in params["acquire"]["sources"]:
        source["limit"] = 400 if source["split"] == "train" else 120
    params["train"].update({"epochs": 1, "warmup_steps": 2, "batch_size": 16})
    params["evaluate"]["latency_rows"] = 10
    params["baselines"]["keyword_rules"] = {"card_arrival": ["arrive", "arrived"]}
    overrides = yaml.safe_load((Path(__file__).parent / "tiny_overrides.yaml").read_text()) or {}
    for section, values in overrides.items():
        params.setdefault(section, {})
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def pipeline_env(repo_copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo_copy / 'mlflow.db'}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.invalid"
    tiny_params(repo_copy)
    run(["git", "init", "-q"], repo_copy, env)
    run(["git", "add", "-A"], repo_copy, env)
    run(["git", "commit", "-qm", "tiny pipeline"], repo_copy, env)
    return env


def test_repro_runs_end_to_end_and_only_reruns_what_changed(repo_copy: Path, pipeline_env: dict[str, str]):
    dvc = [sys.executable, "-m", "dvc"]
    first = run([*dvc, "repro"], repo_copy, pipeline_env)
    assert {"acquire", "curate", "split", "baselines", "train", "evaluate"} <= set(stages_run(first))

    adapter = repo_copy / "models" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "label_map.json").is_file()

    shown = json.loads(run([*dvc, "metrics", "show", "--json"], repo_copy, pipeline_env))
    # DVC 3 keys the working tree's metrics by "" (older releases used "workspace").
    workspace = shown.get("") or shown["workspace"]
    evaluated = workspace["data"]["metrics/evaluate.json"]["data"]["models"]
    assert {"adapter", "majority", "tfidf", "keywords"} <= set(evaluated)

    second = run([*dvc, "repro"], repo_copy, pipeline_env)
    assert stages_run(second) == []

    # Rerunning the data stages from scratch gives byte-identical outputs and metrics, so nothing
    # downstream of them reruns afterwards.
    data_stages = ("acquire", "curate", "split")
    recorded = output_hashes(repo_copy, data_stages)
    forced = run([*dvc, "repro", "--force", "split"], repo_copy, pipeline_env)
    assert set(data_stages) <= set(stages_run(forced))
    assert output_hashes(repo_copy, data_stages) == recorded

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.001
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run([*dvc, "repro"], repo_copy, pipeline_env)
    rerun = set(stages_run(third))
    assert "train" in rerun
    assert "evaluate" in rerun
    assert not rerun & {"acquire", "curate", "split", "baselines"}

    import mlflow

    mlflow.set_tracking_uri(pipeline_env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 2
    latest = runs.iloc[0]
    commit = run(["git", "rev-parse", "HEAD"], repo_copy, pipeline_env).strip()
    assert latest["tags.git_commit"] == commit
    assert latest["tags.git_dirty"] == "true"  # params.yaml was edited after the commit
    assert latest["tags.data.data/curated/rows.parquet"]
    assert latest["tags.data_version"]
