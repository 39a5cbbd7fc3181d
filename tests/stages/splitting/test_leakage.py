from __future__ import annotations

import time

import pandas as pd
import pytest
from split_data import banking_rows, e2e_rows, split_config, with_timestamps

from stages.core import schema as S
from stages.core.errors import GateError
from stages.splitting.leakage import check_leakage, enforce_leakage_gate, gate_failures
from stages.splitting.runner import split_rows

LONG_TEXT = (
    "I tried to get some money out but the machine was not working and the transaction still seems "
    "in progress, can you please check what is going on"
)


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    frame = banking_rows(train_rows=1500, test_rows=500, seed=2)
    return split_rows(frame, split_config(), seed=0).splits


def _plant(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Copy two train texts into test as exact variants and one as a near copy."""
    train = splits["train"].copy()
    test = splits["test"].copy()
    train.loc[train.index[0], S.TEXT] = "How do I unblock my PIN?"
    train.loc[train.index[1], S.TEXT] = "Where can I use my card?"
    train.loc[train.index[2], S.TEXT] = LONG_TEXT
    test.loc[test.index[0], S.TEXT] = "\nhow do  I UNBLOCK my PIN?"
    test.loc[test.index[1], S.TEXT] = "Where can I use my ｃａｒｄ?"
    test.loc[test.index[2], S.TEXT] = "Hi, " + LONG_TEXT + "?"
    return {"train": train, "validation": splits["validation"], "test": test}


def test_clean_split_has_no_leakage(splits):
    report = check_leakage(splits, split_config(), time_order=False)

    for pair in ("train_vs_validation", "train_vs_test", "validation_vs_test"):
        assert report[pair]["exact"]["rows"] == 0, pair
        assert report[pair]["group"]["rows"] == 0, pair
    assert gate_failures(report, split_config().leakage) == []


def test_planted_exact_duplicates_caught(splits):
    planted = _plant(splits)

    report = check_leakage(planted, split_config(), time_order=False)

    exact = report["train_vs_test"]["exact"]
    assert exact["rows"] == 2
    assert {example["test_row_id"] for example in exact["examples"]} == set(
        planted["test"][S.ROW_ID].iloc[:2]
    )
    assert exact["examples"][0]["train_text"] == "How do I unblock my PIN?"


def test_planted_near_duplicate_caught(splits):
    planted = _plant(splits)

    report = check_leakage(planted, split_config(), time_order=False)

    near = report["train_vs_test"]["near"]
    texts = [example["test_text"] for example in near["examples"]]
    assert near["rows"] >= 1
    assert any(text.startswith("Hi, I tried to get some money") for text in texts)
    assert all(example["jaccard"] >= 0.9 for example in near["examples"])
    assert all(not text.lower().startswith("how do i unblock") for text in texts)


def test_leakage_gate_fails_with_summary(splits):
    planted = _plant(splits)
    config = split_config(leakage={"max_exact": 0, "max_near": 0})
    report = check_leakage(planted, config, time_order=False)

    with pytest.raises(
        GateError, match=r"gate `split_leakage` failed:\ntrain_vs_test: exact leakage on 2 rows"
    ) as caught:
        enforce_leakage_gate(report, config.leakage)

    assert "near leakage on" in str(caught.value)
    assert "how do  I UNBLOCK my PIN?" in str(caught.value)


def test_leakage_limits_as_count_or_rate(splits):
    planted = _plant(splits)
    report = check_leakage(planted, split_config(), time_order=False)

    assert gate_failures(report, split_config(leakage={"max_exact": 2, "max_near": 5}).leakage) == []
    assert gate_failures(report, split_config(leakage={"max_exact": 0.01, "max_near": 0.01}).leakage) == []
    assert len(gate_failures(report, split_config(leakage={"max_exact": 0.001}).leakage)) == 1


def test_group_overlap_caught(splits):
    planted = {name: part.copy() for name, part in splits.items()}
    planted["train"].loc[planted["train"].index[:3], S.GROUP] = "customer-17"
    planted["test"].loc[planted["test"].index[:2], S.GROUP] = "customer-17"

    report = check_leakage(planted, split_config(), time_order=False)

    group = report["train_vs_test"]["group"]
    assert group["rows"] == 2
    assert group["groups"] == 1
    assert group["examples"] == [{"group": "customer-17", "train_rows": 3, "test_rows": 2}]
    assert "group leakage on 2 rows" in gate_failures(report, split_config().leakage)[0]


def test_time_order_counts_late_train_rows():
    frame = with_timestamps(banking_rows(train_rows=600, test_rows=200), seed=4, bad=0, missing=0)
    splits = split_rows(frame, split_config(strategy="temporal", group_by="none"), seed=0).splits
    assert check_leakage(splits, split_config(), time_order=True)["train_vs_test"]["time_order"]["rows"] == 0

    late = splits["train"].copy()
    late.loc[late.index[:3], S.TIMESTAMP] = "2024-12-24T10:00:00Z"
    report = check_leakage({**splits, "train": late}, split_config(), time_order=True)

    order = report["train_vs_test"]["time_order"]
    assert order["rows"] == 3
    assert order["examples"][0]["train_timestamp"] == "2024-12-24T10:00:00+00:00"
    assert "time_order leakage on 3 rows" in " ".join(gate_failures(report, split_config().leakage))


def test_banking77_official_split_overlap_measured():
    frame = banking_rows(train_rows=None, test_rows=None)
    train = frame[frame[S.SPLIT] == "train"].reset_index(drop=True)
    test = frame[frame[S.SPLIT] == "test"].reset_index(drop=True)

    started = time.perf_counter()
    report = check_leakage(
        {"train": train, "validation": train.iloc[:0], "test": test}, split_config(), time_order=False
    )
    elapsed = time.perf_counter() - started

    pair = report["train_vs_test"]
    assert pair["exact"]["rows"] == 7
    assert pair["near"]["rows"] == 9
    assert report["train_vs_validation"] == {"skipped": "the validation split is empty"}
    assert elapsed < 20


def test_predefined_straddling_group_reported():
    frame = e2e_rows(limit=600)
    meaning = frame[S.GROUP].drop_duplicates()
    test_groups = set(meaning.iloc[::5])
    frame[S.SPLIT] = frame[S.GROUP].map(lambda group: "test" if group in test_groups else "train")
    straddling = meaning.iloc[0]
    rows = frame.index[frame[S.GROUP] == straddling]
    frame.loc[rows[: len(rows) // 2], S.SPLIT] = "train"
    config = split_config(group_by="column")

    result = split_rows(frame, config, seed=0)
    report = check_leakage(result.splits, config, time_order=False)

    shared = report["train_vs_test"]["group"]["groups"] + report["validation_vs_test"]["group"]["groups"]
    assert shared == 1
    assert report["train_vs_validation"]["group"]["rows"] == 0
    with pytest.raises(GateError, match=r"_vs_test: group leakage on \d+ rows"):
        enforce_leakage_gate(report, config.leakage)
