"""Tests of stages.generation.mr_template: the rule-based E2E baseline."""

from __future__ import annotations

import pandas as pd
import pytest
from e2e_rows import E2E

from stages.generation.mr_template import parse_mr, realise, realise_mr


def test_parse_mr_keeps_slot_order():
    slots = parse_mr("name[The Mill], eatType[pub], customer rating[5 out of 5], near[Café Rouge]")
    assert list(slots) == ["name", "eatType", "customer rating", "near"]
    assert slots["customer rating"] == "5 out of 5"
    assert slots["near"] == "Café Rouge"


@pytest.mark.parametrize(
    ("mr", "message"),
    [
        ("name[The Mill] eatType[pub]", "expected a comma at character 16"),
        ("name The Mill", "expected `slot\\[value\\]` at character 1"),
        ("name[A], name[B]", "slot `name` appears twice"),
        ("", "contains no"),
    ],
)
def test_parse_mr_malformed_raises(mr, message):
    with pytest.raises(ValueError, match=message):
        parse_mr(mr)


def test_realise_full_mr():
    text = realise_mr(
        "name[The Vaults], eatType[pub], food[Fast food], priceRange[£20-25], customer rating[high], "
        "area[riverside], familyFriendly[no], near[Café Adriatic]"
    )
    assert text == (
        "The Vaults is a pub serving fast food by the riverside near Café Adriatic. "
        "It has prices of £20-25 and a high customer rating. It is not family-friendly."
    )


def test_realise_minimal_mr():
    assert (
        realise_mr("name[Aromi], eatType[coffee shop], area[city centre]")
        == "Aromi is a coffee shop in the city centre."
    )


def test_realise_numeric_rating_and_article():
    text = realise(
        {"name": "Zizzi", "eatType": "restaurant", "food": "Italian", "customer rating": "1 out of 5"}
    )
    assert text == "Zizzi is a restaurant serving Italian food. It has a customer rating of 1 out of 5."


def test_realise_unknown_slot_gets_own_sentence():
    assert realise({"name": "Aromi", "music": "jazz"}) == "Aromi is a place. Its music is jazz."


def test_realise_every_e2e_test_mr():
    mrs = pd.read_csv(E2E / "testset_w_refs.csv")["mr"].unique()
    for mr in mrs:
        text = realise_mr(mr)
        assert text.endswith(".")
        assert parse_mr(mr)["name"] in text
