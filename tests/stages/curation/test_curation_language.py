"""Language filter: German, French and Spanish rows are caught; short English queries are kept."""

from __future__ import annotations

import pandas as pd
import pytest
from curation_samples import FOREIGN_SENTENCES, banking_rows
from pydantic import ValidationError

from stages.curation.language import LANGUAGE_NOT_ALLOWED, LanguageConfig, detect_languages, language_reasons


def flag(texts: pd.Series, config: LanguageConfig) -> tuple[pd.Series, pd.Series]:
    return language_reasons(detect_languages(texts, config), config)


def test_foreign_sentences_are_flagged_with_their_language():
    expected = [code for code, sentences in FOREIGN_SENTENCES.items() for _ in sentences]
    texts = pd.Series([s for sentences in FOREIGN_SENTENCES.values() for s in sentences], dtype="string")
    reasons, details = flag(texts, LanguageConfig())
    assert (reasons == LANGUAGE_NOT_ALLOWED).all()
    for detail, code in zip(details, expected, strict=True):
        assert detail.startswith(f"detected {code} ")


def test_banking77_english_rows_are_kept():
    texts = banking_rows("test")["text"]
    reasons, _ = flag(texts, LanguageConfig())
    assert reasons.isna().all()


def test_short_texts_are_not_judged():
    texts = pd.Series(["Karte weg", "Carte perdue", None], dtype="string")
    detected = detect_languages(texts, LanguageConfig(min_chars=20))
    assert detected["language"].isna().all()


def test_keeping_a_language_keeps_its_rows():
    texts = pd.Series(FOREIGN_SENTENCES["de"], dtype="string")
    reasons, _ = flag(texts, LanguageConfig(keep=["en", "de"]))
    assert reasons.isna().all()


def test_detect_among_must_cover_keep():
    with pytest.raises(ValidationError, match="must include every language in keep"):
        LanguageConfig(keep=["en", "fi"], detect_among=["en", "de"])


def test_unknown_code_is_rejected():
    with pytest.raises(ValidationError, match="not an ISO 639-1 code"):
        LanguageConfig(keep=["english"])
