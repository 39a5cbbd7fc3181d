"""Tests of stages.core.local_lm: resolving, loading and sampling a local causal LM."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import build_tiny_causal_lm

from stages.core.errors import InputDataError, ParamsError
from stages.core.local_lm import (
    PACKAGED_SMOLLM2,
    SOURCE_FILE,
    Sampling,
    format_prompt,
    generate,
    load_lm,
    parse_lm_config,
    resolve_lm_path,
)

torch.set_num_threads(1)

PROMPTS = [
    [{"role": "user", "content": "my card is lost"}],
    [{"role": "user", "content": "top up my account please"}],
    [{"role": "user", "content": "why was i charged twice"}],
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    folder = build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny")
    return load_lm(folder, device="cpu")


def test_lm_config_defaults_to_packaged_model():
    config = parse_lm_config({})
    assert config.name == PACKAGED_SMOLLM2
    assert config.trust_remote_code is False


def test_lm_config_rejects_unknown_packaged_name():
    with pytest.raises(ParamsError, match=r"`lm.name` is invalid \(unknown packaged model"):
        parse_lm_config({"lm": {"name": "packaged:nope"}})


def test_resolve_packaged_name_without_folder_raises():
    with pytest.raises(ParamsError, match="prepare_model output folder"):
        resolve_lm_path(PACKAGED_SMOLLM2, None)


def test_resolve_passes_hub_id_through():
    assert resolve_lm_path("org/some-model", None) == "org/some-model"


def test_resolve_missing_folder_names_stage(tmp_path):
    with pytest.raises(InputDataError, match=r"prepared model folder not found.*dvc repro prepare_model"):
        resolve_lm_path(PACKAGED_SMOLLM2, tmp_path / "absent")


def test_resolve_rejects_folder_prepared_from_other_name(tmp_path):
    (tmp_path / SOURCE_FILE).write_text(json.dumps({"name": "org/other"}), encoding="utf-8")
    with pytest.raises(InputDataError, match=r"prepared from 'org/other' but params `lm\.name`"):
        resolve_lm_path(PACKAGED_SMOLLM2, tmp_path)


def test_resolve_returns_matching_folder(tmp_path):
    (tmp_path / SOURCE_FILE).write_text(json.dumps({"name": PACKAGED_SMOLLM2}), encoding="utf-8")
    assert resolve_lm_path(PACKAGED_SMOLLM2, tmp_path) == tmp_path


def test_load_pads_on_left(tiny_lm):
    assert tiny_lm.tokenizer.padding_side == "left"
    assert tiny_lm.tokenizer.pad_token is not None
    assert tiny_lm.uses_chat_template


def test_load_invalid_folder_raises_clear_error(tmp_path):
    with pytest.raises(InputDataError, match="cannot load a causal language model"):
        load_lm(tmp_path, device="cpu")


def test_generate_returns_one_text_per_prompt(tiny_lm):
    result = generate(tiny_lm, PROMPTS, Sampling(max_new_tokens=6), seed=1, batch_size=2, progress=False)
    assert len(result.texts) == len(PROMPTS)
    assert all(isinstance(text, str) for text in result.texts)
    assert 0 < result.new_tokens <= 6 * len(PROMPTS)
    assert result.prompt_tokens > 0
    assert result.stats()["tokens_per_second"] > 0


def test_generate_same_seed_same_texts(tiny_lm):
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=8)
    first = generate(tiny_lm, PROMPTS, sampling, seed=7, batch_size=2, progress=False)
    second = generate(tiny_lm, PROMPTS, sampling, seed=7, batch_size=2, progress=False)
    assert first.texts == second.texts


def test_generate_other_seed_other_texts(tiny_lm):
    sampling = Sampling(temperature=1.5, top_p=1.0, max_new_tokens=12)
    first = generate(tiny_lm, PROMPTS, sampling, seed=7, progress=False)
    second = generate(tiny_lm, PROMPTS, sampling, seed=8, progress=False)
    assert first.texts != second.texts


def test_generate_greedy_ignores_seed(tiny_lm):
    sampling = Sampling(temperature=0.0, max_new_tokens=8)
    first = generate(tiny_lm, PROMPTS, sampling, seed=1, progress=False)
    second = generate(tiny_lm, PROMPTS, sampling, seed=2, progress=False)
    assert first.texts == second.texts


def test_generate_accepts_plain_strings(tiny_lm):
    result = generate(tiny_lm, ["my card", "top up"], Sampling(max_new_tokens=4), seed=1, progress=False)
    assert len(result.texts) == 2


def test_generate_rejects_mixed_prompt_kinds(tiny_lm):
    with pytest.raises(ValueError, match="all strings or all message lists"):
        generate(tiny_lm, ["my card", PROMPTS[0]], Sampling(), seed=1, progress=False)


def test_sampling_rejects_invalid_top_p():
    with pytest.raises(ValueError, match="top_p must be in"):
        Sampling(top_p=0.0)


def test_prefilled_assistant_message_continued(tiny_lm):
    text = format_prompt(
        tiny_lm, [{"role": "user", "content": "list"}, {"role": "assistant", "content": "1."}]
    )
    assert text.endswith("assistant 1.")
    assert text.count("assistant") == 1
