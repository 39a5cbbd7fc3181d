"""Tests of stages.generation.forgetting: WikiText detokenisation, line sampling and the gate."""

from __future__ import annotations

import pytest
import torch
from e2e_rows import WIKITEXT, vocabulary
from tiny_models import build_tiny_causal_lm

from stages.core.errors import GateError
from stages.core.local_lm import load_lm
from stages.generation.config import ForgettingConfig, LoraParams
from stages.generation.forgetting import (
    check_forgetting,
    detokenize,
    eligible_lines,
    measure_forgetting,
    perplexity,
    read_general_text,
    sample_lines,
)
from stages.generation.training import add_lora

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" a well @-@ known actor , born in 1 @,@ 000 @.@ 5 . ", "a well-known actor, born in 1,000.5."),
        (' He said " I loved it " ; they didn \'t . ', 'He said "I loved it"; they didn\'t.'),
        (" Teddy 's Story ( 2004 ) : part one ! ", "Teddy's Story (2004): part one!"),
        (" the Coaches ' Poll , ranked # 2 at 3 : 04 ? ", "the Coaches' Poll, ranked #2 at 3:04?"),
        (" you 're , we 've , I 'm , she 'll , he 'd ", "you're, we've, I'm, she'll, he'd"),
    ],
)
def test_detokenize_restores_plain_text(raw, expected):
    assert detokenize(raw) == expected


def test_eligible_lines_leave_out_headings_unk_and_blanks():
    raw = [
        " ",
        " = Robert Boulter = ",
        " = = Career = = ",
        " He was <unk> there . ",
        " He acted in 2000 . ",
        "",
    ]
    assert eligible_lines(raw) == ["He acted in 2000."]


def test_read_general_text_wikitext_file():
    lines = read_general_text(WIKITEXT)
    assert len(lines) > 100
    assert not any("<unk>" in line for line in lines)
    assert not any(" @" in line for line in lines)
    assert not any(line.startswith("=") and line.endswith("=") for line in lines)


def test_sample_lines_respects_budgets():
    lines = read_general_text(WIKITEXT)
    tokenizer = load_tokenizer(lines)
    by_lines = sample_lines(lines, tokenizer, ForgettingConfig(max_lines=5, max_tokens=100_000), seed=1)
    assert len(by_lines) == 5
    assert by_lines == sample_lines(
        lines, tokenizer, ForgettingConfig(max_lines=5, max_tokens=100_000), seed=1
    )
    by_tokens = sample_lines(
        lines, tokenizer, ForgettingConfig(max_lines=500, max_tokens=60, max_length=50), seed=1
    )
    assert 1 <= len(by_tokens) < 10


def load_tokenizer(lines):
    from tiny_models import build_word_tokenizer

    return build_word_tokenizer(vocabulary(*lines))


@pytest.fixture(scope="module")
def general_model(tmp_path_factory):
    lines = read_general_text(WIKITEXT)[:40]
    folder = build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", vocabulary(*lines), seed=3)
    lm = load_lm(folder, device="cpu")
    fit_to_lines(lm.model, lm.tokenizer, lines[:8])
    torch.manual_seed(0)
    model = add_lora(lm.model, LoraParams(r=4, alpha=8, dropout=0.0))
    return model, lm.tokenizer, lines


def fit_to_lines(model, tokenizer, lines, steps: int = 40) -> None:
    """Train the whole tiny model on `lines`, so that its predictions are far from uniform."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = tokenizer(lines, return_tensors="pt", padding=True, truncation=True, max_length=64)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_perplexity_of_fitted_lines_far_below_vocabulary_size(general_model):
    model, tokenizer, lines = general_model
    fitted, tokens = perplexity(model, tokenizer, lines[:8], max_length=64, batch_size=3)
    unseen, _ = perplexity(model, tokenizer, lines[20:28], max_length=64, batch_size=3)
    assert tokens > 50
    assert fitted < 0.1 * len(tokenizer)
    assert unseen > 2 * fitted


def test_perplexity_independent_of_batch_size(general_model):
    model, tokenizer, lines = general_model
    unbatched, _ = perplexity(model, tokenizer, lines[:6], max_length=64, batch_size=1)
    batched, _ = perplexity(model, tokenizer, lines[:6], max_length=64, batch_size=4)
    assert unbatched == pytest.approx(batched, rel=1e-4)


def test_forgetting_gate_passes_unchanged_adapter(general_model):
    model, tokenizer, lines = general_model
    config = ForgettingConfig(max_length=64, batch_size=4, max_relative_increase=0.0)
    # LoRA B matrices start at zero, so the fresh adapter leaves the model unchanged.
    result = measure_forgetting(model, tokenizer, lines[:8], config)
    assert result["relative_increase"] == pytest.approx(0.0, abs=1e-6)
    check_forgetting(result, config.max_relative_increase + 1e-6)


def test_forgetting_gate_fails_damaging_adapter(general_model):
    model, tokenizer, lines = general_model
    config = ForgettingConfig(max_length=64, batch_size=4, max_relative_increase=0.1)
    saved = {name: param.detach().clone() for name, param in model.named_parameters() if "lora_" in name}
    generator = torch.Generator().manual_seed(0)
    # Large random A and B matrices add noise to every projection, so predictions stop being near-uniform.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in saved:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    try:
        result = measure_forgetting(model, tokenizer, lines[:8], config)
    finally:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in saved:
                    param.copy_(saved[name])
    assert result["adapter_perplexity"] > result["base_perplexity"] * 1.1
    with pytest.raises(GateError, match=r"(?s)gate `forgetting` failed.*above the allowed 10.0%"):
        check_forgetting(result, config.max_relative_increase)


def test_measure_forgetting_needs_peft_model(general_model):
    model, tokenizer, lines = general_model
    with pytest.raises(TypeError, match="needs a PEFT model"):
        measure_forgetting(model.get_base_model(), tokenizer, lines[:2], ForgettingConfig())
