"""PII redaction: e-mail addresses, payment card numbers, IBANs, IP addresses and phone numbers.

Each value found is replaced by a typed placeholder such as `[EMAIL]`. Candidates come from
regular expressions and are confirmed by a validator before anything is replaced: card numbers
by their Luhn check digit (`stdnum.luhn`), IBANs by their mod-97 checksum (`stdnum.iban`), IP
addresses by the `ipaddress` module and phone numbers by `phonenumbers`. Validation is what keeps
text such as "the last 4 digits 1234", amounts and dates untouched.

Only rows that a vectorised pre-filter selects (an "@", enough digits, ...) go through the
per-row Python matching, so clean rows cost one RE2 scan each.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator
from stdnum import iban, luhn

from stages.core.params import StageConfig
from stages.curation.strings import to_arrow, to_series

PII_TYPES = ("email", "iban", "card", "ip", "phone")
PLACEHOLDERS = {name: f"[{name.upper()}]" for name in PII_TYPES}

LENIENCY = {
    "possible": phonenumbers.Leniency.POSSIBLE,
    "valid": phonenumbers.Leniency.VALID,
    "strict_grouping": phonenumbers.Leniency.STRICT_GROUPING,
    "exact_grouping": phonenumbers.Leniency.EXACT_GROUPING,
}


class PiiConfig(StageConfig):
    """Switches per PII type and the phone-number matching settings."""

    email: bool = True
    phone: bool = True
    card: bool = True
    iban: bool = True
    ip: bool = True
    phone_region: str = Field(default="GB", min_length=2, max_length=2)
    phone_min_digits: int = Field(default=8, ge=3, le=17)
    phone_leniency: str = "valid"

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                "must be an ISO 3166-1 alpha-2 region that phonenumbers supports, such as GB or US"
            )
        return value

    @field_validator("phone_leniency")
    @classmethod
    def _known_leniency(cls, value: str) -> str:
        if value not in LENIENCY:
            raise ValueError(f"must be one of {', '.join(LENIENCY)}")
        return value

    def enabled_types(self) -> list[str]:
        return [name for name in PII_TYPES if getattr(self, name)]


# The local part allows the characters RFC 5322 allows unquoted. The domain needs a dot and an
# alphabetic top-level domain, so "user@localhost" and "@mentions" are not e-mail addresses.
EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![\w-])"
)

# Two letters, two check digits, then 11 to 30 letters or digits, optionally in groups split by
# single spaces or dashes. A match can run into the next word; `_iban_spans` shortens it.
IBAN_CANDIDATE = re.compile(r"(?<![\w])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,30}(?![\w])")

# 13 to 19 digits, optionally split by single spaces or dashes ("4111 1111 1111 1111").
CARD_CANDIDATE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d])")

IPV4_CANDIDATE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
# Two to seven colon-separated hex groups, allowing "::" and a trailing dotted IPv4 part.
IPV6_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z:])"
)

# Vectorised RE2 pre-filters: a row without a match cannot contain that PII type.
PREFILTERS = {
    "email": r"@",
    "iban": r"[A-Za-z]{2}[0-9]{2}",
    "card": r"(?:[0-9][ -]?){13}",
    "ip": r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.|[0-9A-Fa-f]*:[0-9A-Fa-f]*:",
    "phone": None,  # built from phone_min_digits
}

Span = tuple[int, int]


@dataclass
class RedactionResult:
    """Redacted texts, the PII types found in each row, and the number of values per type."""

    texts: pd.Series
    types: pd.Series
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows_redacted(self) -> int:
        return int((self.types != "").sum())


def redact_pii(texts: pd.Series, config: PiiConfig) -> RedactionResult:
    """Replace every PII value in `texts` with its placeholder; missing texts stay missing."""
    enabled = config.enabled_types()
    counts = dict.fromkeys(enabled, 0)
    types = pd.Series("", index=texts.index, dtype="string")
    values = to_arrow(texts)
    if not enabled or len(values) == 0:
        return RedactionResult(texts.astype("string"), types, counts)

    selected = _candidate_rows(values, enabled, config)
    positions = pc.indices_nonzero(selected)
    if len(positions) == 0:
        return RedactionResult(to_series(values, texts.index), types, counts)

    finders = _finders(config)
    originals = pc.take(values, positions).to_pylist()
    redacted: list[str] = []
    found_types: list[str] = []
    for text in originals:
        new_text, found = _redact_one(text, enabled, finders)
        redacted.append(new_text)
        found_types.append(",".join(name for name in enabled if found.get(name)))
        for name, number in found.items():
            counts[name] += number

    values = pc.replace_with_mask(values, selected, pa.array(redacted, type=values.type))
    row_positions = positions.to_numpy()
    types.iloc[row_positions] = found_types
    return RedactionResult(to_series(values, texts.index), types, counts)


def _candidate_rows(values: pa.Array, enabled: list[str], config: PiiConfig) -> pa.Array:
    patterns = []
    for name in enabled:
        if name == "phone":
            # At least phone_min_digits digits, each followed by at most three separator characters.
            patterns.append(rf"(?:[0-9][^0-9]{{0,3}}){{{config.phone_min_digits}}}")
        else:
            patterns.append(PREFILTERS[name])
    combined = "|".join(f"(?:{pattern})" for pattern in patterns)
    return pc.fill_null(pc.match_substring_regex(values, pattern=combined), False)


def _redact_one(
    text: str | None, enabled: list[str], finders: dict[str, Callable[[str], list[Span]]]
) -> tuple[str | None, dict[str, int]]:
    """Redact one text type by type, so that later finders never see an earlier placeholder's value."""
    found: dict[str, int] = {}
    if text is None:
        return None, found
    for name in enabled:
        spans = finders[name](text)
        if spans:
            text = _replace_spans(text, spans, PLACEHOLDERS[name])
            found[name] = len(spans)
    return text, found


