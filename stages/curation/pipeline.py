"""The curate rules in order, from raw rows to curated rows, quarantine and metrics.

Order matters. Text is repaired and PII redacted first, so every later rule and every table
written (the quarantine included) works on clean, redacted text. Cheap per-row rules run
before the duplicate searches, and the label check runs last, on the rows that remain.

1. text repair                              5. language filter
2. PII redaction                            6. exact duplicates and conflicting labels
3. length rules                             7. near-duplicates
4. label rules, or input coverage of        8. label-error detection, then the imbalance report
   generation targets
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.core.quarantine import Quarantine
from stages.curation import duplicates, labels, lengths, near_duplicates
from stages.curation.config import CurateConfig, TaskType
from stages.curation.coverage import TARGET_MISSES_INPUT, measure_coverage
from stages.curation.imbalance import imbalance_report
from stages.curation.label_issues import LABEL_ISSUE, detect_label_issues, empty_issues
from stages.curation.language import LANGUAGE_NOT_ALLOWED, detect_languages, language_reasons
from stages.curation.pii import PII_TYPES, redact_pii
from stages.curation.strings import matching_keys
from stages.curation.text_repair import repair_texts

logger = logging.getLogger(__name__)

STAGE = "curate"

# Columns the curate stage adds to every row.
PII_REDACTED = "pii_redacted"  # comma-separated PII types replaced in the row, "" for none
NEAR_DUP_CLUSTER = "near_dup_cluster"  # row_id of the kept representative of the row's cluster
LABEL_ISSUE_SUSPECTED = "label_issue_suspected"  # the label check doubts the given label
LABEL_SUGGESTED = "label_suggested"  # the label the check's model prefers, for suspected rows
ADDED_COLUMNS = [PII_REDACTED, NEAR_DUP_CLUSTER, LABEL_ISSUE_SUSPECTED, LABEL_SUGGESTED]


@dataclass
class CurationResult:
    """Curated rows, the quarantine, the suspected label issues and the metrics of one run."""

    rows: pd.DataFrame
    quarantine: Quarantine
    label_issues: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def reason_codes(task_type: TaskType, config: CurateConfig) -> list[str]:
    """Return every quarantine reason code the stage can emit for this task and config."""
    codes = ["empty_text", "text_too_short", "text_too_long"]
    if task_type == "generation":
        codes += ["empty_target", "target_too_short", "target_too_long"]
        if config.coverage.enabled and config.coverage.quarantine:
            codes.append(TARGET_MISSES_INPUT)
    else:
        codes += [labels.MISSING_LABEL, labels.LABEL_NOT_ALLOWED, duplicates.CONFLICTING_LABELS]
    if config.language.enabled:
        codes.append(LANGUAGE_NOT_ALLOWED)
    codes += [duplicates.EXACT_DUPLICATE, duplicates.DUPLICATES_TEST_ROW]
    if config.near_duplicates.enabled:
        codes.append(near_duplicates.NEAR_DUPLICATE)
    if task_type == "classification" and config.label_issues.enabled and config.label_issues.quarantine:
        codes.append(LABEL_ISSUE)
    return sorted(codes)


def required_columns(task_type: TaskType) -> list[str]:
    return [S.ROW_ID, S.TEXT, S.SPLIT, S.TARGET if task_type == "generation" else S.LABEL]


def curate(
    raw: pd.DataFrame, config: CurateConfig, task_type: TaskType, seed: int, source: str = "rows"
) -> CurationResult:
    """Apply every curate rule to `raw`; `source` names the input in error messages."""
    missing = [column for column in required_columns(task_type) if column not in raw.columns]
    if missing:
        raise InputDataError(
            source,
            f"missing column(s) {', '.join(missing)} needed for a {task_type} task",
            "Run the acquire stage, which writes the common row schema, or check `task.type`.",
        )
    rows_in = len(raw)
    quarantine = Quarantine(STAGE)
    work = _with_added_columns(raw)
    text_columns = [S.TEXT, S.TARGET] if task_type == "generation" else [S.TEXT]
    metrics: dict[str, Any] = {"task_type": task_type, "rows_in": rows_in}

    metrics["repairs"] = {}
    for column in text_columns:
        work[column], metrics["repairs"][column] = repair_texts(
            work[column], config.unicode_form, config.repair
        )

    work, metrics["pii"] = _redact(work, text_columns, config)

    for column in text_columns:
        reasons = lengths.length_reasons(work[column], column, config.min_chars, config.max_chars)
        details = lengths.length_detail(work[column], config.min_chars, config.max_chars)
        work = _remove(work, reasons, details, quarantine)

    if task_type == "classification":
        work, metrics["labels"] = _apply_label_rules(work, config, quarantine, source)
    elif config.coverage.enabled:
        work, metrics["coverage"] = _check_coverage(work, config, quarantine)

    if config.language.enabled:
        work, metrics["language"] = _filter_languages(work, task_type, config, quarantine)

    protected = work[S.SPLIT].isin(config.protected_splits)
    decisions = duplicates.exact_duplicate_decisions(
        _exact_keys(work, task_type),
        work[S.LABEL] if task_type == "classification" else None,
        protected,
        work[S.ROW_ID],
        work[S.SPLIT],
        config.conflicting_labels,
    )
    metrics["exact_duplicates"] = decisions.metrics
    work = _remove(work, decisions.reasons, decisions.details, quarantine)

    if config.near_duplicates.enabled:
        work, metrics["near_duplicates"] = _remove_near_duplicates(work, task_type, config, seed, quarantine)

    issues = empty_issues()
    if task_type == "classification" and config.label_issues.enabled:
        work, issues, metrics["label_issues"] = _check_labels(work, config, seed, quarantine)

    quarantine.check(rows_in, len(work))
    work = work.reset_index(drop=True)
    counts = dict.fromkeys(reason_codes(task_type, config), 0)
    counts.update(quarantine.counts())
    metrics.update(
        {
            "rows_out": len(work),
            "rows_quarantined": len(quarantine),
            "quarantine_reasons": counts,
            "rows_out_by_split": {
                str(k): int(v) for k, v in work[S.SPLIT].fillna("none").value_counts().sort_index().items()
            },
        }
    )
    if task_type == "classification":
        metrics["imbalance"] = imbalance_report(work[S.LABEL], config.imbalance.min_rows_per_class)
    return CurationResult(work, quarantine, issues.reset_index(drop=True), metrics)


def _with_added_columns(raw: pd.DataFrame) -> pd.DataFrame:
    work = raw.reset_index(drop=True).copy()
    work[PII_REDACTED] = pd.Series("", index=work.index, dtype="string")
    work[NEAR_DUP_CLUSTER] = pd.Series(pd.NA, index=work.index, dtype="string")
    work[LABEL_ISSUE_SUSPECTED] = False
    work[LABEL_SUGGESTED] = pd.Series(pd.NA, index=work.index, dtype="string")
    return work


def _remove(
    work: pd.DataFrame, reasons: pd.Series, details: pd.Series, quarantine: Quarantine
) -> pd.DataFrame:
    """Move the rows that have a reason into the quarantine, one reason code at a time, sorted."""
    flagged = reasons.notna().to_numpy()
    for reason in sorted(reasons[flagged].unique()):
        selected = (reasons == reason).fillna(False).to_numpy(dtype=bool)
        quarantine.add(work[selected], str(reason), details[selected])
    return work[~flagged]


def _redact(
    work: pd.DataFrame, columns: list[str], config: CurateConfig
) -> tuple[pd.DataFrame, dict[str, Any]]:
    values = dict.fromkeys(config.pii.enabled_types(), 0)
    found = pd.Series("", index=work.index, dtype="string")
    for column in columns:
        result = redact_pii(work[column], config.pii)
        work[column] = result.texts
        for name, count in result.counts.items():
            values[name] += count
        found = found.str.cat(result.types, sep=",")
    # Merge the per-column lists into one sorted, de-duplicated list per row.
    work[PII_REDACTED] = found.map(
        lambda types: ",".join(name for name in PII_TYPES if name in types.split(","))
    ).astype("string")
    metrics = {"values_redacted": values, "rows_redacted": int((work[PII_REDACTED] != "").sum())}
    return work, metrics


def _apply_label_rules(
    work: pd.DataFrame, config: CurateConfig, quarantine: Quarantine, source: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    work[S.LABEL], changed = labels.normalise_labels(work[S.LABEL], config.labels)
    reasons = labels.label_reasons(work[S.LABEL], config.labels)
    not_allowed = (reasons == labels.LABEL_NOT_ALLOWED).fillna(False).astype(bool)
    missing = (reasons == labels.MISSING_LABEL).fillna(False).astype(bool)
    if config.labels.unknown == "error" and not_allowed.any():
        first = work[not_allowed.to_numpy()].iloc[0]
        others = int(not_allowed.sum()) - 1
        raise InputDataError(
            str(first.get(S.SOURCE_LOCATION) or source),
            f"label {first[S.LABEL]!r} is not in `curate.labels.allowed` "
            f"({others} more rows have labels outside it)",
            "Add the label to `curate.labels.allowed`, map it with `curate.labels.aliases`, "
            "or set `curate.labels.unknown: quarantine`",
            row=_source_row(first),
            field=S.LABEL,
        )
    details = pd.Series("", index=work.index, dtype="string")
    details[not_allowed] = (
        "label " + work.loc[not_allowed, S.LABEL] + " is not in curate.labels.allowed"
    ).to_numpy()
    details[missing] = "label is missing or blank"
    return _remove(work, reasons, details, quarantine), {"labels_changed": changed}


def _check_coverage(
    work: pd.DataFrame, config: CurateConfig, quarantine: Quarantine
) -> tuple[pd.DataFrame, dict[str, Any]]:
    settings = config.coverage
    if settings.splits is None:
        in_scope = pd.Series(True, index=work.index)
    else:
        in_scope = work[S.SPLIT].isin(settings.splits).fillna(False).astype(bool)
    result = measure_coverage(work[S.TEXT], work[S.TARGET], in_scope, settings)
    work[S.INPUT_COVERAGE] = result.coverage
    if len(work) and not result.metrics["rows_measured"]:
        logger.warning(
            "input coverage: `curate.coverage.value_pattern` found no values in any of the %d inputs",
            len(work),
        )
    if settings.quarantine and not in_scope.any():
        logger.warning(
            "input coverage: no row is in the splits %s, so none is quarantined. Rows get their split "
            "from their source (`split:` in acquire) or, after curate, from the split stage",
            settings.splits,
        )
    return _remove(work, result.reasons, result.details, quarantine), result.metrics


def _source_row(row: pd.Series) -> int | None:
    value = row.get(S.SOURCE_ROW)
    return None if value is None or pd.isna(value) else int(value)


def _filter_languages(
    work: pd.DataFrame, task_type: TaskType, config: CurateConfig, quarantine: Quarantine
) -> tuple[pd.DataFrame, dict[str, Any]]:
    # Generation inputs are structured (e.g. E2E meaning representations); the target is prose.
    column = S.TARGET if task_type == "generation" else S.TEXT
    detected = detect_languages(work[column], config.language)
    reasons, details = language_reasons(detected, config.language)
    judged = detected["language"].dropna()
    metrics = {
        "column": column,
        "rows_judged": len(judged),
        "detected": {str(k): int(v) for k, v in judged.value_counts().sort_index().items()},
    }
    return _remove(work, reasons, details, quarantine), metrics


def _exact_keys(work: pd.DataFrame, task_type: TaskType) -> pd.Series:
    keys = _keys_with_fallback(work[S.TEXT])
    if task_type == "generation":
        # \x1f cannot occur in a key, so ("a b", "c") and ("a", "b c") stay distinct.
        keys = keys + "\x1f" + _keys_with_fallback(work[S.TARGET])
    return keys


def _keys_with_fallback(texts: pd.Series) -> pd.Series:
    """Return matching keys; a text of punctuation only ("???") keys on its case-folded self."""
    keys = matching_keys(texts)
    return keys.mask(keys == "", texts.astype("string").fillna("").str.casefold())


def _remove_near_duplicates(
    work: pd.DataFrame, task_type: TaskType, config: CurateConfig, seed: int, quarantine: Quarantine
) -> tuple[pd.DataFrame, dict[str, Any]]:
    settings = config.near_duplicates
    if task_type == "classification":
        pairs = near_duplicates.find_near_duplicate_pairs(matching_keys(work[S.TEXT]), settings, seed)
    else:
        pairs = _near_duplicate_generation_pairs(work, settings, seed)
    result = near_duplicates.resolve_near_duplicates(
        pairs, work[S.SPLIT].isin(config.protected_splits), work[S.ROW_ID], work[S.SPLIT]
    )
    work[NEAR_DUP_CLUSTER] = result.clusters
    logger.info(
        "near-duplicates: %d candidate pairs, %d verified, %d clusters",
        pairs.candidates,
        len(pairs),
        result.decisions.metrics["clusters"],
    )
    return _remove(
        work, result.decisions.reasons, result.decisions.details, quarantine
    ), result.decisions.metrics


def _near_duplicate_generation_pairs(
    work: pd.DataFrame, settings: near_duplicates.NearDuplicateConfig, seed: int
) -> near_duplicates.Pairs:
    """Return the pairs with the same input (matching key) whose targets are near-duplicates.

    Comparing whole (input, target) pairs would let a long shared input make different
    references of one input look like copies. Inputs must match exactly because structured
    inputs such as E2E meaning representations differ in meaning by one attribute value.
    """
    pairs = near_duplicates.find_near_duplicate_pairs(matching_keys(work[S.TARGET]), settings, seed)
    inputs = _keys_with_fallback(work[S.TEXT]).to_numpy()
    same_input = inputs[pairs.left] == inputs[pairs.right]
    return near_duplicates.Pairs(
        pairs.left[same_input],
        pairs.right[same_input],
        pairs.jaccard[same_input],
        candidates=pairs.candidates,
    )


def _check_labels(
    work: pd.DataFrame, config: CurateConfig, seed: int, quarantine: Quarantine
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Run the label-error check on unprotected rows; quarantine suspects only when params ask."""
    checked = ~work[S.SPLIT].isin(config.protected_splits)
    issues, metrics = detect_label_issues(
        work.loc[checked, S.TEXT],
        work.loc[checked, S.LABEL],
        work.loc[checked, S.ROW_ID],
        config.label_issues,
        seed,
    )
    work.loc[issues.index, LABEL_ISSUE_SUSPECTED] = True
    work.loc[issues.index, LABEL_SUGGESTED] = issues["label_suggested"]
    metrics["quarantined"] = 0
    if config.label_issues.quarantine and not issues.empty:
        reasons = pd.Series(pd.NA, index=work.index, dtype="string")
        reasons[issues.index] = LABEL_ISSUE
        details = pd.Series("", index=work.index, dtype="string")
        details[issues.index] = [
            f"given {given!r}, model suggests {suggested!r} (probability {confidence:.2f})"
            for given, suggested, confidence in zip(
                issues["label"], issues["label_suggested"], issues["confidence"], strict=True
            )
        ]
        metrics["quarantined"] = len(issues)
        work = _remove(work, reasons, details, quarantine)
    return work, issues, metrics
