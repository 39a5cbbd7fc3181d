"""Small labelled splits and a planted generator for the augment tests."""

from __future__ import annotations

import pandas as pd

from stages.augmentation.config import AugmentConfig
from stages.augmentation.normalise import build_normaliser
from stages.augmentation.pipeline import Generators, augment_train
from stages.core import schema as S
from stages.core.local_lm import GenerationResult
from stages.core.params import parse_value

CARD_LOST = [
    "i lost my card yesterday",
    "my card is gone and i cannot find it",
    "someone stole my bank card on the bus",
    "how do i block a card that i lost",
    "please freeze my card because it went missing",
    "my wallet with the card was stolen last night",
]
TOP_UP = [
    "how do i top up my account",
    "can i add money with a bank transfer",
    "my top up did not go through",
    "what is the limit for a top up",
    "is there a fee to top up with a card",
    "top up by cash at the atm, is that possible",
    "where can i see my top up history",
    "the top up failed twice today",
    "how long does a top up take to arrive",
    "can my friend top up my account for me",
]
REFUND = [
    "i want a refund for this purchase",
    "the shop promised a refund but it has not arrived",
    "how long does a refund take",
    "my refund is missing from the statement",
    "can i get my money back for a cancelled order",
    "refund still pending after two weeks",
    "where is the refund the merchant sent",
    "i returned the item, when is the refund coming",
]
TEST_COPY = "my card was stolen at the train station yesterday evening"
VALIDATION_COPY = "can i top up my account using apple pay please"
NORMALISE = build_normaliser({})


def rows(texts: list[str], label: str, split: str, prefix: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            S.ROW_ID: [f"{prefix}{index}" for index in range(len(texts))],
            S.TEXT: texts,
            S.LABEL: label,
            S.SPLIT: split,
            S.SYNTHETIC: False,
        }
    )
    return frame.astype({S.ROW_ID: "string", S.TEXT: "string", S.LABEL: "string", S.SPLIT: "string"})


def build_splits() -> dict[str, pd.DataFrame]:
    train = pd.concat(
        [
            rows(CARD_LOST, "card_lost", "train", "lost-"),
            rows(TOP_UP, "top_up", "train", "top-"),
            rows(REFUND, "refund", "train", "ref-"),
        ],
        ignore_index=True,
    )
    validation = pd.concat(
        [
            rows([VALIDATION_COPY, "my card does not work abroad"], "top_up", "validation", "val-"),
            rows(["refund for a double charge"], "refund", "validation", "val-r"),
        ],
        ignore_index=True,
    )
    test = pd.concat(
        [
            rows([TEST_COPY, "lost card, what now"], "card_lost", "test", "test-"),
            rows(["top up with a new card"], "top_up", "test", "test-t"),
        ],
        ignore_index=True,
    )
    return {"train": train, "validation": validation, "test": test}


def config(**overrides) -> AugmentConfig:
    raw = {
        "class_floor": 9,
        "max_classes": None,
        "backtranslation": {"enabled": False},
        "edits": {"rows_per_class": 4},
        "fewshot": {"prompts_per_class": 1, "k": 3, "examples_per_prompt": 3},
        "filters": {"label_check": {"min_probability": 0.0}, "max_synthetic_share": 0.5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_value(raw, "augment", AugmentConfig)


def planted_generator(answer: str, tokens: int = 10):
    """Return a generating function that answers every prompt with `answer`."""
    seen: list = []

    def run(prompts):
        seen.extend(prompts)
        return GenerationResult(
            texts=[answer] * len(prompts),
            new_tokens=tokens * len(prompts),
            seconds=0.5,
            per_prompt_new_tokens=[tokens] * len(prompts),
        )

    run.seen = seen
    return run


PLANTED_ANSWER = (
    "Here are three new messages:\n"
    f"1. {TEST_COPY}\n"
    f'2. "{TEST_COPY.upper()}!"\n'
    "3. My card was stolen at the train station yesterday evening, help\n"
    f"4. {VALIDATION_COPY}\n"
    "5. somebody took my debit card from my bag at the market\n"
    "I hope this helps!"
)


def run_planted(splits, cfg=None, answer=PLANTED_ANSWER, tokens=10):
    generators = Generators(fewshot=planted_generator(answer, tokens), fewshot_model="planted-model")
    return augment_train(
        splits["train"],
        {"validation": splits["validation"], "test": splits["test"]},
        cfg or config(),
        7,
        generators,
        NORMALISE,
    )
