"""Augmenting the train split: pick target classes, generate candidates, filter them, record lineage."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stages.augmentation.backtranslation import Translator, round_trip
from stages.augmentation.config import AugmentConfig
from stages.augmentation.edits import edit_text
from stages.augmentation.fewshot import GenerateFn, build_prompts, run_fewshot
from stages.augmentation.filters import (
    ExistingRows,
    LabelChecker,
    Rejection,
    class_cap_rejections,
    length_rejections,
    within_new_rejections,
)
from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.core.quarantine import Quarantine

logger = logging.getLogger(__name__)

# Lineage columns of augmented rows (real rows carry "[]" and empty values).
PARENT_IDS = "parent_ids"  # JSON list of the train row ids the new row was made from
AUGMENT_METHOD = "augment_method"  # fewshot, backtranslation or edits
GENERATOR_MODEL = "generator_model"  # model or procedure that produced the text
PROMPT_HASH = "prompt_hash"  # sha256 of the generator input (see `Candidate.prompt_hash`)
LINEAGE_COLUMNS = [PARENT_IDS, AUGMENT_METHOD, GENERATOR_MODEL, PROMPT_HASH]

METHODS = ("fewshot", "backtranslation", "edits")
EDITS_MODEL = "word-edits"


@dataclass
class Candidate:
    """One generated text before filtering.

    `prompt_hash` is the sha256 of the generator input: the chat messages for few-shot, the
    model pair and source text for back-translation, and the edit rates and source text for edits.
    `pre_reason` is set when the candidate is rejected before any filter (nothing parsed, cut off).
    """

    label: str
    text: str
    parent_ids: tuple[str, ...]
    method: str
    generator_model: str
    prompt_hash: str
    pre_reason: str | None = None
    pre_detail: str = ""


@dataclass
class Generators:
    """Generating functions and models of the methods; a method whose generator is missing is skipped."""

    fewshot: GenerateFn | None = None
    fewshot_model: str = ""
    translator: Translator | None = None
    # Why back-translation has no translator (model unavailable and `on_unavailable: skip`).
    translator_unavailable: str | None = None


@dataclass
class AugmentResult:
    train: pd.DataFrame
    new_rows: pd.DataFrame
    quarantine: Quarantine
    lineage: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def check_train(train: pd.DataFrame, location: str = "train split") -> None:
    """Raise InputDataError unless the train rows have ids, texts and labels."""
    for column in (S.ROW_ID, S.TEXT, S.LABEL):
        if column not in train.columns:
            raise InputDataError(
                location, f"column `{column}` is missing", "Rerun the split stage.", field=column
            )
    missing = train[S.LABEL].isna() | train[S.TEXT].isna()
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0]) + 1
        raise InputDataError(
            location,
            "a row has no text or no label",
            "Augmentation needs labelled rows; check the curate stage's label rules.",
            row=row,
        )
    if train[S.ROW_ID].duplicated().any():
        duplicate = str(train.loc[train[S.ROW_ID].duplicated(), S.ROW_ID].iloc[0])
        raise InputDataError(
            location, f"row id {duplicate} appears twice", "Rerun the split stage.", field=S.ROW_ID
        )


def target_labels(train: pd.DataFrame, config: AugmentConfig) -> list[str]:
    """Return the classes to augment: below `class_floor` (or all), smallest first, at most `max_classes`."""
    counts = train[S.LABEL].astype(str).value_counts()
    if config.target_classes == "below_floor":
        counts = counts[counts < config.class_floor]
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    if config.max_classes is not None:
        ordered = ordered[: config.max_classes]
    return [label for label, _ in ordered]


def pick_parents(train: pd.DataFrame, label: str, count: int, method: str, seed: int) -> pd.DataFrame:
    """Choose `count` train rows of `label` (with replacement only when the class has fewer rows)."""
    rows = train[train[S.LABEL].astype(str) == label]
    generator = np.random.default_rng([seed, int(S.sha256_hex(method, label)[:8], 16)])
    chosen = generator.choice(len(rows), size=count, replace=count > len(rows))
    return rows.iloc[np.sort(chosen)]


def fewshot_candidates(
    train: pd.DataFrame, labels: Sequence[str], config: AugmentConfig, generators: Generators, seed: int
) -> tuple[list[Candidate], dict[str, Any]]:
    settings = config.fewshot
    if not settings.enabled:
        return [], {"status": "disabled"}
    if not labels:
        return [], {"status": "no target classes"}
    if generators.fewshot is None:
        raise ValueError("few-shot generation is enabled but no generating function was given")
    prompts = build_prompts(train, labels, settings, seed)
    outputs, result = run_fewshot(prompts, generators.fewshot, settings.max_new_tokens)

    candidates: list[Candidate] = []
    for output in outputs:
        prompt = output.prompt
        common = {
            "label": prompt.label,
            "parent_ids": prompt.parent_ids,
            "method": "fewshot",
            "generator_model": generators.fewshot_model,
            "prompt_hash": prompt.prompt_hash,
        }
        if not output.candidates:
            candidates.append(
                Candidate(
                    text=output.raw,
                    pre_reason="no_candidate_parsed",
                    pre_detail="no list item found",
                    **common,
                )
            )
            continue
        last = len(output.candidates) - 1
        for position, text in enumerate(output.candidates):
            if output.truncated and position == last:
                candidates.append(
                    Candidate(
                        text=text,
                        pre_reason="truncated_output",
                        pre_detail=f"the output reached max_new_tokens ({settings.max_new_tokens})",
                        **common,
                    )
                )
            else:
                candidates.append(Candidate(text=text, **common))
    stats = {"status": "ran", "prompts": len(prompts), **result.stats()}
    return candidates, stats


def backtranslation_candidates(
    train: pd.DataFrame, labels: Sequence[str], config: AugmentConfig, generators: Generators, seed: int
) -> tuple[list[Candidate], dict[str, Any]]:
    settings = config.backtranslation
    if not settings.enabled:
        return [], {"status": "disabled"}
    if generators.translator is None:
        reason = generators.translator_unavailable or "no translator was given"
        return [], {"status": "skipped", "reason": reason}
    if not labels:
        return [], {"status": "no target classes"}
    translator = generators.translator
    parents = pd.concat(
        [pick_parents(train, label, settings.rows_per_class, "backtranslation", seed) for label in labels]
    )
    sources = parents[S.TEXT].astype(str).tolist()
    _, back = round_trip(translator, sources, settings, seed)
    candidates = []
    for (_, parent), source, text in zip(parents.iterrows(), sources, back, strict=True):
        candidate = Candidate(
            label=str(parent[S.LABEL]),
            text=text,
            parent_ids=(str(parent[S.ROW_ID]),),
            method="backtranslation",
            generator_model=translator.name,
            prompt_hash=S.sha256_hex("backtranslation", translator.name, source),
        )
        if not text.strip():
            candidate.pre_reason = "empty_output"
            candidate.pre_detail = "the round trip returned no text"
        candidates.append(candidate)
    return candidates, {"status": "ran", "rows": len(sources), "model": translator.name}


def edit_candidates(
    train: pd.DataFrame, labels: Sequence[str], config: AugmentConfig, seed: int
) -> tuple[list[Candidate], dict[str, Any]]:
    settings = config.edits
    if not settings.enabled:
        return [], {"status": "disabled"}
    if not labels:
        return [], {"status": "no target classes"}
    generator = np.random.default_rng([seed, int(S.sha256_hex("edits")[:8], 16)])
    model = f"{EDITS_MODEL}(deletion_rate={settings.deletion_rate}, swap_rate={settings.swap_rate})"
    candidates = []
    for label in labels:
        parents = pick_parents(train, label, settings.rows_per_class, "edits", seed)
        for _, parent in parents.iterrows():
            source = str(parent[S.TEXT])
            candidates.append(
                Candidate(
                    label=label,
                    text=edit_text(source, settings.deletion_rate, settings.swap_rate, generator),
                    parent_ids=(str(parent[S.ROW_ID]),),
                    method="edits",
                    generator_model=model,
                    prompt_hash=S.sha256_hex("edits", settings.deletion_rate, settings.swap_rate, source),
                )
            )
    return candidates, {"status": "ran", "rows": len(candidates)}


def candidate_frame(
    candidates: Sequence[Candidate], train: pd.DataFrame, normalise: Callable[[pd.Series], pd.Series]
) -> pd.DataFrame:
    """Turn candidates into rows of the common schema with lineage columns and stable row ids.

    The text is normalised with `normalise` (the curate stage's rules). A new row inherits the
    group of its first parent and the latest parseable timestamp of its parents, so group and
    temporal splits stay meaningful. The row id hashes the method, prompt hash, position among
    the candidates of that method and text, so equal runs give equal ids.
    """
    parents = train.set_index(train[S.ROW_ID].astype(str))
    has_group = S.GROUP in train.columns
    has_timestamp = S.TIMESTAMP in train.columns
    records = []
    position_in_method: dict[str, int] = {}
    for candidate in candidates:
        ordinal = position_in_method.get(candidate.method, 0)
        position_in_method[candidate.method] = ordinal + 1
        records.append(
            {
                S.ROW_ID: ordinal,
                S.TEXT: candidate.text,
                S.LABEL: candidate.label,
                S.TARGET: pd.NA,
                S.TIMESTAMP: _latest(parents, candidate.parent_ids) if has_timestamp else pd.NA,
                S.GROUP: _first_value(parents, candidate.parent_ids, S.GROUP) if has_group else pd.NA,
                S.SPLIT: "train",
                S.SOURCE: f"augment-{candidate.method}",
                S.SOURCE_TYPE: "augment",
                S.SOURCE_LOCATION: candidate.generator_model,
                S.SOURCE_ROW: ordinal + 1,
                S.SOURCE_QUERY: candidate.prompt_hash,
                S.ACQUIRED_AT: pd.NA,
                S.SYNTHETIC: True,
                PARENT_IDS: json.dumps(list(candidate.parent_ids)),
                AUGMENT_METHOD: candidate.method,
                GENERATOR_MODEL: candidate.generator_model,
                PROMPT_HASH: candidate.prompt_hash,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=[*S.ALL_COLUMNS, *LINEAGE_COLUMNS])
    ordinals = frame[S.ROW_ID].tolist()
    # Candidates rejected before filtering keep their raw text, so the quarantine shows what came out.
    to_normalise = np.array([candidate.pre_reason is None for candidate in candidates], dtype=bool)
    if to_normalise.any():
        texts = frame[S.TEXT].astype("string")
        texts[to_normalise] = normalise(texts[to_normalise]).fillna("").to_numpy()
        frame[S.TEXT] = texts
    frame[S.ROW_ID] = [
        S.sha256_hex("augment", method, prompt, ordinal, text)[:20]
        for method, prompt, ordinal, text in zip(
            frame[AUGMENT_METHOD], frame[PROMPT_HASH], ordinals, frame[S.TEXT], strict=True
        )
    ]
    for column in frame.columns:
        if column == S.SOURCE_ROW:
            frame[column] = frame[column].astype("int64")
        elif column == S.SYNTHETIC:
            frame[column] = frame[column].astype("bool")
        else:
            frame[column] = frame[column].astype("string")
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    return frame


def _first_value(parents: pd.DataFrame, parent_ids: Sequence[str], column: str) -> Any:
    value = parents.at[parent_ids[0], column] if parent_ids and parent_ids[0] in parents.index else pd.NA
    return pd.NA if pd.isna(value) else value


def _latest(parents: pd.DataFrame, parent_ids: Sequence[str]) -> Any:
    values = [parents.at[row_id, S.TIMESTAMP] for row_id in parent_ids if row_id in parents.index]
    values = [value for value in values if not pd.isna(value)]
    if not values:
        return pd.NA
    parsed = pd.to_datetime(pd.Series(values, dtype="string"), errors="coerce", utc=True, format="mixed")
    if parsed.isna().all():
        return values[0]
    return values[int(parsed.fillna(pd.Timestamp.min.tz_localize("UTC")).to_numpy().argmax())]


def generate_candidates(
    train: pd.DataFrame, labels: Sequence[str], config: AugmentConfig, generators: Generators, seed: int
) -> tuple[list[Candidate], dict[str, dict[str, Any]]]:
    """Run the methods in a fixed order (few-shot, back-translation, edits) and collect candidates."""
    if not config.enabled:
        return [], {}
    method_stats: dict[str, dict[str, Any]] = {}
    candidates: list[Candidate] = []
    produced, method_stats["fewshot"] = fewshot_candidates(train, labels, config, generators, seed)
    candidates += produced
    produced, method_stats["backtranslation"] = backtranslation_candidates(
        train, labels, config, generators, seed
    )
    candidates += produced
    produced, method_stats["edits"] = edit_candidates(train, labels, config, seed)
    candidates += produced
    return candidates, method_stats


def filter_candidates(
    frame: pd.DataFrame,
    candidates: Sequence[Candidate],
    train: pd.DataFrame,
    other_splits: Mapping[str, pd.DataFrame],
    config: AugmentConfig,
    seed: int,
    quarantine: Quarantine,
) -> np.ndarray:
    """Apply the checks in order and return the mask of accepted candidates.

    Order: rejections found while generating, length bounds, exact duplicates of any split,
    near duplicates of any split, duplicates among the new rows, label consistency, class cap.
    A candidate rejected by one check is quarantined with that reason and skips the rest.
    """
    alive = np.ones(len(frame), dtype=bool)

    def reject(rejections: Sequence[Rejection], positions: np.ndarray) -> None:
        for rejection in rejections:
            rows = positions[rejection.positions]
            quarantine.add(
                frame.iloc[rows], rejection.reason, pd.Series(rejection.details, index=frame.index[rows])
            )
            alive[rows] = False

    def texts_in_play() -> tuple[np.ndarray, list[str]]:
        positions = np.flatnonzero(alive)
        return positions, frame[S.TEXT].iloc[positions].tolist()

    pre = [candidate.pre_reason for candidate in candidates]
    for reason in sorted({value for value in pre if value is not None}):
        positions = [index for index, value in enumerate(pre) if value == reason]
        details = [candidates[index].pre_detail for index in positions]
        reject([Rejection(reason, positions, details)], np.arange(len(frame)))

    filters = config.filters
    existing = ExistingRows({"train": train, **other_splits}, filters.near_duplicate)
    positions, texts = texts_in_play()
    reject(length_rejections(texts, filters), positions)
    positions, texts = texts_in_play()
    reject(existing.exact_rejections(texts), positions)
    positions, texts = texts_in_play()
    reject(existing.near_rejections(texts), positions)
    positions, texts = texts_in_play()
    reject(within_new_rejections(texts, filters.near_duplicate), positions)

    positions, texts = texts_in_play()
    if filters.label_check.enabled and len(positions):
        checker = LabelChecker(train, filters.label_check, seed)
        reject(checker.rejections(texts, frame[S.LABEL].iloc[positions].tolist()), positions)

    positions, _ = texts_in_play()
    synthetic = _synthetic_mask(train)
    real_counts = train.loc[~synthetic, S.LABEL].astype(str).value_counts().to_dict()
    synthetic_counts = train.loc[synthetic, S.LABEL].astype(str).value_counts().to_dict()
    labels = frame[S.LABEL].iloc[positions].tolist()
    reject(
        class_cap_rejections(labels, real_counts, filters.max_synthetic_share, synthetic_counts), positions
    )
    return alive


def _synthetic_mask(frame: pd.DataFrame) -> np.ndarray:
    if S.SYNTHETIC not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[S.SYNTHETIC].fillna(False).astype(bool).to_numpy()


def augment_train(
    train: pd.DataFrame,
    other_splits: Mapping[str, pd.DataFrame],
    config: AugmentConfig,
    seed: int,
    generators: Generators,
    normalise: Callable[[pd.Series], pd.Series],
) -> AugmentResult:
    """Add filtered synthetic rows to the train rows; every rejected candidate goes to quarantine.

    `other_splits` are the validation and test rows: no new row may equal or be near one of them.
    Real train rows are never dropped: rows in (train + candidates) = rows out + quarantined.
    """
    check_train(train)
    quarantine = Quarantine("augment")
    labels = target_labels(train, config) if config.enabled else []
    logger.info(
        "augmenting %d classes: %s",
        len(labels),
        ", ".join(labels[:10]) + (" ..." if len(labels) > 10 else ""),
    )

    candidates, method_stats = generate_candidates(train, labels, config, generators, seed)
    frame = candidate_frame(candidates, train, normalise)
    alive = filter_candidates(frame, candidates, train, other_splits, config, seed, quarantine)

    accepted = frame.iloc[np.flatnonzero(alive)].reset_index(drop=True)
    real = train.copy()
    real[PARENT_IDS] = pd.Series("[]", index=real.index, dtype="string")
    for column in (AUGMENT_METHOD, GENERATOR_MODEL, PROMPT_HASH):
        real[column] = pd.Series(pd.NA, index=real.index, dtype="string")
    augmented = (
        pd.concat([real, accepted], ignore_index=True) if len(accepted) else real.reset_index(drop=True)
    )
    quarantine.check(len(train) + len(frame), len(augmented))

    lineage = lineage_table(frame, accepted)
    metrics = summarise(train, frame, accepted, quarantine, labels, method_stats)
    return AugmentResult(
        train=augmented, new_rows=accepted, quarantine=quarantine, lineage=lineage, metrics=metrics
    )


def lineage_table(candidates: pd.DataFrame, accepted: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (new row, parent) pair for every candidate, with whether it was accepted."""
    kept = set(accepted[S.ROW_ID].astype(str))
    records = []
    for _, row in candidates.iterrows():
        for parent in json.loads(row[PARENT_IDS]):
            records.append(
                {
                    S.ROW_ID: row[S.ROW_ID],
                    "parent_id": parent,
                    S.LABEL: row[S.LABEL],
                    AUGMENT_METHOD: row[AUGMENT_METHOD],
                    GENERATOR_MODEL: row[GENERATOR_MODEL],
                    PROMPT_HASH: row[PROMPT_HASH],
                    "accepted": row[S.ROW_ID] in kept,
                }
            )
    columns = [S.ROW_ID, "parent_id", S.LABEL, AUGMENT_METHOD, GENERATOR_MODEL, PROMPT_HASH, "accepted"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in columns[:-1]:
        frame[column] = frame[column].astype("string")
    frame["accepted"] = frame["accepted"].astype("bool")
    return frame


def summarise(
    train: pd.DataFrame,
    candidates: pd.DataFrame,
    accepted: pd.DataFrame,
    quarantine: Quarantine,
    labels: Sequence[str],
    method_stats: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Build the metrics: counts per method and reason, per-class additions and generation speed."""
    rejected = quarantine.frame()
    per_method: dict[str, Any] = {}
    for method in METHODS:
        generated = int((candidates[AUGMENT_METHOD] == method).sum()) if len(candidates) else 0
        kept = int((accepted[AUGMENT_METHOD] == method).sum()) if len(accepted) else 0
        reasons: dict[str, int] = {}
        if len(rejected):
            mine = rejected[rejected[AUGMENT_METHOD] == method]
            reasons = {
                str(key): int(value)
                for key, value in mine["quarantine_reason"].value_counts().sort_index().items()
            }
        per_method[method] = {
            **method_stats.get(method, {"status": "disabled"}),
            "generated": generated,
            "accepted": kept,
            "rejected": generated - kept,
            "rejected_by_reason": reasons,
            "acceptance_rate": round(kept / generated, 4) if generated else None,
        }
    added = accepted[S.LABEL].astype(str).value_counts().to_dict() if len(accepted) else {}
    real_counts = train[S.LABEL].astype(str).value_counts()
    return {
        "rows_in": len(train) + len(candidates),
        "real_rows": len(train),
        "rows_out": len(train) + len(accepted),
        "generated": len(candidates),
        "accepted": len(accepted),
        "rejected": len(quarantine),
        "rejected_by_reason": quarantine.counts(),
        "synthetic_share": round(len(accepted) / (len(train) + len(accepted)), 6),
        "target_classes": {
            label: {"real": int(real_counts[label]), "added": int(added.get(label, 0))} for label in labels
        },
        "methods": per_method,
        "tokens_per_second": per_method["fewshot"].get("tokens_per_second"),
    }
