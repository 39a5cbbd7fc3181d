"""Matching keys: case, punctuation and spacing are ignored; symbols and letters are not."""

from __future__ import annotations

import pandas as pd

from stages.curation.strings import matching_keys


def test_keys_ignore_case_punctuation_and_spacing():
    keys = matching_keys(pd.Series(["Where's my top-up?!", "WHERE S  my top up", None], dtype="string"))
    assert keys.tolist() == ["where s my top up", "where s my top up", ""]


def test_keys_keep_symbols_and_non_latin_letters():
    keys = matching_keys(pd.Series(["A £1 fee", "A $1 fee", "Straße", "カードが届かない。"], dtype="string"))
    assert keys.tolist() == ["a £1 fee", "a $1 fee", "strasse", "カードが届かない"]
