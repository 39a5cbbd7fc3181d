"""Test inputs with all their references, and the text metrics every generating system is scored with.

A generation test split has one row per (input, reference) pair, so one input appears on as many
rows as it has references. Scoring groups the rows by input: each system generates one output per
distinct input, and that output is scored against all of the input's references together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sacrebleu
from rouge_score import rouge_scorer

from stages.core import schema as S
from stages.core.errors import InputDataError

REFERENCES = "references"
REFERENCE_ROW_IDS = "reference_row_ids"

# Columns of every prediction table, whatever the system.
PREDICTION = "prediction"
GENERATED_TOKENS = "generated_tokens"
# Share of the batch's wall time, in milliseconds: batch seconds / prompts in the batch.
LATENCY_MS = "latency_ms"
# Wall time of generating for this input alone (batch of one); NaN for inputs not timed so.
SINGLE_LATENCY_MS = "single_latency_ms"


def group_references(rows: pd.DataFrame, location: str = "test split") -> pd.DataFrame:
    """Return one row per distinct input with its references in row order, sorted by input.

    Raises InputDataError when a row lacks its input or target.
    """
    for column in (S.TEXT, S.TARGET):
        if column not in rows:
            raise InputDataError(
                location, f"column `{column}` not found", "Run the pipeline with `task.type: generation`."
            )
        missing = rows[column].isna()
        if missing.any():
            first = rows.loc[missing, S.ROW_ID].iloc[0] if S.ROW_ID in rows else rows.index[missing][0]
            raise InputDataError(
                location,
                f"{int(missing.sum())} rows have no `{column}` (first: row_id {first})",
                "Check the curate stage's expectations for generation rows.",
            )

    grouped = rows.groupby(S.TEXT, sort=True, dropna=False)
    table = pd.DataFrame(
        {
            S.TEXT: pd.array(list(grouped.groups.keys()), dtype="string"),
            REFERENCES: [list(map(str, part[S.TARGET])) for _, part in grouped],
            REFERENCE_ROW_IDS: [
                list(map(str, part[S.ROW_ID])) if S.ROW_ID in part else [] for _, part in grouped
            ],
        }
    )
    return table


def select_inputs(grouped: pd.DataFrame, count: int | None, seed: int) -> pd.DataFrame:
    """Return a seeded sample of `count` distinct inputs (all when None), sorted by input."""
    if count is None or count >= len(grouped):
        return grouped.reset_index(drop=True)
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(len(grouped), size=count, replace=False))
    return grouped.iloc[chosen].reset_index(drop=True)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Lay references out as sacrebleu wants them: one list per reference position, not per input.

    Stream j holds the j-th reference of every input. An input with fewer references than the
    largest count gets None in the remaining streams, which sacrebleu (2.x) skips for that input.
    """
    if not references:
        return []
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every input needs at least one reference")
    width = max(len(refs) for refs in references)
    return [
        [refs[position] if position < len(refs) else None for refs in references] for position in range(width)
    ]


def text_scores(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Score outputs against all references of their input: corpus BLEU, chrF and mean ROUGE-L.

    All three are on a 0-100 scale. ROUGE-L is the F-measure against the best-matching reference
    of each input (rouge-score with stemming), averaged over inputs.
    """
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} reference lists")
    if not outputs:
        return {"bleu": 0.0, "chrf": 0.0, "rouge_l": 0.0}
    outputs = [output if isinstance(output, str) else "" for output in outputs]
    streams = reference_streams(references)
    bleu = sacrebleu.corpus_bleu(outputs, streams)
    chrf = sacrebleu.corpus_chrf(outputs, streams)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [
        scorer.score_multi(list(refs), output)["rougeL"].fmeasure
        for output, refs in zip(outputs, references, strict=True)
    ]
    return {
        "bleu": round(float(bleu.score), 4),
        "chrf": round(float(chrf.score), 4),
        "rouge_l": round(100.0 * float(np.mean(rouge)), 4),
    }


def speed_scores(table: pd.DataFrame) -> dict[str, float | None]:
    """Return latency per example (batched), single-request latency and generated tokens per second."""
    latency = table[LATENCY_MS].astype("float64")
    tokens = table[GENERATED_TOKENS].astype("float64")
    seconds = float(latency.sum()) / 1000.0
    single = (
        table[SINGLE_LATENCY_MS].dropna().astype("float64")
        if SINGLE_LATENCY_MS in table
        else pd.Series(dtype="float64")
    )
    return {
        "latency_ms_per_example": round(float(latency.mean()), 3) if len(latency) else None,
        "generated_tokens_per_second": round(float(tokens.sum()) / seconds, 3) if seconds > 0 else None,
        "mean_generated_tokens": round(float(tokens.mean()), 3) if len(tokens) else None,
        "single_latency_ms_p50": round(float(np.percentile(single, 50)), 3) if len(single) else None,
        "single_latency_ms_p95": round(float(np.percentile(single, 95)), 3) if len(single) else None,
    }


def score_system(table: pd.DataFrame, inputs: pd.DataFrame, name: str) -> dict[str, float | int | None]:
    """Score one system's prediction table against the references of the selected test inputs.

    Raises InputDataError when the table does not cover exactly the selected inputs, which happens
    when a prediction table is older than the current test selection.
    """
    expected = list(inputs[S.TEXT].astype(str))
    produced = list(table[S.TEXT].astype(str))
    if produced != expected:
        missing = sorted(set(expected) - set(produced))
        extra = sorted(set(produced) - set(expected))
        raise InputDataError(
            f"predictions of `{name}`",
            f"the inputs differ from the selected test inputs ({len(missing)} missing, {len(extra)} extra)",
            "Rerun the baselines stage so every system is scored on the same inputs (`dvc repro`).",
        )
    scores: dict[str, float | int | None] = {"inputs": len(table)}
    scores.update(text_scores(list(table[PREDICTION].fillna("")), list(inputs[REFERENCES])))
    scores.update(speed_scores(table))
    return scores


def prediction_table(
    inputs: pd.DataFrame,
    predictions: Sequence[str],
    generated_tokens: Sequence[int],
    latency_ms: Sequence[float],
    single_latency_ms: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Build the table every system writes: input, output, generated tokens and latency."""
    count = len(inputs)
    return pd.DataFrame(
        {
            S.TEXT: inputs[S.TEXT].astype("string").to_numpy(),
            PREDICTION: pd.array(list(predictions), dtype="string"),
            GENERATED_TOKENS: np.asarray(generated_tokens, dtype="int64"),
            LATENCY_MS: np.asarray(latency_ms, dtype="float64"),
            SINGLE_LATENCY_MS: np.asarray(
                single_latency_ms if single_latency_ms is not None else [np.nan] * count, dtype="float64"
            ),
        }
    )
