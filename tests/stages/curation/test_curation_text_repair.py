"""Text repair: each step fixes its problem on real BANKING77 text and leaves clean text alone."""

from __future__ import annotations

import pandas as pd
import pytest
from curation_samples import banking_rows

from stages.curation.text_repair import RepairConfig, repair_texts


def repair(texts: list[str | None], form: str = "NFKC", **switches: bool) -> tuple[list, dict[str, int]]:
    repaired, counts = repair_texts(pd.Series(texts, dtype="string"), form, RepairConfig(**switches))
    return repaired.tolist(), counts


def test_clean_banking77_text_is_unchanged_except_whitespace():
    rows = banking_rows("test")
    repaired, counts = repair_texts(rows["text"], "NFKC", RepairConfig())
    changed = repaired != rows["text"]
    assert counts["mojibake"] == 0
    assert counts["html_tags"] == 0
    assert counts["html_entities"] == 0
    # BANKING77 has double spaces and trailing blanks, and collapsing them is the only edit.
    assert (repaired[changed] == rows.loc[changed, "text"].str.split().str.join(" ")).all()


def test_mojibake_is_fixed():
    original = "I can't see my card’s PIN on the app – why?"
    garbled = original.encode("utf-8").decode("cp1252")
    repaired, counts = repair([garbled])
    assert repaired == [original]
    assert counts["mojibake"] == 1


def test_html_tags_and_entities_are_removed():
    repaired, counts = repair(
        ["<p>How do I <b>top up</b> my card?</p>", "Fees &amp; charges &#8364;5", "Is 3 < 5 > 4?"]
    )
    assert repaired == ["How do I top up my card?", "Fees & charges €5", "Is 3 < 5 > 4?"]
    assert counts["html_tags"] == 1
    assert counts["html_entities"] == 1


def test_escaped_markup_stays_text():
    repaired, _ = repair(["Type &lt;b&gt; to bold"])
    assert repaired == ["Type <b> to bold"]


def test_invisible_and_control_characters_are_removed():
    repaired, counts = repair(["my\u200b card\u00ad is\ufeff lost", "bell\x07here", "tab\tand\nnewline"])
    assert repaired == ["my card is lost", "bell here", "tab and newline"]
    assert counts["invisible"] == 2


def test_unicode_normalisation_follows_the_form():
    nfkc, counts = repair(["ﬁnd my card：１２３"], "NFKC")
    nfc, _ = repair(["ﬁnd my card：１２３"], "NFC")
    assert nfkc == ["find my card:123"]
    assert nfc == ["ﬁnd my card：１２３"]
    assert counts["unicode"] == 1


def test_whitespace_collapses_unicode_spaces():
    repaired, _ = repair(["  where\u00a0is \u2009 my   card  "], "none")
    assert repaired == ["where is my card"]


def test_switched_off_steps_leave_text_alone():
    repaired, counts = repair(
        ["<b>x</b>  y\u200b"], "none", strip_html=False, remove_invisible=False, collapse_whitespace=False
    )
    assert repaired == ["<b>x</b>  y\u200b"]
    assert "html_tags" not in counts


def test_missing_values_stay_missing():
    repaired, _ = repair([None, "ok"])
    assert repaired[0] is pd.NA
    assert repaired[1] == "ok"


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKD"])
def test_every_form_is_accepted(form: str):
    repaired, _ = repair(["Café"], form)
    assert len(repaired) == 1
