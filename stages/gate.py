"""gate: run the data stages with their checks and print which data-quality gate failed, or the row counts.

    python -m stages.gate                 # dvc repro split: acquire, curate, split
    python -m stages.gate --force         # rerun the stages even when DVC finds them unchanged
    python -m stages.gate --show-output   # also print the whole `dvc repro` output

The stages enforce the gates themselves: the curate stage's expectation suite, the split stage's
leakage limits and expectation suite, and rows in = rows out + rows quarantined in every stage.
This command runs `dvc repro` on the target, so it uses the current params.yaml and skips stages
whose inputs did not change (their gates passed on the same inputs). It then checks the row
accounting and the leakage verdict in the metrics files once more and prints a summary.

Exit status: 0 when every gate passed, 2 when a gate failed (GateError in a stage, or a check
here), 1 for any other error (bad params or input data, DVC errors).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.core.cli import run_stage
from stages.core.errors import GateError, InputDataError, PipelineError
from stages.core.schema import SPLIT_NAMES

DEFAULT_TARGET = "split"
MESSAGE_LINES = 25  # lines of a stage's error message printed in the summary
EXAMPLE_CHARS = 160

RUNNING = re.compile(r"^Running stage '(?P<stage>[^']+)'")
SKIPPED = re.compile(r"^Stage '(?P<stage>[^']+)' didn't change, skipping")
EXIT_CODE = re.compile(r"exited with (?P<code>-?\d+)")
# A log record of stages.core.cli.setup_logging: "12:34:56 INFO stages.curate: ...".
LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
GATE_HEADER = re.compile(r"^gate `(?P<gate>[^`]+)` failed:")


class StageFailedError(PipelineError):
    """A stage stopped on bad params or input data, or DVC could not run the pipeline."""


@dataclass
class ReproOutcome:
    """Outcome of one `dvc repro`, parsed from its output."""

    returncode: int
    stages: list[str] = field(default_factory=list)  # every stage DVC reached, in order
    ran: set[str] = field(default_factory=set)
    failed_stage: str | None = None
    stage_exit_code: int | None = None
    message: list[str] = field(default_factory=list)  # the failed stage's `error: ...` lines
    dvc_errors: list[str] = field(default_factory=list)
    traceback_tail: list[str] = field(default_factory=list)


def parse_repro_output(output: str, returncode: int) -> ReproOutcome:
    """Parse `dvc repro` output: stages run or skipped, the failed stage, its exit code and message."""
    outcome = ReproOutcome(returncode=returncode)
    lines = [line.rstrip() for part in output.splitlines() for line in part.split("\r")]
    in_message = False
    in_traceback = False
    for line in lines:
        running, skipped = RUNNING.match(line), SKIPPED.match(line)
        if running or skipped:
            stage = (running or skipped)["stage"]
            if stage not in outcome.stages:
                outcome.stages.append(stage)
            if running:
                outcome.ran.add(stage)
            in_message = in_traceback = False
            continue
        if line.startswith("ERROR:"):
            outcome.dvc_errors.append(line[len("ERROR:") :].strip())
            code = EXIT_CODE.search(line)
            if code:
                outcome.stage_exit_code = int(code["code"])
            in_message = in_traceback = False
            continue
        if line.startswith("error: "):
            in_message, in_traceback = True, False
            outcome.message.append(line[len("error: ") :])
            continue
        if line.startswith("Traceback (most recent call last)"):
            in_traceback, in_message = True, False
            outcome.traceback_tail = []
            continue
        if LOG_RECORD.match(line):
            in_message = False
            continue
        if in_message:
            outcome.message.append(line)
        elif in_traceback and line and not line.startswith(" "):
            outcome.traceback_tail.append(line)
    if returncode != 0 and outcome.stages:
        last = outcome.stages[-1]
        outcome.failed_stage = last if last in outcome.ran else None
    while outcome.message and not outcome.message[-1].strip():
        outcome.message.pop()
    return outcome


def run_repro(targets: Sequence[str], force: bool, root: Path) -> tuple[str, int]:
    """Run `dvc repro` on `targets` in `root`; return its combined output and exit code."""
    command = [sys.executable, "-m", "dvc", "repro", *(["--force"] if force else []), *targets]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        completed = subprocess.run(
            command,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise StageFailedError(f"cannot run `{' '.join(command[1:])}`: {exc}") from exc
    return completed.stdout, completed.returncode


def stage_files(root: Path, dvc_file: str = "dvc.yaml") -> dict[str, dict[str, list[str]]]:
    """Return stage -> {"metrics": [...], "outs": [...]} paths as declared in the pipeline file."""
    path = root / dvc_file
    if not path.is_file():
        raise InputDataError(str(path), "pipeline file not found", "Run the gate from the repository root.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputDataError(str(path), f"invalid YAML: {exc}", "Fix the pipeline file.") from exc
    files: dict[str, dict[str, list[str]]] = {}
    for name, stage in (data.get("stages") or {}).items():
        if not isinstance(stage, dict):
            continue
        files[name] = {
            kind: [_entry_path(entry) for entry in stage.get(kind) or []] for kind in ("metrics", "outs")
        }
    return files


def _entry_path(entry: Any) -> str:
    # An entry is a path, or a one-key mapping of path -> options (cache, persist, ...).
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def read_metrics(root: Path, paths: Sequence[str]) -> dict[str, Any]:
    """Return the readable JSON metrics files among `paths` merged into one mapping (later files win)."""
    merged: dict[str, Any] = {}
    for name in paths:
        path = root / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            merged.update(data)
    return merged


def check_metrics(stage: str, metrics: dict[str, Any]) -> list[str]:
    """Return the problems in a passed stage's metrics: row accounting and a failed leakage verdict."""
    problems = []
    rows_in, rows_out, quarantined = (metrics.get(key) for key in ("rows_in", "rows_out", "rows_quarantined"))
    if (
        all(isinstance(value, int) for value in (rows_in, rows_out, quarantined))
        and rows_in != rows_out + quarantined
    ):
        problems.append(
            f"{stage}: rows in ({rows_in}) != rows out ({rows_out}) + rows quarantined ({quarantined}), "
            f"{rows_in - rows_out - quarantined} rows unaccounted for"
        )
    leakage = metrics.get("leakage")
    if isinstance(leakage, dict) and leakage.get("passed") is False:
        failures = leakage.get("failures") or ["(no detail)"]
        problems += [f"{stage}: leakage {line}" for line in failures]
    return problems


