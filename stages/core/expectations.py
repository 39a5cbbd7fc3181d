"""Data-quality gates: run an expectation suite file on a DataFrame with Great Expectations 1.x.

Suite files are JSON in a small project format, so that they stay readable and reviewable:

    {
      "name": "curated",
      "description": "what the suite guards",
      "derived_columns": [
        {"name": "label_rows", "kind": "value_count", "column": "label"},
        {"name": "text_key", "kind": "normalised_key", "columns": ["text"]}
      ],
      "expectations": [
        {
          "type": "expect_column_value_lengths_to_be_between",
          "kwargs": {"column": "text", "min_value": {"$param": "curate.min_chars"}},
          "severity": "error",
          "when": {"task.type": "classification"},
          "notes": "why this expectation exists"
        }
      ]
    }

- `type` is the snake_case name of a Great Expectations expectation class
  (`expect_column_values_to_not_be_null` -> `ExpectColumnValuesToNotBeNull`); `kwargs` are its
  arguments.
- `{"$param": "section.key"}` anywhere in `kwargs` is replaced by that value of `parameters`
  (usually the parsed params), so a suite and params.yaml cannot disagree on a bound.
- `severity` is "error" (the default: a failure raises GateError) or "warning" (a failure is
  logged and reported, nothing more).
- `when` skips the expectation unless every dotted path in `parameters` equals the given
  value. A condition `{"$not_empty": true}` requires a non-empty list, mapping or string instead.
- `derived_columns` are computed on a copy of the frame before validation:
  `value_count` is the number of rows sharing the row's value of `column` (so "at least N rows
  per class" becomes a per-row bound); `normalised_key` joins `columns` after case-folding and
  turning punctuation and whitespace runs into one space (for "no duplicate texts" checks).

Only `validate` and `GateError` are meant for other modules.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core.errors import GateError, InputDataError, ParamsError

logger = logging.getLogger(__name__)

SEVERITIES = ("error", "warning")
DERIVED_KINDS = ("value_count", "normalised_key")
EXAMPLES = 5
SITE_NAME = "project"

__all__ = ["GateError", "validate"]


def validate(
    frame: pd.DataFrame,
    suite_path: str | Path,
    *,
    gate: str,
    parameters: Mapping[str, Any] | None = None,
    docs_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Validate `frame` against the suite at `suite_path`; returns a summary for the metrics.

    `gate` names the gate in messages. When `docs_dir` is given, Great Expectations Data Docs
    (HTML) for this run replace whatever that folder held. Raises GateError, listing every
    failed expectation with its unexpected count and examples, when an expectation of severity
    "error" fails; warnings are only logged. Raises InputDataError for an invalid suite file and
    ParamsError when a `$param` it needs is missing from `parameters`.
    """
    suite_path = Path(suite_path)
    suite = load_suite(suite_path)
    parameters = parameters or {}
    selected, skipped = _select_expectations(suite, suite_path, parameters)
    data = _with_derived_columns(frame.reset_index(drop=True), suite, suite_path)

    results = _run_great_expectations(data, suite["name"], selected, docs_dir)
    summary = _summarise(suite, suite_path, selected, skipped, results, data)

    failed_warnings = [
        item for item in summary["expectations"] if not item["success"] and item["severity"] == "warning"
    ]
    for item in failed_warnings:
        logger.warning("suite %s (warning): %s", suite["name"], _describe(item, len(data)))
    if not summary["success"]:
        raise GateError(gate, _failure_message(summary, suite_path, len(data)))
    logger.info(
        "suite %s passed: %d expectations, %d warnings, %d skipped",
        suite["name"],
        summary["evaluated"],
        len(failed_warnings),
        summary["skipped"],
    )
    return summary


