"""MLflow runs tagged with the git commit and the DVC hashes of the data each evaluation used."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)


# Params whose key looks like one of these are never logged, whatever their value. "token" is not
# followed by "s" or "iz", so that counts such as `max_new_tokens` and `tokenizer` settings are logged.
SECRET_KEY_PATTERN = re.compile(r"pass(word)?|secret|token(?!s|iz)|api[_-]?key|credential", re.IGNORECASE)
MAX_PARAM_CHARS = 6000


def tracking_uri(root: Path) -> str:
    """Return `MLFLOW_TRACKING_URI` when set, else a SQLite store in the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def git_state(root: Path) -> dict[str, str]:
    """Return the commit, branch and whether tracked files differ from it (dvc.lock files are not counted).

    `dvc repro` rewrites a pipeline's dvc.lock while it runs, so counting it would mark every run dirty.
    """

    def git(*args: str) -> str:
        try:
            completed = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return completed.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude,glob)**/dvc.lock")
    return {
        "git_commit": commit,
        "git_branch": git("rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "git_dirty": "true" if status else "false",
    }


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_lock_hashes(root: Path, lock_file: str = "dvc.lock") -> dict[str, str]:
    """Return output path -> md5 as recorded in a lock file (empty when there is no lock file yet).

    `lock_file` is relative to `root`; a pipeline in a subfolder (for example pipelines/e2e) has its own.
    """
    lock = root / lock_file
    if not lock.is_file():
        return {}
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    hashes: dict[str, str] = {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs", []) or []:
            if "md5" in out:
                hashes[out["path"]] = out["md5"]
    return hashes


def data_hashes(root: Path, paths: Iterable[str], lock_file: str = "dvc.lock") -> dict[str, str]:
    """Return the DVC hash of each data input: from dvc.lock, else an md5 computed here.

    A computed hash of a folder is the md5 of its sorted (path, md5) listing; it identifies the
    content but does not equal DVC's `.dir` hash.
    """
    recorded = dvc_lock_hashes(root, lock_file)
    hashes = {}
    for name in paths:
        if name in recorded:
            hashes[name] = recorded[name]
            continue
        path = root / name
        if path.is_file():
            hashes[name] = file_md5(path)
        elif path.is_dir():
            listing = [
                (str(file.relative_to(path)), file_md5(file))
                for file in sorted(path.rglob("*"))
                if file.is_file()
            ]
            hashes[name] = (
                hashlib.md5(json.dumps(listing).encode(), usedforsecurity=False).hexdigest() + ".dir"
            )
    return hashes


def data_version(hashes: Mapping[str, str]) -> str:
    """Return one short id for the combination of data hashes."""
    joined = "\n".join(f"{path}={value}" for path, value in sorted(hashes.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def loggable_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten params for MLflow, dropping any key that looks like a secret."""
    logged = {}
    for key, value in flatten(params).items():
        if SECRET_KEY_PATTERN.search(key):
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        logged[key] = text[:MAX_PARAM_CHARS]
    return logged


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep the numeric leaves of a nested metrics mapping, with dotted keys."""
    return {
        key: float(value)
        for key, value in flatten(metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def log_evaluation_run(
    *,
    root: Path,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    data_inputs: Iterable[str],
    artifacts: Mapping[str, Path] | None = None,
    tags: Mapping[str, str] | None = None,
    lock_file: str = "dvc.lock",
) -> str:
    """Log one evaluation as an MLflow run and return its run id.

    Tags: git commit, branch and dirty flag, the hash of every data input (`data.<path>`) and
    a combined `data_version`. Artifacts are files or folders logged under their given names.
    """
    import mlflow

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = (
            None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").resolve().as_uri()
        )
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)

    hashes = data_hashes(root, data_inputs, lock_file)
    all_tags = {**git_state(root), "data_version": data_version(hashes)}
    all_tags.update({f"data.{path}": value for path, value in hashes.items()})
    all_tags.update(tags or {})

    with mlflow.start_run(run_name=run_name, tags=all_tags) as run:
        logged = list(loggable_params(params).items())
        for start in range(0, len(logged), 100):  # MLflow takes at most 100 params per batch
            mlflow.log_params(dict(logged[start : start + 100]))
        mlflow.log_metrics(numeric_metrics(metrics))
        for name, path in (artifacts or {}).items():
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=name)
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path=name)
        run_id = run.info.run_id
    logger.info("logged MLflow run %s (%s) to %s", run_id, run_name, uri.split("@")[-1])
    return run_id