def _replace_spans(text: str, spans: list[Span], placeholder: str) -> str:
    pieces = []
    last = 0
    for start, end in sorted(spans):
        if start < last:
            continue  # overlapping candidates: the first one wins
        pieces.append(text[last:start])
        pieces.append(placeholder)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _finders(config: PiiConfig) -> dict[str, Callable[[str], list[Span]]]:
    leniency = LENIENCY[config.phone_leniency]

    def phone_spans(text: str) -> list[Span]:
        spans = []
        for match in phonenumbers.PhoneNumberMatcher(text, config.phone_region, leniency=leniency):
            digits = sum(character.isdigit() for character in match.raw_string)
            if digits >= config.phone_min_digits:
                spans.append((match.start, match.end))
        return spans

    return {
        "email": _email_spans,
        "iban": _iban_spans,
        "card": _card_spans,
        "ip": _ip_spans,
        "phone": phone_spans,
    }


def _email_spans(text: str) -> list[Span]:
    return [match.span() for match in EMAIL.finditer(text)]


def _iban_spans(text: str) -> list[Span]:
    """Return IBANs with a valid checksum, trying shorter prefixes when a match ran into the next word."""
    spans = []
    for match in IBAN_CANDIDATE.finditer(text):
        candidate = match.group()
        # Possible ends: before each separator, or the end of the match; the longest valid one wins.
        ends = [index for index, character in enumerate(candidate) if character in " -"] + [len(candidate)]
        for end in sorted(ends, reverse=True):
            compact = re.sub(r"[ -]", "", candidate[:end])
            if 15 <= len(compact) <= 34 and iban.is_valid(compact):
                spans.append((match.start(), match.start() + end))
                break
    return spans


def _card_spans(text: str) -> list[Span]:
    spans = []
    for match in CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            spans.append(match.span())
    return spans


def _ip_spans(text: str) -> list[Span]:
    spans = []
    for match in IPV4_CANDIDATE.finditer(text):
        if _is_ip(match.group(), ipaddress.IPv4Address):
            spans.append(match.span())
    for match in IPV6_CANDIDATE.finditer(text):
        value = match.group()
        # "::" alone or a clock time such as "12:30:45" is not an address worth redacting.
        if sum(character.isalnum() for character in value) >= 2 and _is_ip(value, ipaddress.IPv6Address):
            spans.append(match.span())
    return spans


def _is_ip(value: str, kind: type) -> bool:
    try:
        kind(value)
    except ValueError:
        return False
    return True
