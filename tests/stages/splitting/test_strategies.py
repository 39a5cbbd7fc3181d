from __future__ import annotations

import pandas as pd
import pytest
from split_data import banking_rows, e2e_rows, split_config, with_timestamps

from stages.core import schema as S
from stages.core.errors import InputDataError, ParamsError
from stages.core.params import parse_section
from stages.splitting.config import SplitConfig
from stages.splitting.runner import split_rows
from stages.splitting.strategies import FOLD


@pytest.fixture(scope="module")
def banking() -> pd.DataFrame:
    return banking_rows(train_rows=1500, test_rows=500)


def _times(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame[S.TIMESTAMP], utc=True, format="ISO8601")


# temporal


def test_temporal_never_puts_future_row_in_train(banking):
    frame = with_timestamps(banking, seed=1)

    result = split_rows(frame, split_config(strategy="temporal"), seed=0)

    train, validation, test = (_times(result.splits[name]) for name in S.SPLIT_NAMES)
    assert train.max() <= validation.min()
    assert validation.max() <= test.min()
    assert train.max() < test.min()


def test_temporal_quarantines_bad_timestamps(banking):
    frame = with_timestamps(banking, seed=1, bad=4, missing=3)

    result = split_rows(frame, split_config(strategy="temporal", group_by="none"), seed=0)

    assert result.quarantine.counts() == {"missing_timestamp": 3, "unparseable_timestamp": 4}
    quarantined = result.quarantine.frame()
    assert set(quarantined.loc[quarantined["quarantine_reason"] == "unparseable_timestamp", S.TIMESTAMP]) == {
        "yesterday",
        "2024-02-30T10:00:00",
        "31/12/2023 25:61",
        "n/a",
    }
    assert "does not parse with format 'ISO8601'" in quarantined["quarantine_detail"].iloc[-1]
    assert result.metrics["rows_in"] == result.metrics["rows_out"] + result.metrics["rows_quarantined"]


def test_temporal_ratios_70_15_15(banking):
    frame = with_timestamps(banking, seed=2, bad=0, missing=0)

    result = split_rows(frame, split_config(strategy="temporal", group_by="none"), seed=0)

    sizes = result.metrics["sizes"]
    assert sizes == {"train": 1400, "validation": 300, "test": 300}


def test_temporal_spanning_groups_quarantined(e2e):
    frame = with_timestamps(e2e, seed=5, bad=0, missing=0)

    result = split_rows(frame, split_config(strategy="temporal", group_by="column"), seed=0)

    train, validation, test = (_times(result.splits[name]) for name in S.SPLIT_NAMES)
    spanning = result.metrics["strategy_details"]["spanning_group_rows"]
    assert spanning > 0
    assert result.quarantine.counts() == {"group_spans_cut": spanning}
    assert train.max() <= validation.min()
    assert validation.max() <= test.min()
    owners = pd.concat([part.assign(part_name=name) for name, part in result.splits.items()])
    assert (owners.groupby(S.GROUP)["part_name"].nunique() == 1).all()


def test_temporal_spanning_groups_kept_in_later_split(e2e):
    frame = with_timestamps(e2e, seed=5, bad=0, missing=0)
    config = split_config(strategy="temporal", group_by="column", temporal={"spanning_groups": "later_split"})

    result = split_rows(frame, config, seed=0)

    train, test = _times(result.splits["train"]), _times(result.splits["test"])
    assert len(result.quarantine) == 0
    assert train.max() < pd.Timestamp(result.metrics["strategy_details"]["validation_start"])
    assert train.max() > test.min()


def test_temporal_cut_by_dates(banking):
    frame = with_timestamps(banking, seed=3, bad=0, missing=0)
    config = split_config(
        strategy="temporal", temporal={"validation_start": "2024-05-01", "test_start": "2024-06-01T00:00:00Z"}
    )

    result = split_rows(frame, config, seed=0)

    assert _times(result.splits["train"]).max() < pd.Timestamp("2024-05-01", tz="UTC")
    assert _times(result.splits["validation"]).min() >= pd.Timestamp("2024-05-01", tz="UTC")
    assert _times(result.splits["test"]).min() >= pd.Timestamp("2024-06-01", tz="UTC")
    assert result.metrics["strategy_details"]["cut"] == "dates"


