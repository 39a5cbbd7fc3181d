"""The whole rule chain on real BANKING77 and E2E rows with every problem planted at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from curation_samples import (
    FOREIGN_SENTENCES,
    REPO_ROOT,
    banking_rows,
    common_schema,
    edit_copy,
    every_other_class,
    flip_labels,
    pii_rows,
)

from stages.core import schema as S
from stages.core.errors import InputDataError
from stages.curation.config import CurateConfig
from stages.curation.near_duplicates import NearDuplicateConfig
from stages.curation.pipeline import ADDED_COLUMNS, curate

# Near-copies with one word changed are around Jaccard 0.7 on char 5-grams; the default 0.85
# only removes closer copies, so this sample lowers the threshold.
CONFIG = CurateConfig(near_duplicates=NearDuplicateConfig(num_bands=32, threshold=0.7))


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, dict[str, str]]:
    """Return BANKING77 rows with planted problems, and the expected reason per planted row_id."""
    classes = every_other_class(20)
    train = banking_rows("train", classes, per_label=50)
    test = banking_rows("test", classes, per_label=10)
    train, _ = flip_labels(train, share=0.05, seed=11)
    generator = np.random.default_rng(5)
    long_train = train[train["text"].str.len() >= 70]
    long_test = test[test["text"].str.len() >= 60]

    extra: list[tuple[str, str | None, str, str]] = []  # text, label, split, expected reason ("" = kept)
    first = train.iloc[0]
    extra.append((first["text"].upper() + " !!", first["label"], "train", "exact_duplicate"))
    conflict = train.iloc[7]
    extra.append(
        (
            conflict["text"],
            classes[-1] if conflict["label"] != classes[-1] else classes[0],
            "train",
            "conflicting_labels",
        )
    )
    extra.append((test.iloc[3]["text"], test.iloc[3]["label"], "train", "duplicates_test_row"))
    near_test = long_test.iloc[0]
    extra.append(
        (edit_copy(near_test["text"], "drop", generator), near_test["label"], "train", "duplicates_test_row")
    )
    near_train = long_train.iloc[4]
    extra.append(
        (edit_copy(near_train["text"], "add", generator), near_train["label"], "train", "near_duplicate")
    )
    extra.append(("   ", classes[0], "train", "empty_text"))
    extra.append(("hi", classes[0], "train", "text_too_short"))
    extra.append(("card " * 300, classes[0], "train", "text_too_long"))
    extra.append(("How long does a transfer to Germany take?", None, "train", "missing_label"))
    for sentences in FOREIGN_SENTENCES.values():
        extra += [(sentence, classes[1], "train", "language_not_allowed") for sentence in sentences]
    extra += [(text, classes[2], "train", "") for text in pii_rows()["text"]]
    extra.append(("<p>How do I <b>top up</b> by card?</p> &amp; thanks", classes[3], "train", ""))
    extra.append(
        ("I can’t find the exchange rate for euros – why?".encode().decode("cp1252"), classes[4], "train", "")
    )

    planted_rows = common_schema(
        [text for text, *_ in extra],
        [label for _, label, *_ in extra],
        [split for *_, split, _ in extra],
        range(90001, 90001 + len(extra)),
    )
    rows = pd.concat([train, test, planted_rows], ignore_index=True)
    expected = dict(zip(planted_rows[S.ROW_ID], [reason for *_, reason in extra], strict=True))
    expected[conflict[S.ROW_ID]] = "conflicting_labels"
    return rows, expected


@pytest.fixture(scope="module")
def result(planted):
    rows, _ = planted
    return curate(rows, CONFIG, "classification", seed=42)


def test_rows_in_equal_rows_out_plus_quarantined(planted, result):
    rows, _ = planted
    metrics = result.metrics
    quarantined = result.quarantine.frame()
    assert metrics["rows_in"] == len(rows)
    assert metrics["rows_in"] == metrics["rows_out"] + metrics["rows_quarantined"]
    assert metrics["rows_out"] == len(result.rows)
    assert sum(metrics["quarantine_reasons"].values()) == len(quarantined)
    counted = quarantined["quarantine_reason"].value_counts().to_dict()
    assert {reason: count for reason, count in metrics["quarantine_reasons"].items() if count} == counted
    assert set(result.rows[S.ROW_ID]).isdisjoint(quarantined[S.ROW_ID])
    assert set(result.rows[S.ROW_ID]) | set(quarantined[S.ROW_ID]) == set(rows[S.ROW_ID])


def test_planted_rows_get_their_reason(planted, result):
    _, expected = planted
    quarantined = result.quarantine.frame().set_index(S.ROW_ID)["quarantine_reason"]
    kept = set(result.rows[S.ROW_ID])
    for row_id, reason in expected.items():
        if reason:
            assert quarantined.get(row_id) == reason, f"{row_id}: expected {reason}"
        else:
            assert row_id in kept, f"{row_id} should be kept"


def test_test_split_is_untouched(planted, result):
    rows, _ = planted
    test_ids = set(rows.loc[rows[S.SPLIT] == "test", S.ROW_ID])
    assert test_ids <= set(result.rows[S.ROW_ID])


def test_pii_is_redacted_in_kept_rows(result):
    redacted = result.rows[result.rows["pii_redacted"] != ""]
    assert len(redacted) == len(pii_rows())
    assert redacted["text"].str.contains(r"\[(?:EMAIL|PHONE|CARD|IBAN|IP)\]").all()
    assert (
        not result.rows.loc[result.rows["pii_redacted"] == "", "text"]
        .str.contains(r"\[(?:EMAIL|PHONE|CARD|IBAN|IP)\]")
        .any()
    )
    assert sum(result.metrics["pii"]["values_redacted"].values()) == len(pii_rows())


def test_repaired_rows_are_clean(result):
    texts = set(result.rows["text"])
    assert "How do I top up by card? & thanks" in texts
    assert "I can’t find the exchange rate for euros – why?" in texts


def test_near_duplicate_cluster_names_the_kept_row(planted, result):
    _, expected = planted
    near_id = next(row_id for row_id, reason in expected.items() if reason == "near_duplicate")
    quarantined = result.quarantine.frame().set_index(S.ROW_ID)
    cluster = quarantined.loc[near_id, "near_dup_cluster"]
    assert cluster in set(result.rows[S.ROW_ID])
    assert (result.rows.loc[result.rows[S.ROW_ID] == cluster, "near_dup_cluster"] == cluster).all()


def test_label_issues_only_on_train_rows(planted, result):
    rows, _ = planted
    train_ids = set(rows.loc[rows[S.SPLIT] == "train", S.ROW_ID])
    issues = result.label_issues
    assert len(issues) > 0
    assert set(issues[S.ROW_ID]) <= train_ids
    suspected = result.rows.loc[result.rows["label_issue_suspected"], S.ROW_ID]
    assert set(suspected) == set(issues[S.ROW_ID])
    assert result.rows.loc[result.rows["label_issue_suspected"], "label_suggested"].notna().all()
    assert result.metrics["quarantine_reasons"].get("label_issue", 0) == 0


def test_label_issues_can_be_quarantined(planted):
    rows, _ = planted
    config = CONFIG.model_copy(
        update={"label_issues": CONFIG.label_issues.model_copy(update={"quarantine": True})}
    )
    quarantined = curate(rows, config, "classification", seed=42)
    assert quarantined.metrics["quarantine_reasons"]["label_issue"] == len(quarantined.label_issues)
    assert not quarantined.rows["label_issue_suspected"].any()


def test_output_columns(result):
    assert list(result.rows.columns) == [*S.ALL_COLUMNS, *ADDED_COLUMNS]
    assert str(result.rows["near_dup_cluster"].dtype) == "string"
    assert str(result.rows["label_issue_suspected"].dtype) == "bool"


def test_same_input_same_output(planted, result):
    rows, _ = planted
    again = curate(rows, CONFIG, "classification", seed=42)
    pd.testing.assert_frame_equal(again.rows, result.rows)
    pd.testing.assert_frame_equal(again.quarantine.frame(), result.quarantine.frame())
    pd.testing.assert_frame_equal(again.label_issues, result.label_issues)
    assert again.metrics == result.metrics


def test_unknown_label_error_names_the_row(planted):
    rows, _ = planted
    config = CurateConfig(
        labels={"allowed": every_other_class(19)}, label_issues={"enabled": False}, language={"keep": []}
    )
    config = config.model_copy(update={"labels": config.labels.model_copy(update={"unknown": "error"})})
    with pytest.raises(
        InputDataError, match=r"row \d+, field `label`: label '.*' is not in `curate.labels.allowed`"
    ):
        curate(rows, config, "classification", seed=42)


def test_missing_label_column_is_an_input_error(planted):
    rows, _ = planted
    with pytest.raises(InputDataError, match="missing column\\(s\\) label"):
        curate(rows.drop(columns=[S.LABEL]), CONFIG, "classification", seed=42)


def e2e_rows(inputs: int) -> pd.DataFrame:
    raw = pd.read_csv(REPO_ROOT / "data" / "sources" / "e2e_nlg" / "devset.csv")
    chosen = list(dict.fromkeys(raw["mr"]))[:inputs]
    raw = raw[raw["mr"].isin(chosen)]
    frame = common_schema(raw["mr"], [None] * len(raw), "train", raw.index + 2)
    frame[S.TARGET] = raw["ref"].astype("string").to_numpy()
    return frame


def test_generation_repeated_pairs_removed():
    rows = e2e_rows(5)
    repeated = rows.iloc[[0]].copy()
    repeated[S.TARGET] = repeated[S.TARGET].str.upper() + "  "
    repeated[S.ROW_ID] = "repeated-pair"
    rows = pd.concat([rows, repeated], ignore_index=True)
    outcome = curate(rows, CurateConfig(), "generation", seed=1)
    reasons = outcome.quarantine.frame().set_index(S.ROW_ID)["quarantine_reason"]
    assert reasons.get("repeated-pair") == "exact_duplicate"
    assert outcome.rows[S.TEXT].nunique() == 5
    assert outcome.metrics["rows_in"] == outcome.metrics["rows_out"] + outcome.metrics["rows_quarantined"]
    assert "labels" not in outcome.metrics
    assert "label_issues" not in outcome.metrics
    assert outcome.metrics["language"]["column"] == S.TARGET


def test_generation_target_rules():
    rows = e2e_rows(2)
    rows.loc[0, S.TARGET] = ""
    rows.loc[1, S.TARGET] = "Il y a un restaurant français très agréable au centre-ville, près de la rivière."
    outcome = curate(rows, CurateConfig(), "generation", seed=1)
    reasons = outcome.quarantine.frame().set_index(S.ROW_ID)["quarantine_reason"]
    assert reasons[rows.loc[0, S.ROW_ID]] == "empty_target"
    assert reasons[rows.loc[1, S.ROW_ID]] == "language_not_allowed"


def test_generation_near_copies_need_the_same_input():
    rows = e2e_rows(3)
    longest = rows.loc[rows[S.TARGET].str.len().idxmax()]
    copy = rows.loc[[longest.name]].copy()
    copy[S.TARGET] = longest[S.TARGET] + " Indeed."
    copy[S.ROW_ID] = "near-copy"
    other_input = copy.copy()
    other_input[S.TEXT] = rows.loc[rows[S.TEXT] != longest[S.TEXT], S.TEXT].iloc[0]
    other_input[S.ROW_ID] = "same-target-other-input"
    rows = pd.concat([rows, copy, other_input], ignore_index=True)
    outcome = curate(rows, CurateConfig(), "generation", seed=1)
    reasons = outcome.quarantine.frame().set_index(S.ROW_ID)["quarantine_reason"]
    assert reasons.get("near-copy") == "near_duplicate"
    assert "same-target-other-input" in set(outcome.rows[S.ROW_ID])
    # References of one input are alike but are different targets: all of them stay.
    assert set(e2e_rows(3)[S.ROW_ID]) <= set(outcome.rows[S.ROW_ID])
