"""Small E2E NLG frames in the common schema, and a tiny causal LM whose vocabulary covers them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from tiny_models import build_tiny_causal_lm

from stages.core import schema as S
from stages.generation.config import PromptConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E = REPO_ROOT / "data" / "sources" / "e2e_nlg"
WIKITEXT = REPO_ROOT / "data" / "sources" / "wikitext2" / "test.txt"

# The same split as the tokenizers `Whitespace` pre-tokenizer: runs of word characters or of punctuation.
WORD = re.compile(r"\w+|[^\w\s]+")


def e2e_frame(file: str, inputs: int, split: str, skip_inputs: int = 0) -> pd.DataFrame:
    """Return every row of `inputs` distinct meaning representations of an E2E file, common schema."""
    raw = pd.read_csv(E2E / file)
    chosen = list(dict.fromkeys(raw["mr"]))[skip_inputs : skip_inputs + inputs]
    raw = raw[raw["mr"].isin(chosen)].reset_index()
    frame = pd.DataFrame(
        {
            S.TEXT: raw["mr"].astype("string"),
            S.TARGET: raw["ref"].astype("string"),
            S.GROUP: raw["mr"].astype("string"),
            S.SPLIT: split,
            S.SOURCE: f"e2e-{file}",
            S.SOURCE_TYPE: "csv",
            S.SOURCE_LOCATION: f"data/sources/e2e_nlg/{file}",
            S.SOURCE_ROW: (raw["index"] + 2).astype("int64"),
        }
    )
    for column in S.ALL_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame[S.SYNTHETIC] = False
    frame[S.ROW_ID] = S.row_ids(f"e2e-{file}", file, frame[S.SOURCE_ROW])
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    return frame[S.ALL_COLUMNS]


def vocabulary(*texts: str) -> list[str]:
    """Return the distinct words and punctuation runs of `texts`, in first-seen order."""
    return list(dict.fromkeys(token for text in texts for token in WORD.findall(text)))


def build_e2e_lm(folder: Path, frames: list[pd.DataFrame], extra_text: str = "", seed: int = 0) -> Path:
    """Save a tiny random Llama whose word tokenizer covers the prompts, inputs and targets of `frames`."""
    prompt = PromptConfig()
    texts = ["system user assistant", prompt.instruction, prompt.plain_template, extra_text]
    for frame in frames:
        texts += list(frame[S.TEXT].astype(str)) + list(frame[S.TARGET].astype(str))
    return build_tiny_causal_lm(folder, vocabulary(*texts), seed=seed)