def test_temporal_date_leaving_test_empty_names_key(banking):
    frame = with_timestamps(banking, seed=3, bad=0, missing=0)
    config = split_config(
        strategy="temporal", temporal={"validation_start": "2024-05-01", "test_start": "2025-01-01"}
    )

    with pytest.raises(ParamsError, match=r"`split.temporal.test_start` leaves the test split empty"):
        split_rows(frame, config, seed=0)


def test_temporal_without_timestamp_column_raises(banking):
    frame = banking.drop(columns=[S.TIMESTAMP])

    with pytest.raises(
        InputDataError, match=r"column `timestamp` is missing.*acquire.sources\[\]\.columns\.timestamp"
    ):
        split_rows(frame, split_config(strategy="temporal"), seed=0, location="rows.parquet")


def test_temporal_all_null_timestamps_raises(banking):
    with pytest.raises(
        InputDataError, match=r"rows.parquet, field `timestamp`: column `timestamp` is empty in all 2000 rows"
    ):
        split_rows(banking, split_config(strategy="temporal"), seed=0, location="rows.parquet")


def test_temporal_no_parseable_timestamp_names_format(banking):
    frame = banking.copy()
    frame[S.TIMESTAMP] = "05/01/2024"

    with pytest.raises(InputDataError, match=r"split.temporal.timestamp_format"):
        split_rows(frame, split_config(strategy="temporal"), seed=0)


def test_temporal_custom_format(banking):
    frame = banking.copy()
    days = pd.Series(range(len(frame))) % 28 + 1
    frame[S.TIMESTAMP] = [f"{day:02d}/02/2024" for day in days]

    config = split_config(strategy="temporal", group_by="none", temporal={"timestamp_format": "%d/%m/%Y"})
    result = split_rows(frame, config, seed=0)

    assert len(result.quarantine) == 0
    assert result.metrics["strategy_details"]["train_from"].startswith("2024-02-01")


# groups


@pytest.fixture(scope="module")
def e2e() -> pd.DataFrame:
    return e2e_rows(limit=1500)


@pytest.mark.parametrize("group_by", ["column", "near_duplicates"])
@pytest.mark.parametrize("strategy", ["holdout", "kfold"])
def test_no_group_crosses_splits(e2e, strategy, group_by):
    config = split_config(strategy=strategy, group_by=group_by)

    result = split_rows(e2e, config, seed=4)

    owners: dict[str, set[str]] = {}
    for name, part in result.splits.items():
        for group in part[S.GROUP]:
            owners.setdefault(group, set()).add(name)
    assert all(len(names) == 1 for names in owners.values())
    assert result.metrics["groups"]["multi_row_groups"] > 50
    assert min(result.metrics["sizes"].values()) > 0


def test_no_group_crosses_folds(e2e):
    result = split_rows(e2e, split_config(strategy="kfold", kfold={"folds": 4, "test": "none"}), seed=4)

    folds_per_group = result.folds.groupby(S.GROUP)[FOLD].nunique()
    assert (folds_per_group == 1).all()
    assert sorted(result.folds[FOLD].unique()) == [0, 1, 2, 3]
    assert result.splits["test"].empty


def test_group_by_none_splits_groups(e2e):
    result = split_rows(e2e, split_config(strategy="holdout", group_by="none"), seed=4)

    train_groups = set(result.splits["train"][S.GROUP])
    assert train_groups & set(result.splits["test"][S.GROUP])


def test_missing_group_column_names_key(e2e):
    config = split_config(strategy="holdout", group_by="column", group_column="mr_id")

    with pytest.raises(InputDataError, match=r"column `mr_id` named by split.group_column is missing"):
        split_rows(e2e, config, seed=0)


# stratified