def describe_stage(stage: str, metrics: dict[str, Any]) -> str:
    """Return one summary line of a stage's row counts, from its metrics (empty when it has none)."""
    parts = []
    if "rows_in" in metrics:
        parts.append(f"rows in {metrics['rows_in']}, out {metrics.get('rows_out')}")
    reasons = metrics.get("quarantine_reasons")
    quarantined = metrics.get("rows_quarantined")
    if quarantined is not None:
        detail = ""
        reasons = reasons if isinstance(reasons, dict) else {}
        counted = {reason: count for reason, count in reasons.items() if _count(count) > 0}
        if counted:
            top = sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:4]
            detail = " (" + ", ".join(f"{reason} {count}" for reason, count in top)
            detail += ", ..." if len(counted) > 4 else ""
            detail += ")"
        parts.append(f"quarantined {quarantined}{detail}")
    sizes = metrics.get("sizes")
    if isinstance(sizes, dict) and sizes:
        order = [name for name in SPLIT_NAMES if name in sizes] + sorted(set(sizes) - set(SPLIT_NAMES))
        parts.append(", ".join(f"{name} {sizes[name]}" for name in order))
    leakage = metrics.get("leakage")
    if isinstance(leakage, dict) and "passed" in leakage:
        parts.append("leakage gate " + ("passed" if leakage["passed"] else "FAILED"))
    return "; ".join(parts)


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _clip(line: str) -> str:
    return line if len(line) <= 400 else line[:399] + "…"


