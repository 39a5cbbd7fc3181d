"""Params sections of the generation track: prompt, decoding, baselines, LoRA training and evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stages.core.params import StageConfig

INPUT_PLACEHOLDER = "{input}"

# The attention and MLP projections of Llama-style decoders (SmolLM2, Llama, Mistral, Qwen2).
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class PromptConfig(StageConfig):
    """The `prompt` section: how an input becomes the model's prompt, for training and generation alike."""

    # chat: the tokenizer's chat template with `system` and `instruction` as turns (instruct models).
    # plain: `plain_template` as raw text, for base models without a chat template.
    style: Literal["chat", "plain"] = "chat"
    # System turn of the chat style; null leaves the chat template's default.
    system: str | None = None
    instruction: str = "Write one or two sentences describing this restaurant: " + INPUT_PLACEHOLDER
    plain_template: str = "Restaurant attributes: " + INPUT_PLACEHOLDER + "\nDescription:"
    # Text between the plain prompt and the target in training examples (plain style only).
    target_prefix: str = " "

    @field_validator("instruction", "plain_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if INPUT_PLACEHOLDER not in value:
            raise ValueError(f"must contain the placeholder {INPUT_PLACEHOLDER}, where the row's input goes")
        return value


class DecodingConfig(StageConfig):
    """The `generation` section: test inputs and decoding settings shared by baselines_lm and evaluate_lm."""

    # Distinct test inputs (meaning representations) scored, a seeded sample; null scores them all.
    test_inputs: int | None = Field(default=50, gt=0)
    max_new_tokens: int = Field(default=64, ge=1)
    batch_size: int = Field(default=8, ge=1)
    # 0 is greedy decoding: the same texts on every run with the same hardware and library versions.
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    # Test inputs generated one at a time to time single-request latency; 0 skips it.
    latency_inputs: int = Field(default=4, ge=0)
    device: str = "auto"
    # CPU threads for torch; 0 keeps torch's default (one per core). Fewer threads than cores can be
    # faster when other processes share the CPU.
    threads: int = Field(default=0, ge=0)


class BaselinesConfig(StageConfig):
    """The `baselines_lm` section: the baselines of the generation pipeline."""

    # The untuned model prompted with the instruction alone.
    zero_shot: bool = True
    # Number of train examples (of distinct inputs) shown before the test input; 0 skips few-shot.
    few_shot_examples: int = Field(default=3, ge=0)
    # The rule-based realiser that fills meaning-representation slots into fixed sentences.
    template: bool = True
    # Prompt of the zero-shot and few-shot systems (same keys as `prompt`); null uses `prompt`.
    # An untuned model needs the task spelled out, while the adapter learns it from its data and
    # can train on a shorter prompt.
    prompt: PromptConfig | None = None


class LoraParams(StageConfig):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), min_length=1)


class TrainConfig(StageConfig):
    """The `train_lm` section: LoRA training of the generation pipeline."""

    lora: LoraParams = LoraParams()
    learning_rate: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=10, ge=0)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=8, ge=1)
    # Prompt plus target, in tokens; longer examples lose the end of their target.
    max_length: int = Field(default=192, ge=8)
    # Seeded samples of the train and validation splits; null uses the whole split.
    max_train_rows: int | None = Field(default=400, gt=0)
    # Minimum input_coverage (written by `curate.coverage`) of the train and validation rows, applied
    # before the samples above. null uses every row.
    min_input_coverage: float | None = Field(default=None, ge=0.0, le=1.0)
    max_validation_rows: int | None = Field(default=64, gt=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # Batches of examples of similar length (less padding) instead of a plain shuffle.
    group_by_length: bool = True
    # Autocast: "auto" (on CUDA bf16 where supported, else fp16; float32 on CPU), "bf16", "fp16" or "no".
    # On CPU only "bf16" autocasts, which pays off on CPUs with native bf16 instructions.
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"
    device: str = "auto"
    # CPU threads for torch; 0 keeps torch's default (one per core).
    threads: int = Field(default=0, ge=0)


class ForgettingConfig(StageConfig):
    """Perplexity on general-domain text before and after the adapter, and its gate."""

    # Seeded sample of eligible lines, cut off once `max_tokens` tokens are collected.
    max_lines: int = Field(default=64, ge=1)
    max_tokens: int = Field(default=8000, ge=1)
    # Each line is scored on its first `max_length` tokens.
    max_length: int = Field(default=256, ge=2)
    batch_size: int = Field(default=8, ge=1)
    # The gate: (adapter perplexity / base perplexity - 1) above this fails the evaluate stage.
    max_relative_increase: float = Field(default=0.15, ge=0.0)


class EvaluateConfig(StageConfig):
    """The `evaluate_lm` section: scoring and the forgetting gate of the generation pipeline."""

    forgetting: ForgettingConfig = ForgettingConfig()
    # MLflow experiment name; MLFLOW_TRACKING_URI picks the server (default: mlflow.db in the repository).
    experiment: str = Field(default="e2e-nlg", min_length=1)
    log_to_mlflow: bool = True
    # Data inputs whose DVC hashes tag the MLflow run, and the DVC lock file that records them.
    data_inputs: list[str] = ["data/e2e/raw/rows.parquet", "data/e2e/curated/rows.parquet", "data/e2e/split"]
    dvc_lock: str = "pipelines/e2e/dvc.lock"
