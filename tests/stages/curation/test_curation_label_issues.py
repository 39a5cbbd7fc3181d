"""Label-error detection: confident learning finds flipped BANKING77 labels, quickly."""

from __future__ import annotations

import time

import pandas as pd
from curation_samples import banking_rows, every_other_class, flip_labels

from stages.curation.label_issues import ISSUE_COLUMNS, LabelIssueConfig, detect_label_issues


def sample_with_flips(seed: int):
    rows = banking_rows("train", every_other_class(20), per_label=50)
    return flip_labels(rows, share=0.05, seed=seed)


def test_flipped_labels_are_suspected():
    rows, flipped = sample_with_flips(seed=0)
    started = time.perf_counter()
    issues, metrics = detect_label_issues(
        rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=42
    )
    elapsed = time.perf_counter() - started
    found = rows.index[flipped].isin(issues.index)
    assert found.mean() >= 0.8, f"{found.sum()} of {flipped.sum()} flipped labels suspected"
    assert metrics["rows_checked"] == len(rows)
    assert metrics["suspected"] == len(issues)
    assert elapsed < 20


def test_suggested_label_is_usually_the_original():
    original = banking_rows("train", every_other_class(20), per_label=50)
    rows, flipped = flip_labels(original, share=0.05, seed=1)
    issues, _ = detect_label_issues(rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=42)
    caught = issues.index[issues.index.isin(rows.index[flipped])]
    restored = issues.loc[caught, "label_suggested"] == original.loc[caught, "label"]
    assert restored.mean() >= 0.8


def test_issue_table_columns_and_values():
    rows, _ = sample_with_flips(seed=2)
    issues, _ = detect_label_issues(rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=42)
    assert list(issues.columns) == ISSUE_COLUMNS
    assert (issues["label"] == rows.loc[issues.index, "label"]).all()
    assert issues["confidence"].between(0, 1).all()
    assert (issues["confidence"] >= issues["given_label_probability"]).all()


def test_same_seed_same_issues():
    rows, _ = sample_with_flips(seed=3)
    first, _ = detect_label_issues(rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=5)
    second, _ = detect_label_issues(rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=5)
    pd.testing.assert_frame_equal(first, second)


def test_small_classes_are_skipped():
    rows = banking_rows("train", every_other_class(3), per_label=20)
    rows.loc[rows.index[:3], "label"] = "tiny_class"
    issues, metrics = detect_label_issues(
        rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(cv_folds=5), seed=1
    )
    assert metrics["rows_skipped_small_classes"] == 3
    assert not issues.index.isin(rows.index[:3]).any()


def test_single_class_is_not_checked():
    rows = banking_rows("train", every_other_class(1), per_label=20)
    issues, metrics = detect_label_issues(
        rows["text"], rows["label"], rows["row_id"], LabelIssueConfig(), seed=1
    )
    assert issues.empty
    assert metrics["rows_checked"] == 0
