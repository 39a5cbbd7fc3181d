"""Normalising new texts with the curate stage's rules, so synthetic rows look like curated rows."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any


def build_normaliser(params: dict[str, Any]) -> Callable[[str], str]:
    """Return a function that applies the curate text rules of `params` to one text."""
    form = (params.get("curate") or {}).get("unicode_form", "NFKC")

    def normalise(text: str) -> str:
        return " ".join(unicodedata.normalize(form, text).split())

    return normalise
