from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from split_data import banking_rows, split_config

from stages.core import schema as S
from stages.core.errors import GateError
from stages.splitting.runner import split_rows
from stages.splitting.suite import suite_parameters, validate_splits

SUITE = Path(__file__).resolve().parents[3] / "expectations" / "splits.json"


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return split_rows(banking_rows(train_rows=600, test_rows=200, seed=1), split_config(), seed=0).splits


def test_suite_passes_clean_splits(splits):
    summary = validate_splits(splits, SUITE)

    assert summary["success"]
    assert summary["failed"] == 0
    assert summary["skipped"] == 0


def test_suite_fails_on_blank_text(splits):
    broken = {name: part.copy() for name, part in splits.items()}
    broken["test"].loc[broken["test"].index[0], S.TEXT] = "   "

    with pytest.raises(
        GateError, match=r"gate `split_expectations` failed:\nsuite splits .*1 of 12"
    ) as caught:
        validate_splits(broken, SUITE)

    assert "expect_column_values_to_not_match_regex(column='text'" in str(caught.value)


def test_suite_warns_on_label_missing_from_train(splits, caplog):
    broken = {name: part.copy() for name, part in splits.items()}
    broken["test"].loc[broken["test"].index[:2], S.LABEL] = "crypto_withdrawal"

    summary = validate_splits(broken, SUITE)

    label_check = [item for item in summary["expectations"] if item["kwargs"].get("column") == S.LABEL]
    assert summary["success"]
    assert label_check[0]["severity"] == "warning"
    assert label_check[0]["unexpected_count"] == 2
    assert "suite splits (warning)" in caplog.text


def test_suite_skips_label_check_without_labels(splits):
    unlabelled = {name: part.assign(**{S.LABEL: pd.NA}) for name, part in splits.items()}

    summary = validate_splits(unlabelled, SUITE)

    assert suite_parameters(unlabelled) == {"train_labels": []}
    assert summary["skipped"] == 1
    assert summary["success"]