def load_suite(path: Path) -> dict[str, Any]:
    """Read and check the structure of a suite file; errors name the file and expectation."""
    if not path.is_file():
        raise InputDataError(
            str(path), "expectation suite not found", "Check the --suite path or restore the file."
        )
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputDataError(
            str(path), f"invalid JSON at line {exc.lineno}: {exc.msg}", "Fix the JSON syntax."
        ) from None
    if not isinstance(suite, dict) or not isinstance(suite.get("name"), str) or not suite["name"]:
        raise InputDataError(str(path), "a suite must be an object with a non-empty `name`", "Add a `name`.")
    expectations = suite.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise InputDataError(
            str(path), "`expectations` must be a non-empty list", "List at least one expectation."
        )
    for number, item in enumerate(expectations):
        where = f"expectation #{number}"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InputDataError(str(path), f"{where} needs a `type` string", "Add the expectation type.")
        if not isinstance(item.get("kwargs", {}), dict):
            raise InputDataError(
                str(path), f"{where} ({item['type']}): `kwargs` must be an object", "Fix `kwargs`."
            )
        if item.get("severity", "error") not in SEVERITIES:
            raise InputDataError(
                str(path),
                f"{where} ({item['type']}): severity {item.get('severity')!r} is unknown",
                "Use error or warning.",
            )
        if not isinstance(item.get("when", {}), dict):
            raise InputDataError(
                str(path), f"{where} ({item['type']}): `when` must be an object", "Fix `when`."
            )
    for number, derived in enumerate(suite.get("derived_columns", [])):
        if (
            not isinstance(derived, dict)
            or derived.get("kind") not in DERIVED_KINDS
            or not derived.get("name")
        ):
            raise InputDataError(
                str(path),
                f"derived column #{number} needs a `name` and a `kind` ({', '.join(DERIVED_KINDS)})",
                "Fix the derived column.",
            )
    return suite


def _expectation_class(name: str, path: Path, number: int):
    import great_expectations.expectations as gxe

    class_name = "".join(part.capitalize() for part in name.split("_"))
    expectation_class = getattr(gxe, class_name, None)
    if expectation_class is None or not name.startswith("expect_"):
        raise InputDataError(
            str(path),
            f"expectation #{number}: unknown type {name!r}",
            "Use a Great Expectations 1.x expectation name such as expect_column_values_to_not_be_null.",
        )
    return expectation_class


