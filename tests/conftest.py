"""Fixtures shared across the test suite: small real-text frames and a tiny encoder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stages.core import schema as S

REPO_ROOT = Path(__file__).resolve().parents[1]
BANKING77 = REPO_ROOT / "data" / "sources" / "banking77"

# Tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def banking_frame(split: str, labels: list[str], per_label: int) -> pd.DataFrame:
    """Return up to `per_label` BANKING77 rows per label in the common schema."""
    raw = pd.read_csv(BANKING77 / f"{split}.csv")
    raw = (
        raw[raw["category"].isin(labels)]
        .groupby("category", sort=True)
        .head(per_label)
        .reset_index(drop=True)
    )
    frame = pd.DataFrame(
        {
            S.TEXT: raw["text"].astype("string"),
            S.LABEL: raw["category"].astype("string"),
            S.SPLIT: split,
            S.SOURCE: f"banking77-{split}",
            S.SOURCE_TYPE: "csv",
            S.SOURCE_LOCATION: f"data/sources/banking77/{split}.csv",
            S.SOURCE_ROW: pd.Series(range(2, len(raw) + 2), dtype="int64"),
        }
    )
    for column in S.ALL_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame[S.SYNTHETIC] = False
    frame[S.ROW_ID] = S.row_ids(f"banking77-{split}", f"{split}.csv", frame[S.SOURCE_ROW])
    frame[S.CONTENT_HASH] = S.content_hashes(frame)
    return frame[S.ALL_COLUMNS]


FOUR_LABELS = ["card_arrival", "change_pin", "exchange_rate", "lost_or_stolen_card"]


@pytest.fixture
def small_splits() -> dict[str, pd.DataFrame]:
    """Train, validation and test frames of four BANKING77 intents (real text)."""
    train_all = banking_frame("train", FOUR_LABELS, 40)
    validation = train_all.groupby(S.LABEL, sort=True).tail(8).copy()
    train = train_all.drop(validation.index).reset_index(drop=True)
    validation[S.SPLIT] = "validation"
    test = banking_frame("test", FOUR_LABELS, 10)
    return {"train": train, "validation": validation.reset_index(drop=True), "test": test}


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with random weights and the packaged MiniLM tokenizer, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from stages.core.models import resolve_model

    folder = tmp_path_factory.mktemp("tiny-encoder")
    source = Path(resolve_model("packaged:all-MiniLM-L6-v2"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the repository's tracked layout (code, params, sources) without outputs."""
    target = tmp_path / "repo"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "mlflow.db", "mlartifacts", "mlruns", ".pytest_cache"
    )
    target.mkdir()
    for name in ("stages", "expectations", "dvc.yaml", "params.yaml", ".dvc", ".dvcignore", "pyproject.toml"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)
    shutil.copytree(REPO_ROOT / "data" / "sources", target / "data" / "sources")
    for stale in ("tmp", "cache"):
        shutil.rmtree(target / ".dvc" / stale, ignore_errors=True)
    return target
