"""Vectorised string helpers shared by the curation rules (pyarrow compute, RE2 patterns)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Runs of punctuation and whitespace (RE2 syntax, Unicode-aware). Symbols such as currency
# signs stay: "£1" and "$1" are different texts.
PUNCTUATION_AND_SPACE = r"[\p{P}\p{Z}\s]+"


def to_arrow(texts: pd.Series) -> pa.Array:
    """Return `texts` as one contiguous Arrow string array; missing values become nulls."""
    if not isinstance(texts.dtype, pd.StringDtype):
        texts = texts.astype("string")
    values = pa.array(texts)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values


def to_series(values: pa.Array, index: pd.Index) -> pd.Series:
    """Return Arrow strings as a pandas `string` Series with `index`."""
    return pd.Series(pd.array(values, dtype="string"), index=index)


def changed(before: pa.Array, after: pa.Array) -> int:
    """Count the non-null positions where `after` differs from `before`."""
    return int(pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0)


def matching_keys(texts: pd.Series) -> pd.Series:
    """Return the key two texts must share to count as the same text.

    The key is case-folded, every run of punctuation and whitespace becomes one space, and both
    ends are trimmed: "Where's my top-up?" and "where s my TOP UP" share a key.
    Missing texts give an empty key.
    """
    folded = texts.astype("string").fillna("").str.casefold()
    spaced = pc.replace_substring_regex(to_arrow(folded), pattern=PUNCTUATION_AND_SPACE, replacement=" ")
    return to_series(pc.utf8_trim_whitespace(spaced), texts.index)