def test_stratified_within_one_row_per_class(banking):
    result = split_rows(banking, split_config(strategy="stratified", group_by="none"), seed=7)

    all_counts = banking[S.LABEL].value_counts()
    rare = all_counts[all_counts < 10]
    totals = all_counts[all_counts >= 10]
    assert set(result.metrics["strategy_details"]["rare_classes"]) == set(rare.index)
    assert set(rare.index) <= set(result.splits["train"][S.LABEL])
    for name, ratio in zip(S.SPLIT_NAMES, (0.8, 0.1, 0.1), strict=True):
        counts = result.splits[name][S.LABEL].value_counts().reindex(totals.index, fill_value=0)
        deviation = (counts - totals * ratio).abs()
        assert deviation.max() <= 1.0, (name, deviation.idxmax())
    assert result.metrics["strategy_details"]["within_one_row_per_class"]


def test_stratified_requires_labels(e2e):
    with pytest.raises(
        InputDataError, match=r"column `label` is empty in every row.*split.strategy: holdout"
    ):
        split_rows(e2e, split_config(strategy="stratified"), seed=0)


def _with_rare_class(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    rare = frame.index[:4]
    frame.loc[rare, S.LABEL] = "wire_to_mars"
    return frame


def test_rare_class_train_only_reported(banking):
    frame = _with_rare_class(banking)

    result = split_rows(frame, split_config(strategy="stratified"), seed=0)

    assert (result.splits["train"][S.LABEL] == "wire_to_mars").sum() == 4
    assert result.metrics["strategy_details"]["rare_classes"]["wire_to_mars"] == 4


def test_rare_class_quarantined(banking):
    frame = _with_rare_class(banking)

    result = split_rows(frame, split_config(strategy="stratified", rare_class_policy="quarantine"), seed=0)

    assert result.quarantine.counts()["rare_class"] >= 4
    details = result.quarantine.frame()["quarantine_detail"]
    assert details.str.startswith("class 'wire_to_mars' has 4 rows, fewer than 10").sum() == 4


def test_rare_class_error_names_class(banking):
    frame = _with_rare_class(banking)

    with pytest.raises(
        InputDataError, match=r"class 'wire_to_mars' has 4 rows.*`split.ratios`.*split.rare_class_policy"
    ):
        split_rows(frame, split_config(strategy="stratified", rare_class_policy="error"), seed=0)


# predefined


def test_predefined_keeps_test_and_carves_validation(banking):
    result = split_rows(banking, split_config(), seed=0)

    source_test = set(banking.loc[banking[S.SPLIT] == "test", S.ROW_ID])
    carve = result.metrics["strategy_details"]["carve"]
    rare_rows = sum(carve["rare_classes"].values())
    assert set(result.splits["test"][S.ROW_ID]) == source_test
    assert abs(len(result.splits["validation"]) - 0.1 * (1500 - rare_rows)) <= 1
    assert len(result.splits["train"]) + len(result.splits["validation"]) == 1500
    assert result.metrics["strategy_details"]["validation_carved_from_train"]
    assert carve["within_one_row_per_class"]


def test_predefined_keeps_given_validation(banking):
    frame = banking.copy()
    train_rows = frame.index[frame[S.SPLIT] == "train"][:200]
    frame.loc[train_rows, S.SPLIT] = "Validation "

    result = split_rows(frame, split_config(), seed=0)

    assert set(result.splits["validation"][S.ROW_ID]) == set(frame.loc[train_rows, S.ROW_ID])
    assert not result.metrics["strategy_details"]["validation_carved_from_train"]


def test_predefined_empty_split_goes_to_train(banking):
    frame = banking.copy()
    frame.loc[frame.index[:10], S.SPLIT] = pd.NA
    frame.loc[frame.index[10:20], S.SPLIT] = ""

    result = split_rows(frame, split_config(), seed=0)

    assert result.metrics["strategy_details"]["source_splits"]["train"] == 1500


def test_predefined_unknown_split_value(banking):
    frame = banking.copy()
    frame.loc[frame.index[5], S.SPLIT] = "holdout"

    with pytest.raises(
        InputDataError, match=r"rows.parquet, row 6, field `split`: 1 rows have a split value"
    ):
        split_rows(frame, split_config(), seed=0, location="rows.parquet")


def test_predefined_without_test_raises(banking):
    frame = banking[banking[S.SPLIT] == "train"]

    with pytest.raises(InputDataError, match=r"no row has split = test"):
        split_rows(frame, split_config(), seed=0)


# kfold


def test_kfold_folds_and_validation_fold(banking):
    config = split_config(strategy="kfold", group_by="none", kfold={"folds": 5, "validation_fold": 2})

    result = split_rows(banking, config, seed=0)

    assert sorted(result.folds[FOLD].unique()) == [0, 1, 2, 3, 4]
    assert (result.splits["validation"][FOLD] == 2).all()
    assert not (result.splits["train"][FOLD] == 2).any()
    assert result.splits["test"][FOLD].isna().all()
    assert len(result.folds) == 1500
    assert set(result.splits["test"][S.ROW_ID]) == set(banking.loc[banking[S.SPLIT] == "test", S.ROW_ID])
    totals = result.folds[S.LABEL].value_counts()
    for fold, part in result.folds.groupby(FOLD):
        counts = part[S.LABEL].value_counts().reindex(totals.index, fill_value=0)
        assert (counts - totals / 5).abs().max() <= 1.0, fold


def test_kfold_holdout_test_when_no_predefined(banking):
    frame = banking.assign(**{S.SPLIT: pd.NA})

    result = split_rows(frame, split_config(strategy="kfold", group_by="none"), seed=0)

    details = result.metrics["strategy_details"]
    rare_rows = sum(details["test_carve"]["rare_classes"].values())
    assert details["test"] == "holdout"
    assert abs(len(result.splits["test"]) - 0.1 * (2000 - rare_rows)) <= 1
    assert len(result.folds) + len(result.splits["test"]) == 2000


def test_kfold_rare_class_always_train(banking):
    frame = _with_rare_class(banking)

    result = split_rows(frame, split_config(strategy="kfold"), seed=0)

    rare = result.folds[result.folds[S.LABEL] == "wire_to_mars"]
    assert (rare[FOLD] == -1).all()
    assert result.metrics["strategy_details"]["always_train_rows"] >= 4


def test_validation_fold_must_be_below_folds():
    with pytest.raises(ParamsError, match=r"`split.kfold` is invalid \(validation_fold must be below folds"):
        parse_section({"split": {"kfold": {"folds": 3, "validation_fold": 3}}}, "split", SplitConfig)


# config and determinism


def test_ratios_must_sum_to_one():
    with pytest.raises(
        ParamsError, match=r"`split.ratios` is invalid \(train \+ validation \+ test must sum to 1"
    ):
        parse_section(
            {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.2}}}, "split", SplitConfig
        )


def test_leakage_rate_above_one_rejected():
    with pytest.raises(
        ParamsError, match=r"`split.leakage.max_near` is invalid \(a rate must be between 0 and 1"
    ):
        parse_section({"split": {"leakage": {"max_near": 1.5}}}, "split", SplitConfig)


def test_unknown_strategy_rejected():
    with pytest.raises(ParamsError, match=r"`split.strategy`"):
        parse_section({"split": {"strategy": "random"}}, "split", SplitConfig)


@pytest.mark.parametrize("strategy", ["holdout", "stratified", "kfold", "predefined"])
def test_same_seed_same_split(banking, strategy):
    first = split_rows(banking, split_config(strategy=strategy), seed=11)
    second = split_rows(banking, split_config(strategy=strategy), seed=11)
    other = split_rows(banking, split_config(strategy=strategy), seed=12)

    for name in S.SPLIT_NAMES:
        pd.testing.assert_frame_equal(first.splits[name], second.splits[name])
    assert list(first.splits["validation"][S.ROW_ID]) != list(other.splits["validation"][S.ROW_ID])
