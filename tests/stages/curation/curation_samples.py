"""Real BANKING77 rows with planted problems, for the curate tests.

Every sample starts from rows of data/sources/banking77 and plants one kind of problem with a
known expected outcome: edited near-copies, PII values of every type, sentences in other
languages and flipped labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import schema as S

REPO_ROOT = Path(__file__).resolve().parents[3]
BANKING77 = REPO_ROOT / "data" / "sources" / "banking77"


def banking_rows(
    split: str = "train", labels: list[str] | None = None, per_label: int | None = None
) -> pd.DataFrame:
    """Return BANKING77 rows of one split in the common schema, in file order."""
    raw = pd.read_csv(BANKING77 / f"{split}.csv")
    raw["source_row"] = np.arange(2, len(raw) + 2)
    if labels is not None:
        raw = raw[raw["category"].isin(labels)]
    if per_label is not None:
        raw = raw.groupby("category", sort=False).head(per_label)
    return common_schema(raw["text"], raw["category"], split, raw["source_row"])


def common_schema(texts, labels, split, source_rows) -> pd.DataFrame:
    """Build a common-schema frame; `split` is one name for every row or one name per row."""
    texts = pd.Series(list(texts), dtype="string")
    frame = pd.DataFrame(
        {
            S.TEXT: texts,
            S.LABEL: pd.Series(list(labels), dtype="string"),
            S.SPLIT: pd.Series(
                [split] * len(texts) if isinstance(split, str) else list(split), dtype="string"
            ),
            S.SOURCE: "banking77",
            S.SOURCE_TYPE: "csv",
            S.SOURCE_LOCATION: "data/sources/banking77",
            S.SOURCE_ROW: pd.Series(list(source_rows), dtype="int64"),
        }
    )
    for column in S.ALL_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame[S.SYNTHETIC] = False
    # Row ids are unique per (split, source row), like acquire's ids per (source, row).
    ids = [
        S.sha256_hex(split_name, row)[:20]
        for split_name, row in zip(frame[S.SPLIT], frame[S.SOURCE_ROW], strict=True)
    ]
    frame[S.ROW_ID] = pd.Series(ids, dtype="string")
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    return frame[S.ALL_COLUMNS].reset_index(drop=True)


def every_other_class(count: int = 20) -> list[str]:
    """Return `count` BANKING77 classes, every second one in alphabetical order (fewer look-alike intents)."""
    classes = sorted(pd.read_csv(BANKING77 / "train.csv")["category"].unique())
    return classes[::2][:count]


# Replacement words for "change one word" edits; none of them is common in BANKING77.
SUBSTITUTES = ["purple", "yesterday", "quickly", "honestly", "tomorrow", "somewhere", "really", "kindly"]


def edit_copy(text: str, kind: str, generator: np.random.Generator) -> str:
    """Return `text` with one word changed, dropped or added at a random position."""
    words = text.split()
    position = int(generator.integers(1, len(words) - 1))
    word = SUBSTITUTES[int(generator.integers(len(SUBSTITUTES)))]
    if kind == "change":
        words[position] = word
    elif kind == "drop":
        del words[position]
    elif kind == "add":
        words.insert(position, word)
    else:
        raise ValueError(kind)
    return " ".join(words)


# Valid values of every PII type: Luhn-valid card numbers, IBANs with a correct checksum,
# phone numbers that phonenumbers accepts for their region, and IPv4/IPv6 addresses.
PII_VALUES = {
    "email": ["john.doe@example.com", "Jane_Smith+bank@mail.example.co.uk", "ops-team@sub.example.org"],
    "card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"],
    "phone": ["+44 20 7946 0958", "020 7946 0958", "+1 415-555-2671", "+49 30 901820", "07911 123456"],
    "ip": ["192.168.1.20", "10.0.0.254", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
}

PII_PHRASES = {
    "email": "Please send the answer to {value}.",
    "card": "My card number is {value}.",
    "iban": "The account is {value}.",
    "phone": "You can call me on {value}.",
    "ip": "The login came from {value}.",
}


def pii_rows() -> pd.DataFrame:
    """Return one row per planted PII value, with columns `text`, `pii_type` and `value`.

    Each value is appended to a different real BANKING77 query (of classes that
    `every_other_class` skips), so redacted rows are neither duplicates nor near-duplicates.
    """
    classes = sorted(pd.read_csv(BANKING77 / "train.csv")["category"].unique())[1::2]
    queries = banking_rows("train", classes, per_label=1)["text"].tolist()
    records = []
    for kind, values in PII_VALUES.items():
        for value in values:
            query = queries[len(records)]
            records.append(
                {"text": f"{query} {PII_PHRASES[kind].format(value=value)}", "pii_type": kind, "value": value}
            )
    return pd.DataFrame(records)


# Sentences in other languages, long enough for confident detection.
FOREIGN_SENTENCES = {
    "de": [
        "Ich habe meine Karte vor zwei Wochen bestellt und sie ist immer noch nicht angekommen.",
        "Warum wurde mir für die Überweisung auf mein Konto eine zusätzliche Gebühr berechnet?",
    ],
    "fr": [
        "Je n'ai toujours pas reçu ma nouvelle carte bancaire, que dois-je faire maintenant ?",
        "Pourquoi ma demande de virement a-t-elle été refusée par votre banque hier soir ?",
    ],
    "es": [
        "Todavía no he recibido mi tarjeta nueva y la pedí hace más de dos semanas.",
        "¿Por qué me han cobrado una comisión adicional por sacar dinero del cajero?",
    ],
}


def flip_labels(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Give `share` of the rows a different label, drawn at random; returns the frame and the flipped mask."""
    generator = np.random.default_rng(seed)
    labels = frame[S.LABEL].to_numpy(dtype=object).copy()
    classes = np.array(sorted(set(labels)))
    flipped = np.zeros(len(frame), dtype=bool)
    flipped[generator.choice(len(frame), round(share * len(frame)), replace=False)] = True
    for position in np.flatnonzero(flipped):
        others = classes[classes != labels[position]]
        labels[position] = others[int(generator.integers(len(others)))]
    result = frame.copy()
    result[S.LABEL] = pd.Series(labels, index=frame.index, dtype="string")
    return result, flipped
