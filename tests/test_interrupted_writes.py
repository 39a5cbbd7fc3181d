"""Interrupted stages leave the previous output (or none) in place, never a partial file or folder.

Every write of a stage goes to a temporary path that is moved into place when complete
(`stages.core.io.atomic_path` for files, `atomic_dir` for folders). The tests kill or interrupt a
stage in the middle of a write, and a source scan checks that every write call in stages/ goes
through a temporary path.
"""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from stages import baselines as baselines_stage
from stages.core import io as core_io
from stages.core.cli import run_stage
from stages.core.io import atomic_dir, write_table

REPO_ROOT = Path(__file__).resolve().parents[1]

# Write calls outside an `atomic_path`/`atomic_dir` block, each in a function that writes into a
# staging folder moved into place afterwards.
STAGING_WRITERS = {
    ("stages/prepare_model.py", "prepare_model"): "writes into a mkdtemp folder moved by _replace_folder",
    ("stages/train_lm.py", "save_adapter_folder"): "writes into a mkdtemp folder renamed into place",
    ("stages/training/loop.py", "write_checkpoint"): "writes into a .tmp folder renamed into place",
    ("stages/training/model.py", "save_adapter"): "its caller passes the folder of train's atomic_dir",
}
WRITER_SUFFIXES = (".to_parquet", ".to_csv", ".to_json", ".write_text", ".write_bytes", ".save_pretrained")
WRITER_NAMES = {"pq.write_table", "json.dump", "torch.save", "np.save", "np.savez", "shutil.copyfile"}


def write_calls(tree: ast.AST, path: str) -> list[tuple[str, int, str | None, bool]]:
    """Return (path, line, enclosing function, inside an atomic block) for every write call."""
    found: list[tuple[str, int, str | None, bool]] = []

    def visit(node: ast.AST, function: str | None, atomic: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_function, child_atomic = function, atomic
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                child_function, child_atomic = child.name, False
            if isinstance(child, ast.With) and any(
                isinstance(item.context_expr, ast.Call)
                and ast.unparse(item.context_expr.func).split(".")[-1] in {"atomic_path", "atomic_dir"}
                for item in child.items
            ):
                child_atomic = True
            if isinstance(child, ast.Call) and is_write(child):
                found.append((path, child.lineno, function, atomic))
            visit(child, child_function, child_atomic)

    visit(tree, None, False)
    return found


def is_write(call: ast.Call) -> bool:
    name = ast.unparse(call.func)
    if name.endswith(WRITER_SUFFIXES) or name in WRITER_NAMES:
        return True
    if name == "open" or name.endswith(".open"):
        modes = [*call.args[1:2], *(item.value for item in call.keywords if item.arg == "mode")]
        return any(isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax") for mode in modes)
    return False


def test_every_write_goes_through_a_temporary_path():
    calls = []
    for file in sorted((REPO_ROOT / "stages").rglob("*.py")):
        relative = str(file.relative_to(REPO_ROOT))
        calls += write_calls(ast.parse(file.read_text(encoding="utf-8")), relative)

    assert len(calls) >= 10
    direct = [
        f"{path}:{line} in {function}()"
        for path, line, function, atomic in calls
        if not atomic and (path, function) not in STAGING_WRITERS
    ]
    assert direct == []
    used = {(path, function) for path, _, function, atomic in calls if not atomic}
    assert set(STAGING_WRITERS) <= used, "an entry of STAGING_WRITERS no longer writes; remove it"


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.parquet").write_text("old", encoding="utf-8")

    with atomic_dir(target) as folder:
        (folder / "new.parquet").write_text("new", encoding="utf-8")

    assert sorted(path.name for path in target.iterdir()) == ["new.parquet"]
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_keeps_old_folder_on_error(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.parquet").write_text("old", encoding="utf-8")

    with pytest.raises(RuntimeError, match="disk full"), atomic_dir(target) as folder:
        (folder / "new.parquet").write_text("partial", encoding="utf-8")
        raise RuntimeError("disk full")

    assert sorted(path.name for path in target.iterdir()) == ["old.parquet"]
    assert (target / "old.parquet").read_text(encoding="utf-8") == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


# Runs the acquire stage and kills its own process with SIGKILL after half of the first Parquet
# file is written, as the OOM killer or a power cut would: no `finally` block runs.
KILL_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow.parquet as pq
    from stages import acquire
    from stages.core.cli import run_stage

    real_write = pq.write_table

    def write_half_then_die(table, where, **kwargs):
        real_write(table, where, **kwargs)
        data = open(where, "rb").read()
        with open(where, "wb") as handle:
            handle.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    pq.write_table = write_half_then_die
    sys.exit(run_stage(acquire.main, sys.argv[1:]))
    """
)


def acquire_arguments(tmp_path: Path) -> list[str]:
    source = tmp_path / "intents.csv"
    source.write_text("text,label\nmy card has not arrived,card_arrival\nchange my pin,change_pin\n")
    params = tmp_path / "params.yaml"
    params.write_text(
        f"acquire:\n  sources:\n    - {{name: intents, type: csv, path: {source}, "
        "columns: {text: text, label: label}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    return [
        "--params", str(params),
        "--out", str(out / "rows.parquet"),
        "--quarantine", str(out / "quarantine.parquet"),
        "--metrics", str(out / "acquire.json"),
    ]  # fmt: skip


def run_killed_acquire(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_killed_stage_leaves_no_output(tmp_path):
    arguments = acquire_arguments(tmp_path)

    completed = run_killed_acquire(arguments)

    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    out = tmp_path / "out"
    assert not (out / "rows.parquet").exists()
    assert not (out / "quarantine.parquet").exists()
    assert not (out / "acquire.json").exists()


def test_killed_stage_keeps_previous_output(tmp_path):
    from stages import acquire

    arguments = acquire_arguments(tmp_path)
    assert run_stage(acquire.main, arguments) == 0
    out = tmp_path / "out"
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    completed = run_killed_acquire(arguments)

    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    visible = {path.name: path.read_bytes() for path in out.iterdir() if not path.name.startswith(".")}
    assert visible == before
    # The half-written temporary file stays hidden beside the output, where DVC does not look.
    leftovers = [path.name for path in out.iterdir() if path.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in leftovers)


def test_interrupted_folder_output_is_unchanged(small_splits, tmp_path, monkeypatch, capsys):
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    write_table(small_splits["train"], train)
    write_table(small_splits["test"], test)
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\nevaluate: {latency_rows: 0}\nbaselines: {keyword_rules: {}}\n")
    out_dir = tmp_path / "baselines"
    arguments = [
        "--params", str(params), "--train", str(train), "--test", str(test),
        "--out-dir", str(out_dir), "--metrics", str(tmp_path / "baselines.json"),
    ]  # fmt: skip
    assert run_stage(baselines_stage.main, arguments) == 0
    before = {path.name: path.read_bytes() for path in out_dir.iterdir()}
    assert len(before) >= 2

    written: list[str] = []

    def write_one_then_interrupt(frame: pd.DataFrame, path: str | Path) -> None:
        if written:
            raise KeyboardInterrupt
        core_io.write_table(frame, path)
        written.append(str(path))

    monkeypatch.setattr(baselines_stage, "write_table", write_one_then_interrupt)
    exit_code = run_stage(baselines_stage.main, arguments)

    assert exit_code == 130
    assert "no output of this stage was moved into place" in capsys.readouterr().err
    assert len(written) == 1
    assert {path.name: path.read_bytes() for path in out_dir.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
