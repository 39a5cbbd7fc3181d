"""PII redaction: every planted value is replaced, and rows without PII are never touched."""

from __future__ import annotations

import pandas as pd
import pytest
from curation_samples import PII_VALUES, banking_rows, pii_rows

from stages.curation.pii import PLACEHOLDERS, PiiConfig, redact_pii


def test_every_planted_value_is_redacted():
    rows = pii_rows()
    result = redact_pii(rows["text"].astype("string"), PiiConfig())
    for text, kind, value in zip(result.texts, rows["pii_type"], rows["value"], strict=True):
        assert value not in text, f"{kind} {value!r} left in {text!r}"
        assert PLACEHOLDERS[kind] in text, f"{kind} {value!r} not replaced by its placeholder: {text!r}"


def test_counts_per_type_match_the_plants():
    rows = pii_rows()
    result = redact_pii(rows["text"].astype("string"), PiiConfig())
    assert result.counts == {kind: len(values) for kind, values in PII_VALUES.items()}
    assert result.types.tolist() == rows["pii_type"].tolist()
    assert result.rows_redacted == len(rows)


def test_banking77_rows_get_no_placeholder():
    # Amounts, dates, "last 4 digits" and card-digit talk must not look like PII.
    texts = pd.concat([banking_rows("train")["text"], banking_rows("test")["text"]], ignore_index=True)
    result = redact_pii(texts, PiiConfig())
    assert result.rows_redacted == 0
    assert (result.texts == texts).all()


@pytest.mark.parametrize(
    "text",
    [
        "The last 4 digits of my card are 1234.",
        "I was charged £25.50 on 2019-03-04 at 13:45:10.",
        "I paid 100000 pounds and my reference is 12345678.",
        "My card 4111 1111 1111 1112 fails the checksum.",
        "Version 1.2.3 of the app and code 999.1.1.1.",
        "Account GB00WEST12345698765432 has a wrong check digit.",
        "Write to me at support@localhost please.",
    ],
)
def test_lookalikes_are_kept(text: str):
    result = redact_pii(pd.Series([text], dtype="string"), PiiConfig())
    assert result.texts.tolist() == [text]
    assert result.rows_redacted == 0


def test_pii_mixed_with_banking_text_keeps_the_rest():
    text = "Card 4111-1111-1111-1111 was charged £20 twice, call +44 20 7946 0958 or mail me@example.com"
    result = redact_pii(pd.Series([text], dtype="string"), PiiConfig())
    assert result.texts.tolist() == ["Card [CARD] was charged £20 twice, call [PHONE] or mail [EMAIL]"]
    assert result.types.tolist() == ["email,card,phone"]


def test_iban_followed_by_words_is_redacted_alone():
    result = redact_pii(
        pd.Series(["Send it to DE89 3704 0044 0532 0130 00 TODAY PLEASE"], dtype="string"), PiiConfig()
    )
    assert result.texts.tolist() == ["Send it to [IBAN] TODAY PLEASE"]


def test_disabled_types_are_kept():
    rows = pii_rows()
    config = PiiConfig(email=False, phone=False)
    result = redact_pii(rows["text"].astype("string"), config)
    kept = rows["pii_type"].isin(["email", "phone"]).to_numpy()
    assert (result.texts[kept] == rows.loc[kept, "text"]).all()
    assert set(result.counts) == {"card", "iban", "ip"}


def test_phone_region_decides_national_numbers():
    text = pd.Series(["Call me on 020 7946 0958 tonight"], dtype="string")
    assert redact_pii(text, PiiConfig(phone_region="GB")).rows_redacted == 1
    assert redact_pii(text, PiiConfig(phone_region="US")).rows_redacted == 0


def test_phone_min_digits_keeps_short_numbers():
    text = pd.Series(["Call +49 30 901820 now"], dtype="string")
    assert redact_pii(text, PiiConfig(phone_min_digits=10)).rows_redacted == 1
    assert redact_pii(text, PiiConfig(phone_min_digits=11)).rows_redacted == 0


def test_missing_texts_stay_missing():
    result = redact_pii(pd.Series([None, "mail a@b.example.com"], dtype="string"), PiiConfig())
    assert result.texts.iloc[0] is pd.NA
    assert result.texts.iloc[1] == "mail [EMAIL]"


def test_unknown_phone_region_is_rejected():
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        PiiConfig(phone_region="XX")
