"""Reading and writing stage files: atomic moves into place and deterministic Parquet."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stages.core.errors import InputDataError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` and move it into place only if the block succeeds.

    A stage killed half-way leaves the old output (or none) at `target`, never a partial file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file for its owner only; outputs get the usual mode under the umask.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside `target`; when the block succeeds it replaces `target` whole.

    A stage killed half-way leaves the old folder (or none) at `target`, never a partial one, and no
    file of an earlier run survives in the new folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    previous = None
    try:
        yield staging
        # mkdtemp creates the folder for its owner only; outputs are readable like any other file.
        staging.chmod(0o755)
        if target.exists():
            previous = staging.with_suffix(".old")
            os.replace(target, previous)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if previous is not None and previous.is_dir():
            shutil.rmtree(previous)
        elif previous is not None and previous.exists():
            previous.unlink()


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write `frame` as Parquet so that equal frames give byte-identical files."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=True,
            write_statistics=True,
            row_group_size=1_000_000,
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet table written by an earlier stage."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            str(path), "file not found", "Run the stage that produces it first (`dvc repro`)."
        )
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(
            str(path), f"not a readable Parquet file ({exc})", "Rerun the stage that writes it."
        ) from exc


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON with sorted keys and a trailing newline, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by an earlier stage."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            str(path), "file not found", "Run the stage that produces it first (`dvc repro`)."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputDataError(
            str(path), f"invalid JSON at line {exc.lineno}: {exc.msg}", "Rerun the stage that writes it."
        ) from exc


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, pandas timestamps
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
