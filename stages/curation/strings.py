"""Vectorised string helpers shared by the curation rules (pyarrow compute, RE2 patterns)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Runs of characters that are neither letters nor digits (RE2 syntax, Unicode-aware).
NON_ALPHANUMERIC = r"[^\p{L}\p{N}]+"


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

    The key is case-folded, every run of characters other than letters and digits becomes one
    space, and both ends are trimmed: "Where's my card?" and "where s my CARD" share a key.
    Missing texts give an empty key.
    """
    folded = texts.astype("string").fillna("").str.casefold()
    spaced = pc.replace_substring_regex(to_arrow(folded), pattern=NON_ALPHANUMERIC, replacement=" ")
    return to_series(pc.utf8_trim_whitespace(spaced), texts.index)
