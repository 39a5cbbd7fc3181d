"""Input coverage of generation targets: values found in the input, matching, the column and quarantine."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from pydantic import ValidationError
from test_curation_pipeline import e2e_rows

from stages.core import schema as S
from stages.curation.config import DEFAULT_VALUE_PATTERN, CoverageConfig, CurateConfig
from stages.curation.coverage import TARGET_MISSES_INPUT, input_values, measure_coverage
from stages.curation.pipeline import curate

MR = "name[The Mill], eatType[pub], food[Fast food], area[riverside], familyFriendly[yes]"
SLOTS = re.compile(DEFAULT_VALUE_PATTERN)


def judge(targets: list[str], config: CoverageConfig, texts: list[str] | None = None, scope=None):
    texts_series = pd.Series(texts or [MR] * len(targets))
    in_scope = pd.Series(scope if scope is not None else [True] * len(targets))
    return measure_coverage(texts_series, pd.Series(targets), in_scope, config)


def test_values_in_order_deduplicated():
    text = "name[The  Mill], food[English], near[the mill], familyFriendly[yes], area[]"
    assert input_values(text, SLOTS, frozenset({"yes"})) == ["The Mill", "English"]


def test_pattern_without_group_uses_whole_match():
    assert input_values("call 555-1234 or 555-9876", re.compile(r"\d{3}-\d{4}"), frozenset()) == [
        "555-1234",
        "555-9876",
    ]


def test_missing_values_flagged_and_named():
    config = CoverageConfig(enabled=True, quarantine=True, ignore_values=["yes", "no"])
    full = "The Mill is a family-friendly PUB serving fast  food by the riverside."
    partial = "The Mill is a pub by the riverside."
    result = judge([full, partial], config)
    assert result.coverage.tolist() == [1.0, 0.75]
    assert result.reasons.isna()[0]
    assert result.reasons[1] == TARGET_MISSES_INPUT
    assert result.details[1] == "target mentions 3 of 4 input values; missing 'Fast food'"
    assert result.metrics["rows_measured"] == 2
    assert result.metrics["rows_quarantined"] == 1
    assert result.metrics["mean_coverage"] == pytest.approx((1 + 0.75) / 2)


def test_coverage_recorded_without_quarantine():
    result = judge(
        ["The Mill is a pub by the riverside."], CoverageConfig(enabled=True, ignore_values=["yes"])
    )
    assert result.coverage.tolist() == [0.75]
    assert result.reasons.isna().all()
    assert result.metrics["rows_below_min_coverage"] == 1


def test_min_coverage_tolerates_missing_share():
    partial = "The Mill is a pub by the riverside."
    for min_coverage, flagged in [(0.75, False), (0.8, True)]:
        config = CoverageConfig(
            enabled=True, quarantine=True, ignore_values=["yes"], min_coverage=min_coverage
        )
        assert judge([partial], config).reasons.notna().all() == flagged


def test_unscoped_and_valueless_rows_kept():
    result = judge(
        ["Nothing here.", "Nothing here either."],
        CoverageConfig(enabled=True, quarantine=True),
        texts=[MR, "a free-text input without slots"],
        scope=[False, True],
    )
    assert result.reasons.isna().all()
    assert result.coverage[0] == 0.0
    assert pd.isna(result.coverage[1])
    assert result.metrics["rows_without_values"] == 1
    assert result.metrics["mean_coverage"] == 0.0


def test_config_rejects_invalid_values():
    with pytest.raises(ValidationError, match="regular expression"):
        CoverageConfig(value_pattern="[unclosed")
    with pytest.raises(ValidationError, match="not a split name"):
        CoverageConfig(splits=["holdout"])


def two_split_rows() -> pd.DataFrame:
    test_rows = e2e_rows(4).assign(**{S.SPLIT: "test"})
    test_rows[S.ROW_ID] = "test-" + test_rows[S.ROW_ID].astype(str)
    return pd.concat([e2e_rows(4), test_rows], ignore_index=True)


def test_curate_records_coverage_of_every_row():
    rows = two_split_rows()
    config = CurateConfig(coverage=CoverageConfig(enabled=True, ignore_values=["yes", "no"]))
    outcome = curate(rows, config, "generation", seed=1)
    assert outcome.rows[S.INPUT_COVERAGE].between(0, 1).all()
    assert outcome.metrics["coverage"]["rows_below_min_coverage"] > 0
    assert outcome.metrics["coverage"]["rows_quarantined"] == 0
    assert TARGET_MISSES_INPUT not in outcome.metrics["quarantine_reasons"]


def test_curate_quarantines_train_keeps_test():
    rows = two_split_rows()
    config = CurateConfig(
        coverage=CoverageConfig(enabled=True, quarantine=True, ignore_values=["yes", "no"], splits=["train"])
    )
    outcome = curate(rows, config, "generation", seed=1)

    quarantined = outcome.quarantine.frame()
    flagged = quarantined[quarantined["quarantine_reason"] == TARGET_MISSES_INPUT]
    assert len(flagged) > 0
    assert (flagged[S.SPLIT] == "train").all()
    assert flagged["quarantine_detail"].str.startswith("target mentions").all()
    # The test references are untouched, and every kept train target mentions all its values.
    assert (outcome.rows[S.SPLIT] == "test").sum() == (rows[S.SPLIT] == "test").sum()
    assert (outcome.rows.loc[outcome.rows[S.SPLIT] == "train", S.INPUT_COVERAGE] == 1.0).all()
    assert outcome.metrics["coverage"]["rows_quarantined"] == len(flagged)
    assert outcome.metrics["quarantine_reasons"][TARGET_MISSES_INPUT] == len(flagged)
    assert outcome.metrics["rows_in"] == outcome.metrics["rows_out"] + outcome.metrics["rows_quarantined"]


def test_curate_leaves_coverage_off_by_default():
    outcome = curate(e2e_rows(3), CurateConfig(), "generation", seed=1)
    assert "coverage" not in outcome.metrics
    assert S.INPUT_COVERAGE not in outcome.rows.columns
    assert TARGET_MISSES_INPUT not in outcome.metrics["quarantine_reasons"]
