"""Loading params.yaml into one typed, validated config per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.core.errors import InputDataError, ParamsError


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are rejected, values are checked on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the whole params file as a mapping."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            str(path), "params file not found", "Run from the repository root or pass --params PATH."
        )
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        # One line: PyYAML's own message repeats the file name and spans several lines.
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise InputDataError(str(path), f"invalid YAML{where}: {detail}", "Fix the YAML syntax.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError("(top level)", type(data).__name__, "must be a mapping of sections")
    return data


def parse_section(params: dict[str, Any], section: str, model: type[ConfigT]) -> ConfigT:
    """Validate `params[section]` against `model`, raising ParamsError that names the key and value."""
    raw = params.get(section, {})
    if raw is None:
        raw = {}
    return parse_value(raw, section, model)


def parse_value(raw: Any, key: str, model: type[ConfigT]) -> ConfigT:
    """Validate one raw value against `model`; `key` is the dotted params path used in messages."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise params_error_from(exc, key, raw) from None


def params_error_from(exc: ValidationError, prefix: str, raw: Any) -> ParamsError:
    """Build one ParamsError from the first problem pydantic found."""
    first = exc.errors()[0]
    key = prefix
    for part in first["loc"]:
        # List positions read as `sources[0]`, the form the stages use in their own messages.
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    value = first.get("input", raw)
    kind = first["type"]
    if kind == "extra_forbidden":
        return ParamsError(key, value, "is not a known key", "Remove it or check its spelling.")
    if kind == "missing":
        return ParamsError(key, None, "is required", "Add it to params.yaml.")
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return ParamsError(key, value, f"is invalid ({message})", "Fix the value in params.yaml.")


def parse_seed(params: dict[str, Any]) -> int:
    """Return the top-level `seed`, checked to be a non-negative integer."""
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamsError("seed", seed, "must be a non-negative integer")
    return seed


class TaskConfig(StageConfig):
    """The shared `task` section: which kind of task the pipeline fine-tunes for."""

    type: Literal["classification", "generation"] = "classification"


class ModelConfig(StageConfig):
    """The shared `model` section: the base model to fine-tune and how to load it."""

    name: str = Field(default="packaged:all-MiniLM-L6-v2", min_length=1)
    # Runs Python code shipped with a model from a hub; off unless a team trusts the model.
    trust_remote_code: bool = False


def require_classification(params: dict[str, Any]) -> TaskConfig:
    """Parse `task` and raise ParamsError unless it is a classification task."""
    task = parse_section(params, "task", TaskConfig)
    if task.type != "classification":
        raise ParamsError(
            "task.type",
            task.type,
            "is not handled by this stage",
            "Generation runs in the generation pipeline (see docs/generation.md).",
        )
    return task
