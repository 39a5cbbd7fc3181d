"""Length rules: empty, too-short and too-long texts."""

from __future__ import annotations

import pandas as pd


def length_reasons(texts: pd.Series, column: str, min_chars: int, max_chars: int) -> pd.Series:
    """Return a reason code per row that breaks a length rule, or <NA> for rows within bounds.

    Lengths count Unicode code points of the repaired text. A missing or whitespace-only value is
    `empty_<column>`; a shorter one `<column>_too_short`, a longer one `<column>_too_long`.
    """
    stripped = texts.astype("string").str.strip()
    lengths = stripped.str.len().fillna(0).astype("int64")
    reasons = pd.Series(pd.NA, index=texts.index, dtype="string")
    reasons[lengths < min_chars] = f"{column}_too_short"
    reasons[lengths > max_chars] = f"{column}_too_long"
    reasons[lengths == 0] = f"empty_{column}"
    return reasons


def length_detail(texts: pd.Series, min_chars: int, max_chars: int) -> pd.Series:
    """Return a short explanation per row for the quarantine table."""
    lengths = texts.astype("string").str.strip().str.len().fillna(0).astype("int64")
    return lengths.map(lambda length: f"{length} characters (allowed {min_chars} to {max_chars})")
