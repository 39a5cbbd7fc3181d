"""A rule-based baseline for E2E NLG: meaning representations filled into fixed sentences.

A meaning representation (MR) is a comma-separated list of `slot[value]` pairs, for example
`name[Blue Spice], eatType[coffee shop], area[riverside]`. The realiser handles the eight E2E
slots, and any other slot becomes a sentence of the form "Its <slot> is <value>."
"""

from __future__ import annotations

import re

PAIR = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*")
NUMERIC_RATING = re.compile(r"^\d+ out of \d+$")
KNOWN_SLOTS = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")


def parse_mr(mr: str) -> dict[str, str]:
    """Parse an MR into an ordered slot -> value mapping; raises ValueError on malformed text."""
    slots: dict[str, str] = {}
    position = 0
    while position < len(mr):
        match = PAIR.match(mr, position)
        if match is None:
            raise ValueError(
                f"expected `slot[value]` at character {position + 1}: {mr[position : position + 30]!r}"
            )
        slot, value = match.group(1), match.group(2).strip()
        if slot in slots:
            raise ValueError(f"slot `{slot}` appears twice")
        slots[slot] = value
        position = match.end()
        if position < len(mr):
            if mr[position] != ",":
                raise ValueError(
                    f"expected a comma at character {position + 1}: {mr[position : position + 30]!r}"
                )
            position += 1
    if not slots:
        raise ValueError("contains no `slot[value]` pair")
    return slots


def _with_article(phrase: str) -> str:
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return f"{article} {phrase}"


def _first_sentence(slots: dict[str, str]) -> str:
    subject = slots.get("name") or "This place"
    noun = slots.get("eatType") or "place"
    sentence = f"{subject} is {_with_article(noun)}"

    food = slots.get("food")
    if food:
        # "Fast food" is a common noun, the other E2E values are cuisines ("Italian food").
        dish = food.lower() if food.lower().endswith("food") else f"{food} food"
        sentence += f" serving {dish}"
    area = slots.get("area")
    if area:
        sentence += " by the riverside" if area == "riverside" else f" in the {area}"
    near = slots.get("near")
    if near:
        sentence += f" near {near}"
    return sentence + "."


def _second_sentence(slots: dict[str, str]) -> str | None:
    parts = []
    price = slots.get("priceRange")
    if price:
        if price in ("cheap", "moderate", "high"):
            parts.append(f"{price} prices")
        elif price.startswith("£"):
            parts.append(f"prices of {price}")
        else:
            parts.append(f"prices {price}")
    rating = slots.get("customer rating")
    if rating:
        parts.append(
            f"a customer rating of {rating}"
            if NUMERIC_RATING.match(rating)
            else f"a {rating} customer rating"
        )
    if not parts:
        return None
    return f"It has {' and '.join(parts)}."


def _family_sentence(slots: dict[str, str]) -> str | None:
    value = slots.get("familyFriendly")
    if value is None:
        return None
    if value.lower() == "yes":
        return "It is family-friendly."
    if value.lower() == "no":
        return "It is not family-friendly."
    return f"Its family-friendliness is {value}."


def realise(slots: dict[str, str]) -> str:
    """Fill the slots into fixed sentences: what and where it is, prices and rating, families, the rest."""
    sentences = [_first_sentence(slots), _second_sentence(slots), _family_sentence(slots)]
    sentences += [f"Its {slot} is {value}." for slot, value in slots.items() if slot not in KNOWN_SLOTS]
    return " ".join(sentence for sentence in sentences if sentence)


def realise_mr(mr: str) -> str:
    """Parse an MR and realise it as text; raises ValueError on a malformed MR."""
    return realise(parse_mr(mr))
