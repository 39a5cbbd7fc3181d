"""`dvc repro pipelines/e2e/dvc.yaml` in a temporary copy of the repository, on a tiny config.

Runs the packaged SmolLM2 model for real: about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.e2e_pipeline]

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_STAGES = {"acquire", "curate", "split", "baselines_lm", "train_lm", "evaluate_lm"}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def stages_run(output: str) -> set[str]:
    return {
        name.removeprefix("pipelines/e2e/dvc.yaml:")
        for name in re.findall(r"Running stage '([^']+)'", output)
    }


def tiny_params(root: Path) -> None:
    """Shrink the generation run: 16 train pairs, 4 test inputs, 8 new tokens, one thread."""
    path = root / "pipelines" / "e2e" / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train_lm"].update(max_train_rows=16, max_validation_rows=4, threads=1)
    params["generation"].update(test_inputs=4, max_new_tokens=8, latency_inputs=1, threads=1)
    params["baselines_lm"]["few_shot_examples"] = 1
    params["evaluate_lm"]["forgetting"].update(max_lines=4, max_tokens=200)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def e2e_env(repo_copy: Path) -> dict[str, str]:
    shutil.copytree(
        REPO_ROOT / "pipelines", repo_copy / "pipelines", ignore=shutil.ignore_patterns("dvc.lock")
    )
    tiny_params(repo_copy)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo_copy / 'mlflow.db'}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.invalid"
    run(["git", "init", "-q"], repo_copy, env)
    run(["git", "add", "-A"], repo_copy, env)
    run(["git", "commit", "-qm", "tiny generation pipeline"], repo_copy, env)
    return env


def test_e2e_repro_runs_every_stage_once(repo_copy: Path, e2e_env: dict[str, str]):
    dvc = [sys.executable, "-m", "dvc"]
    first = run([*dvc, "repro", "pipelines/e2e/dvc.yaml"], repo_copy, e2e_env)
    assert E2E_STAGES | {"prepare_model"} <= stages_run(first)
    assert "train" not in stages_run(first)

    adapter = repo_copy / "models" / "e2e" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    metrics = json.loads((repo_copy / "metrics" / "e2e" / "evaluate.json").read_text())
    assert set(metrics["systems"]) == {"adapter", "few_shot", "template", "zero_shot"}
    assert metrics["test_inputs"] == 4
    assert metrics["forgetting"]["base_perplexity"] > 1

    second = run([*dvc, "repro", "pipelines/e2e/dvc.yaml"], repo_copy, e2e_env)
    assert stages_run(second) == set()

    import mlflow

    mlflow.set_tracking_uri(e2e_env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["e2e-nlg"])
    assert len(runs) == 1
    lock = yaml.safe_load((repo_copy / "pipelines" / "e2e" / "dvc.lock").read_text())
    split_hash = next(
        out["md5"] for out in lock["stages"]["split"]["outs"] if out["path"] == "data/e2e/split"
    )
    assert runs.iloc[0]["tags.data.data/e2e/split"] == split_hash
    assert runs.iloc[0]["tags.git_commit"] == run(["git", "rev-parse", "HEAD"], repo_copy, e2e_env).strip()