def failure_error(outcome: ReproOutcome, files: dict[str, dict[str, list[str]]]) -> PipelineError:
    """Return the error to raise for a failed `dvc repro`: GateError for a gate, else StageFailedError.

    Its message is the stage's own message (cut to MESSAGE_LINES lines) and where to look next.
    """
    stage = outcome.failed_stage or "?"
    gate = None
    lines = []
    if outcome.message:
        header = GATE_HEADER.match(outcome.message[0])
        gate = header["gate"] if header else None
        body = outcome.message[1:] if header else outcome.message
        lines += ["  " + _clip(line) for line in body[:MESSAGE_LINES]]
        if len(body) > MESSAGE_LINES:
            lines.append(f"  ... {len(body) - MESSAGE_LINES} more lines (rerun with --show-output)")
    elif outcome.traceback_tail:
        lines.append(f"  the stage crashed: {_clip(outcome.traceback_tail[-1])}")
        lines.append("  This is a bug in the stage; rerun with --show-output for the traceback.")
    else:
        errors = outcome.dvc_errors or ["(no error message; rerun with --show-output)"]
        lines += ["  dvc repro: " + _clip(line) for line in errors]
    declared = files.get(stage, {"metrics": [], "outs": []})
    pointers = declared["metrics"] + [path for path in declared["outs"] if "quarantine" in path]
    if pointers:
        lines.append(f"  details: {', '.join(pointers)}")

    is_gate = gate is not None or outcome.stage_exit_code == GateError.exit_code
    if is_gate:
        return GateError(gate or stage, f"raised by the `{stage}` stage:\n" + "\n".join(lines))
    return StageFailedError(f"stage `{stage}` failed:\n" + "\n".join(lines))


def run_gate(root: Path, targets: Sequence[str], force: bool, show_output: bool) -> str:
    """Run the data stages and return the summary of a passed gate; raise PipelineError on a failure."""
    files = stage_files(root)
    started = time.time()
    print(f"data-quality gate: dvc repro {' '.join(targets)}", flush=True)
    output, returncode = run_repro(targets, force, root)
    if show_output:
        print(output, flush=True)
    outcome = parse_repro_output(output, returncode)

    status_lines = []
    for stage in outcome.stages:
        metrics = {}
        if stage == outcome.failed_stage:
            state = "FAILED"
        else:
            state = "ran" if stage in outcome.ran else "unchanged"
            metrics = read_metrics(root, files.get(stage, {}).get("metrics", []))
        status_lines.append(f"  {stage:<10} {state:<9} {describe_stage(stage, metrics)}".rstrip())
    print("\n".join(status_lines), flush=True)

    if returncode != 0:
        raise failure_error(outcome, files)

    problems = []
    for stage in outcome.stages:
        problems += check_metrics(stage, read_metrics(root, files.get(stage, {}).get("metrics", [])))
    if problems:
        raise GateError("metrics", "\n".join(problems))
    elapsed = time.time() - started
    return f"data-quality gate passed: {len(outcome.stages)} stages checked in {elapsed:.0f} s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the data stages (dvc repro) and report which data-quality gate failed, if any.",
    )
    parser.add_argument(
        "targets",
        nargs="*",
        default=[DEFAULT_TARGET],
        help=f"DVC stages to reproduce, with everything upstream of them (default: {DEFAULT_TARGET})",
    )
    parser.add_argument("--force", action="store_true", help="rerun the stages even when unchanged")
    parser.add_argument("--show-output", action="store_true", help="print the whole `dvc repro` output")
    args = parser.parse_args(argv)
    print(run_gate(Path.cwd(), args.targets, args.force, args.show_output))


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
