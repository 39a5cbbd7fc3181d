"""Entry-point helpers: logging set-up and turning pipeline errors into one clear message."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from stages.core.errors import PipelineError

logger = logging.getLogger("stages")


def setup_logging() -> None:
    """Send log records to stderr; the level comes from the `LOG_LEVEL` environment variable."""
    level_name = os.environ.get("LOG_LEVEL", "INFO").upper()
    level = getattr(logging, level_name, logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # Libraries that log every HTTP call or file lock at INFO drown the stage's own milestones.
    for noisy in ("urllib3", "filelock", "httpx", "alembic", "great_expectations"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def stage_parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the `--params` option every stage takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--params",
        default="params.yaml",
        help="path of the params file (default: params.yaml)",
    )
    return parser


def run_stage(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's `main`, printing a pipeline error as one message and returning an exit code."""
    setup_logging()
    try:
        main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: no output of this stage was moved into place", file=sys.stderr)
        return 130
    return 0
