"""The `synthetic` source: seeded template filling, and the local-model generator on a tiny model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stages.acquire import acquire, parse_sources
from stages.core.errors import InputDataError, ParamsError


def synthetic_source(**overrides: Any) -> dict[str, Any]:
    source = {
        "name": "templates",
        "type": "synthetic",
        "rows": 6,
        "templates": {
            "card_arrival": ["When will my {card} arrive?", "My {card} has not arrived after {days} days"],
            "refund": ["I want a refund for my {product}"],
        },
        "slots": {"card": ["card", "new card"], "days": ["3", "10"], "product": ["phone", "lamp", "chair"]},
    }
    source.update(overrides)
    return source


def test_labels_alternate_and_slots_are_filled(read_source):
    batch = read_source(synthetic_source(), seed=7)

    records = batch.records
    assert records["label"].tolist() == ["card_arrival", "refund"] * 3
    assert records["source_row"].tolist() == [1, 2, 3, 4, 5, 6]
    assert batch.synthetic is True
    for text, template in zip(records["text"], records["source_query"], strict=True):
        assert "{" not in text
        assert template in {
            "When will my {card} arrive?",
            "My {card} has not arrived after {days} days",
            "I want a refund for my {product}",
        }
    refunds = records[records["label"] == "refund"]
    assert all(
        text.removeprefix("I want a refund for my ") in {"phone", "lamp", "chair"} for text in refunds["text"]
    )


def test_same_seed_same_rows(read_source):
    first = read_source(synthetic_source(rows=20), seed=3)
    second = read_source(synthetic_source(rows=20), seed=3)
    other = read_source(synthetic_source(rows=20), seed=4)

    assert first.records["text"].tolist() == second.records["text"].tolist()
    assert first.records["text"].tolist() != other.records["text"].tolist()


def test_text_and_target_templates_share_slots(read_source):
    templates = {"shipping": [{"text": "Where is my {product}?", "target": "Your {product} ships {when}."}]}
    raw = synthetic_source(
        rows=3,
        templates=templates,
        slots={"product": ["lamp"], "when": ["today"]},
        columns={"text": "text", "label": "label", "target": "target"},
    )

    batch = read_source(raw)

    assert batch.records["text"].tolist() == ["Where is my lamp?"] * 3
    assert batch.records["target"].tolist() == ["Your lamp ships today."] * 3
    assert json.loads(batch.records["source_query"].iloc[0]) == {
        "text": "Where is my {product}?",
        "target": "Your {product} ships {when}.",
    }


def test_acquire_marks_rows_synthetic(read_source):
    configs = parse_sources([synthetic_source(split="train")])

    table, _, metrics = acquire(configs, seed=1)

    assert table["synthetic"].tolist() == [True] * 6
    assert set(table["source_type"]) == {"synthetic"}
    assert table["source_location"].iloc[0] == "synthetic:templates"
    assert table["acquired_at"].isna().all()
    assert table["source_query"].str.contains("{", regex=False).all()
    assert metrics["sources"]["templates"]["generator"] == "template"
    assert 1 <= metrics["sources"]["templates"]["distinct_texts"] <= 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"slots": {"card": ["card"], "days": ["3"]}}, r"uses slot `product`, which `slots` does not define"),
        ({"templates": {"refund": ["a {0} b"]}}, r"placeholders are plain names"),
        ({"templates": {"refund": ["a {product!r}"]}}, r"placeholders are plain names"),
        ({"templates": {"refund": ["a {product"]}}, r"is invalid .*literal brace"),
        ({"templates": {"refund": []}}, r"label 'refund' has no templates"),
        ({"slots": {"card": [], "days": ["3"], "product": ["x"]}}, r"slot `card` has no values"),
        ({"rows": 0}, r"`acquire.sources\[0\].rows` is invalid"),
        ({"generator": "local_model"}, r"needs a `local_model` block"),
        (
            {"local_model": {"path": "models/base_lm"}},
            r"`local_model` only applies with `generator: local_model`",
        ),
    ],
)
def test_invalid_templates_are_rejected(overrides, message):
    with pytest.raises(ParamsError, match=message):
        parse_sources([synthetic_source(**overrides)])


def test_local_model_missing_folder_fails(tmp_path, read_source):
    raw = synthetic_source(generator="local_model", local_model={"path": str(tmp_path / "absent")})

    with pytest.raises(InputDataError, match=r"model folder not found. Run `dvc repro prepare_model`"):
        read_source(raw)


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory):
    """A one-layer Llama with random weights and a word-level tokenizer, saved as safetensors."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-causal-lm")
    words = [
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
        "card",
        "refund",
        "my",
        "when",
        "will",
        "arrive",
        "i",
        "want",
        "a",
        "for",
        "phone",
    ]
    tokenizer_model = models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="<unk>")
    backend = Tokenizer(tokenizer_model)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_local_model_writes_each_row(tiny_causal_lm, read_source):
    import torch

    torch.set_num_threads(1)
    raw = synthetic_source(
        rows=4,
        generator="local_model",
        local_model={
            "path": str(tiny_causal_lm),
            "max_new_tokens": 6,
            "temperature": 1.0,
            "device": "cpu",
            "batch_size": 2,
        },
    )

    first = read_source(raw, seed=5)
    second = read_source(raw, seed=5)

    records = first.records
    assert len(records) + len(first.rejected) == 4
    assert set(first.rejected["reason"]) <= {"empty_generation"}
    assert all(
        prompt.startswith(("When will my", "My ", "I want a refund")) for prompt in records["source_query"]
    )
    assert records["text"].tolist() == second.records["text"].tolist()
    assert first.extra["generation"]["prompts"] == 4
    assert first.extra["generation"]["model"] == str(tiny_causal_lm)
    assert first.synthetic is True
