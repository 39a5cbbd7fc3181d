from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from split_data import banking_rows, split_config, with_timestamps

from stages.baselines import TfidfConfig
from stages.core import schema as S
from stages.splitting.runner import split_rows
from stages.splitting.stability import bootstrap_scores, macro_f1_from_codes, measure_stability, summarise

LABELS = [
    "card_arrival",
    "change_pin",
    "exchange_rate",
    "lost_or_stolen_card",
    "top_up_failed",
    "terminate_account",
]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    frame = banking_rows(train_rows=None, test_rows=None)
    return frame[frame[S.LABEL].isin(LABELS)].reset_index(drop=True)


def _measure(frame: pd.DataFrame, **overrides):
    config = split_config(**overrides)
    result = split_rows(frame, config, seed=3)
    return measure_stability(result, config, 3, "rows", TfidfConfig(), has_labels=True)


def test_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, 500)
    predicted = np.where(rng.random(500) < 0.7, truth, rng.integers(0, 9, 500))

    ours = macro_f1_from_codes(truth, predicted, 9)

    assert ours == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))


def test_summary_uses_sample_std():
    summary = summarise([0.8, 0.9, 1.0])

    assert summary == {"mean": 0.9, "std": 0.1, "min": 0.8, "max": 1.0, "n": 3}


def test_bootstrap_interval_contains_score():
    truth = ["a"] * 50 + ["b"] * 50
    predictions = ["a"] * 45 + ["b"] * 5 + ["b"] * 40 + ["a"] * 10

    result = bootstrap_scores(truth, predictions, 300, seed=1)

    low, high = result["test_accuracy"]["ci95"]
    assert low < 0.85 < high
    assert 0 < result["test_macro_f1"]["std"] < 0.1
    assert result == bootstrap_scores(truth, predictions, 300, seed=1)


def test_resplits_report_spread(rows):
    stability = _measure(rows, strategy="stratified", stability={"seeds": 3, "bootstrap": 50, "n_jobs": 2})

    assert stability["method"] == "resplits"
    assert [run["seed"] for run in stability["runs"]] == [3, 4, 5]
    summary = stability["test_macro_f1"]
    assert summary["min"] <= summary["mean"] <= summary["max"]
    assert summary["std"] >= 0
    assert summary["mean"] > 0.7
    assert stability["bootstrap"]["resamples"] == 50
    assert stability == _measure(
        rows, strategy="stratified", stability={"seeds": 3, "bootstrap": 50, "n_jobs": 1}
    )


def test_predefined_resplits_keep_test(rows):
    stability = _measure(rows, stability={"seeds": 2, "bootstrap": 0, "n_jobs": 1})

    test_rows = int((rows[S.SPLIT] == "test").sum())
    assert [run["test_rows"] for run in stability["runs"]] == [test_rows, test_rows]
    assert "bootstrap" not in stability


def test_temporal_reports_bootstrap_only(rows):
    frame = with_timestamps(rows, seed=2, bad=0, missing=0)

    stability = _measure(
        frame, strategy="temporal", group_by="none", stability={"bootstrap": 100, "n_jobs": 1}
    )

    assert stability["method"] == "bootstrap"
    assert "no random choice" in stability["resplits"]["skipped"]
    assert stability["bootstrap"]["test_macro_f1"]["n"] == 100


def test_kfold_scores_every_fold(rows):
    stability = _measure(rows, strategy="kfold", kfold={"folds": 3}, stability={"bootstrap": 20, "n_jobs": 2})

    assert stability["method"] == "folds"
    assert [record["fold"] for record in stability["per_fold"]] == [0, 1, 2]
    assert stability["tfidf"]["validation_macro_f1"]["n"] == 3
    assert stability["tfidf"]["test_macro_f1"]["mean"] > stability["majority"]["test_macro_f1"]["mean"]
    assert stability["majority"]["validation_accuracy"]["mean"] < 0.35


def test_stability_disabled_or_without_labels(rows):
    config = split_config(stability={"enabled": True})
    result = split_rows(rows, config, seed=0)

    assert measure_stability(result, config, 0, "rows", TfidfConfig(), has_labels=False)[
        "skipped"
    ].startswith("the TF-IDF baseline needs class labels")
    assert _measure(rows, stability={"enabled": False}) == {"enabled": False}
