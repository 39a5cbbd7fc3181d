"""Label rules: case folding, aliases, missing labels and labels outside the allowed set."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from stages.curation.labels import (
    LABEL_NOT_ALLOWED,
    MISSING_LABEL,
    LabelConfig,
    label_reasons,
    normalise_labels,
)


def test_casefold_and_aliases():
    config = LabelConfig(aliases={"Lost_Card": "lost_or_stolen_card"})
    labels, changed = normalise_labels(
        pd.Series(["Refund_not_showing_up", " lost_card ", "card_arrival"], dtype="string"), config
    )
    assert labels.tolist() == ["refund_not_showing_up", "lost_or_stolen_card", "card_arrival"]
    assert changed == 2


def test_casefold_off_keeps_case():
    labels, changed = normalise_labels(
        pd.Series(["Refund_not_showing_up"], dtype="string"), LabelConfig(casefold=False)
    )
    assert labels.tolist() == ["Refund_not_showing_up"]
    assert changed == 0


def test_blank_labels_become_missing():
    labels, _ = normalise_labels(pd.Series([None, "", "   ", "x"], dtype="string"), LabelConfig())
    reasons = label_reasons(labels, LabelConfig())
    assert reasons.tolist() == [MISSING_LABEL, MISSING_LABEL, MISSING_LABEL, pd.NA]


def test_labels_outside_allowed_are_flagged():
    config = LabelConfig(allowed=["Card_Arrival", "exchange_rate"])
    labels, _ = normalise_labels(
        pd.Series(["card_arrival", "EXCHANGE_RATE", "pin_blocked"], dtype="string"), config
    )
    assert label_reasons(labels, config).tolist() == [pd.NA, pd.NA, LABEL_NOT_ALLOWED]


def test_empty_allowed_accepts_any_label():
    assert label_reasons(pd.Series(["anything"], dtype="string"), LabelConfig()).isna().all()


def test_alias_chain_is_rejected():
    with pytest.raises(ValidationError, match="both an alias and an alias target"):
        LabelConfig(aliases={"a": "b", "b": "c"})


def test_alias_target_outside_allowed_is_rejected():
    with pytest.raises(ValidationError, match="not in `allowed`"):
        LabelConfig(aliases={"lost": "stolen"}, allowed=["lost_or_stolen_card"])
