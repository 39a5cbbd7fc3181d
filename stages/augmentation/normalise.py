"""Normalising new texts with the curate stage's rules, so synthetic rows look like curated rows.

The curate stage repairs text (mojibake, HTML, Unicode form, invisible characters, whitespace)
and redacts PII. A generating model can produce all of these, and it invents phone numbers, so
every new text goes through the same two steps with the same `curate` params.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import pandas as pd

from stages.core.errors import ParamsError
from stages.core.params import parse_value
from stages.curation.pii import PiiConfig, redact_pii
from stages.curation.text_repair import RepairConfig, UnicodeForm, repair_texts


def build_normaliser(params: dict[str, Any]) -> Callable[[pd.Series], pd.Series]:
    """Return a function that applies the text repair and PII redaction of params `curate` to texts.

    NOTE: this reads `curate.unicode_form`, `curate.repair` and `curate.pii`, the keys of the
    curation rule configs; the other `curate` keys (lengths, duplicates, labels) do not change text.
    """
    curate = params.get("curate") or {}
    if not isinstance(curate, dict):
        raise ParamsError("curate", curate, "must be a mapping")
    form = curate.get("unicode_form", "NFKC")
    if form not in get_args(UnicodeForm):
        raise ParamsError("curate.unicode_form", form, f"must be one of {', '.join(get_args(UnicodeForm))}")
    repair = parse_value(curate.get("repair") or {}, "curate.repair", RepairConfig)
    pii = parse_value(curate.get("pii") or {}, "curate.pii", PiiConfig)

    def normalise(texts: pd.Series) -> pd.Series:
        repaired, _ = repair_texts(texts.astype("string"), form, repair)
        return redact_pii(repaired, pii).texts

    return normalise
