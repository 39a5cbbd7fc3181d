"""Tests of stages.generation.scoring: references grouped per input and the text metrics."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import sacrebleu
from e2e_rows import e2e_frame

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.generation.scoring import (
    PREDICTION,
    REFERENCES,
    group_references,
    prediction_table,
    reference_streams,
    score_system,
    select_inputs,
    speed_scores,
    text_scores,
)


def rows(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            S.ROW_ID: [f"r{index}" for index in range(len(pairs))],
            S.TEXT: pd.array([text for text, _ in pairs], dtype="string"),
            S.TARGET: pd.array([target for _, target in pairs], dtype="string"),
        }
    )


def test_group_references_one_row_per_input():
    grouped = group_references(rows([("b", "b one"), ("a", "a one"), ("b", "b two"), ("b", "b three")]))
    assert list(grouped[S.TEXT]) == ["a", "b"]
    assert grouped[REFERENCES].tolist() == [["a one"], ["b one", "b two", "b three"]]
    assert grouped["reference_row_ids"].tolist() == [["r1"], ["r0", "r2", "r3"]]


def test_group_references_e2e_test_file():
    frame = e2e_frame("testset_w_refs.csv", 5, "test")
    grouped = group_references(frame)
    assert len(grouped) == 5
    assert grouped[REFERENCES].map(len).sum() == len(frame)
    for text, references in zip(grouped[S.TEXT], grouped[REFERENCES], strict=True):
        assert references == list(frame.loc[frame[S.TEXT] == text, S.TARGET])


def test_group_references_missing_target_raises():
    frame = rows([("a", "a one"), ("b", "x")])
    frame.loc[1, S.TARGET] = pd.NA
    with pytest.raises(InputDataError, match=r"1 rows have no `target` \(first: row_id r1\)"):
        group_references(frame)


def test_reference_streams_one_list_per_position():
    streams = reference_streams([["a1", "a2", "a3"], ["b1"], ["c1", "c2"]])
    assert streams == [["a1", "b1", "c1"], ["a2", None, "c2"], ["a3", None, None]]


def test_reference_streams_empty_reference_list_raises():
    with pytest.raises(ValueError, match="at least one reference"):
        reference_streams([["a"], []])


def test_text_scores_match_sacrebleu_layout():
    outputs = ["the cat sat on the mat", "a dog ran in the park today"]
    references = [["the cat sat on a mat", "a cat was on the mat"], ["the dog ran in the park"]]
    scores = text_scores(outputs, references)
    streams = [["the cat sat on a mat", "the dog ran in the park"], ["a cat was on the mat", None]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, streams).score, abs=1e-4)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outputs, streams).score, abs=1e-4)


def test_text_scores_use_every_reference():
    references = [["the cat sat on the mat", "a completely different sentence here"]]
    first = text_scores(["the cat sat on the mat"], references)
    second = text_scores(["a completely different sentence here"], references)
    assert first["bleu"] == pytest.approx(100.0)
    assert second["bleu"] == pytest.approx(100.0)
    assert first["rouge_l"] == pytest.approx(100.0)
    assert second["rouge_l"] == pytest.approx(100.0)


def test_text_scores_rouge_is_max_over_references():
    scores = text_scores(["blue spice is a pub"], [["nothing alike at all", "blue spice is a pub"]])
    assert scores["rouge_l"] == pytest.approx(100.0)
    assert text_scores(["blue spice is a pub"], [["nothing alike at all"]])["rouge_l"] == pytest.approx(0.0)


def test_text_scores_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 outputs but 1 reference lists"):
        text_scores(["a", "b"], [["a"]])


def test_select_inputs_is_seeded_and_sorted():
    grouped = group_references(rows([(f"mr{index:02d}", "x") for index in range(30)]))
    first = select_inputs(grouped, 10, seed=3)
    assert len(first) == 10
    assert list(first[S.TEXT]) == sorted(first[S.TEXT])
    assert list(first[S.TEXT]) == list(select_inputs(grouped, 10, seed=3)[S.TEXT])
    assert list(first[S.TEXT]) != list(select_inputs(grouped, 10, seed=4)[S.TEXT])
    assert len(select_inputs(grouped, None, seed=3)) == 30


def test_score_system_rejects_other_inputs():
    inputs = group_references(rows([("a", "a one"), ("b", "b one")]))
    table = prediction_table(inputs.iloc[:1], ["a one"], [2], [5.0])
    with pytest.raises(InputDataError, match=r"1 missing, 0 extra.*Rerun the baselines stage"):
        score_system(table, inputs, "zero_shot")


def test_score_system_reports_text_and_speed():
    inputs = group_references(rows([("a", "the cat sat on the mat"), ("b", "the dog ran in the park")]))
    outputs = ["the cat sat on the mat", "a dog ran to the park"]
    table = prediction_table(inputs, outputs, [4, 6], [100.0, 100.0], [float("nan"), 80.0])
    scores = score_system(table, inputs, "adapter")
    assert scores["inputs"] == 2
    assert 0 < scores["bleu"] < 100
    assert 0 < scores["chrf"] < 100
    assert 0 < scores["rouge_l"] < 100
    assert scores["latency_ms_per_example"] == pytest.approx(100.0)
    assert scores["generated_tokens_per_second"] == pytest.approx(50.0)
    assert scores["single_latency_ms_p50"] == pytest.approx(80.0)
    assert table[PREDICTION].tolist() == outputs


def test_speed_scores_without_single_timings():
    table = prediction_table(group_references(rows([("a", "x")])), ["x"], [3], [30.0])
    scores = speed_scores(table)
    assert scores["single_latency_ms_p50"] is None
    assert math.isclose(scores["generated_tokens_per_second"], 100.0)