def _lookup(parameters: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    value: Any = parameters
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _resolve(value: Any, parameters: Mapping[str, Any], path: Path, where: str) -> Any:
    """Replace every {"$param": "a.b"} in `value` by that entry of `parameters`."""
    if isinstance(value, dict):
        if set(value) == {"$param"}:
            found, resolved = _lookup(parameters, str(value["$param"]))
            if not found:
                raise ParamsError(
                    str(value["$param"]),
                    None,
                    f"is needed by {where} of the expectation suite {path}",
                    "Add it to params.yaml or remove the reference from the suite.",
                )
            return resolved
        return {key: _resolve(item, parameters, path, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, parameters, path, where) for item in value]
    return value


def _applies(when: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    for dotted, expected in when.items():
        _, actual = _lookup(parameters, dotted)
        if isinstance(expected, dict) and set(expected) == {"$not_empty"}:
            if bool(actual) != bool(expected["$not_empty"]):
                return False
        elif actual != expected:
            return False
    return True


def _select_expectations(
    suite: dict[str, Any], path: Path, parameters: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """Return the expectations that apply, with resolved kwargs and their classes, and the skipped count."""
    selected = []
    skipped = 0
    for number, item in enumerate(suite["expectations"]):
        if not _applies(item.get("when", {}), parameters):
            skipped += 1
            continue
        where = f"expectation #{number} ({item['type']})"
        kwargs = _resolve(item.get("kwargs", {}), parameters, path, where)
        expectation_class = _expectation_class(item["type"], path, number)
        meta = {"severity": item.get("severity", "error"), "suite_index": number}
        if item.get("notes"):
            meta["notes"] = item["notes"]
        try:
            expectation = expectation_class(**kwargs, meta=meta)
        except (TypeError, ValueError) as exc:  # GX validates arguments with pydantic.v1 (a ValueError)
            raise InputDataError(
                str(path), f"{where}: invalid kwargs {kwargs}: {exc}", "Fix the kwargs of that expectation."
            ) from None
        selected.append(
            {
                "number": number,
                "type": item["type"],
                "kwargs": kwargs,
                "severity": meta["severity"],
                "expectation": expectation,
            }
        )
    return selected, skipped


def _with_derived_columns(frame: pd.DataFrame, suite: dict[str, Any], path: Path) -> pd.DataFrame:
    derived = suite.get("derived_columns", [])
    if not derived:
        return frame
    data = frame.copy()
    for spec in derived:
        name = spec["name"]
        if name in data.columns:
            raise InputDataError(
                str(path), f"derived column {name!r} already exists in the data", "Rename the derived column."
            )
        sources = spec.get("columns") or [spec.get("column")]
        missing = [column for column in sources if column not in data.columns]
        if missing:
            # The expectation on the derived column fails with a clear "column not found" instead.
            logger.warning(
                "suite %s: derived column %s skipped, source column %s missing",
                suite["name"],
                name,
                missing[0],
            )
            continue
        if spec["kind"] == "value_count":
            column = data[sources[0]]
            data[name] = column.map(column.value_counts(dropna=True)).astype("Int64")
        else:
            data[name] = _normalised_key(data, sources)
    return data


def _normalised_key(data: pd.DataFrame, columns: list[str]) -> pd.Series:
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for column in columns:
        folded = data[column].astype("string").str.casefold()
        # RE2 (pyarrow) rather than Python re, which has no \p{...} classes.
        spaced = pc.replace_substring_regex(pa.array(folded), pattern=r"[\p{P}\p{Z}\s]+", replacement=" ")
        parts.append(pd.Series(pd.array(pc.utf8_trim_whitespace(spaced), dtype="string"), index=data.index))
    key = parts[0]
    for part in parts[1:]:
        key = key + "\x1f" + part
    return key


def _run_great_expectations(
    data: pd.DataFrame, suite_name: str, selected: list[dict[str, Any]], docs_dir: str | Path | None
) -> list[Any]:
    """Run the expectations in an ephemeral context; returns one result per selected expectation."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX 1.24 pins the logger of great_expectations.data_context.types.base to INFO, so every
    # context logs a line. Set it back to WARNING like the rest of the library.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.variables.data_docs_sites or {}):
        context.delete_data_docs_site(site)

    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for item in selected:
        suite.add_expectation(item["expectation"])
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch_definition, suite=suite, name=suite_name)
    )

    actions = []
    staging = None
    if docs_dir is not None:
        docs_dir = Path(docs_dir)
        docs_dir.parent.mkdir(parents=True, exist_ok=True)
        # GX requires an absolute base directory.
        staging = Path(tempfile.mkdtemp(prefix=f".{docs_dir.name}.", dir=docs_dir.parent)).resolve()
        context.add_data_docs_site(
            SITE_NAME,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(staging),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=[SITE_NAME]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    try:
        outcome = checkpoint.run(batch_parameters={"dataframe": data})
        if staging is not None:
            if docs_dir.exists():
                shutil.rmtree(docs_dir)
            os.replace(staging, docs_dir)
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    validation = next(iter(outcome.run_results.values()))
    by_number = {result.expectation_config.meta.get("suite_index"): result for result in validation.results}
    return [by_number.get(item["number"]) for item in selected]


def _summarise(
    suite: dict[str, Any],
    path: Path,
    selected: list[dict[str, Any]],
    skipped: int,
    results: list[Any],
    data: pd.DataFrame,
) -> dict[str, Any]:
    sources = {
        spec["name"]: spec.get("columns") or [spec.get("column")] for spec in suite.get("derived_columns", [])
    }
    items = []
    for item, result in zip(selected, results, strict=True):
        entry: dict[str, Any] = {
            "type": item["type"],
            "kwargs": {key: value for key, value in item["kwargs"].items() if key != "meta"},
            "severity": item["severity"],
            "success": bool(result is not None and result.success),
        }
        if result is None:
            entry["error"] = "no result returned by Great Expectations"
        else:
            details = result.result or {}
            exception = _exception_message(result)
            if exception:
                entry["error"] = exception
            if "unexpected_count" in details:
                entry["unexpected_count"] = int(details["unexpected_count"])
                entry["element_count"] = int(details.get("element_count", len(data)))
                entry["examples"] = _examples(details, item["kwargs"].get("column"), sources, data)
            elif "observed_value" in details:
                entry["observed_value"] = _plain(details["observed_value"])
        items.append(entry)
    failed_errors = [entry for entry in items if not entry["success"] and entry["severity"] == "error"]
    return {
        "suite": suite["name"],
        "suite_path": str(path),
        "success": not failed_errors,
        "evaluated": len(items),
        "skipped": skipped,
        "failed": len([entry for entry in items if not entry["success"]]),
        "expectations": items,
    }


def _exception_message(result: Any) -> str | None:
    info = result.exception_info or {}
    # exception_info is one dict, or a dict of dicts keyed by metric when several metrics failed.
    candidates = (
        [info]
        if "raised_exception" in info
        else [value for value in info.values() if isinstance(value, dict)]
    )
    for candidate in candidates:
        if candidate.get("raised_exception"):
            message = str(candidate.get("exception_message") or "raised an exception")
            return message.splitlines()[0][:300]
    return None


def _examples(
    details: Mapping[str, Any], column: str | None, sources: dict[str, list[str]], data: pd.DataFrame
) -> list[str]:
    """Return a few unexpected rows as "row <row_id>: <value>" strings."""
    positions = list(details.get("partial_unexpected_index_list") or [])[:EXAMPLES]
    values = list(details.get("partial_unexpected_list") or [])[:EXAMPLES]
    examples = []
    for offset, value in enumerate(values):
        position = positions[offset] if offset < len(positions) else None
        label = ""
        if isinstance(position, (int,)) and 0 <= position < len(data) and "row_id" in data.columns:
            label = f"row {data['row_id'].iloc[position]}: "
        shown = _short(value)
        if column in sources and isinstance(position, int) and 0 <= position < len(data):
            origin = ", ".join(f"{name}={_short(data[name].iloc[position])}" for name in sources[column])
            shown = f"{origin} ({column}={shown})"
        examples.append(label + shown)
    return examples


def _short(value: Any, limit: int = 80) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "<missing>"
    text = repr(value) if isinstance(value, str) else str(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def _describe(entry: Mapping[str, Any], rows: int) -> str:
    arguments = ", ".join(f"{key}={_short(value, 60)}" for key, value in entry["kwargs"].items())
    text = f"{entry['type']}({arguments})"
    if "unexpected_count" in entry:
        count = entry["unexpected_count"]
        total = entry.get("element_count", rows)
        share = 100.0 * count / total if total else 0.0
        text += f": {count} of {total} rows unexpected ({share:.2f}%)"
        if entry.get("examples"):
            text += "; e.g. " + "; ".join(entry["examples"])
    elif "observed_value" in entry:
        text += f": observed {_short(entry['observed_value'])}"
    if entry.get("error"):
        text += f" [{entry['error']}]"
    return text


def _failure_message(summary: Mapping[str, Any], path: Path, rows: int) -> str:
    failed = [
        entry for entry in summary["expectations"] if not entry["success"] and entry["severity"] == "error"
    ]
    lines = [
        f"suite {summary['suite']} ({path}): {len(failed)} of {summary['evaluated']} expectations "
        f"failed on {rows} rows"
    ]
    lines += [f"- {_describe(entry, rows)}" for entry in failed]
    lines.append("Fix the data or the rule that let it through; Data Docs (if built) show every result.")
    return "\n".join(lines)
