"""Length rules: empty, too-short and too-long texts get their own reason codes."""

from __future__ import annotations

import pandas as pd

from stages.curation.lengths import length_detail, length_reasons


def test_reasons_per_length():
    texts = pd.Series([None, "   ", "ab", "abc", "a" * 10, "a" * 11], dtype="string")
    reasons = length_reasons(texts, "text", min_chars=3, max_chars=10)
    assert reasons.tolist() == ["empty_text", "empty_text", "text_too_short", pd.NA, pd.NA, "text_too_long"]


def test_column_name_is_part_of_the_code():
    reasons = length_reasons(pd.Series([""], dtype="string"), "target", 1, 5)
    assert reasons.tolist() == ["empty_target"]


def test_length_counts_code_points():
    reasons = length_reasons(pd.Series(["€€€", "日本語"], dtype="string"), "text", 3, 3)
    assert reasons.isna().all()


def test_detail_states_length_and_bounds():
    detail = length_detail(pd.Series(["ab"], dtype="string"), 3, 10)
    assert detail.tolist() == ["2 characters (allowed 3 to 10)"]
