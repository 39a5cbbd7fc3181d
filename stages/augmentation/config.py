"""Typed config of the `augment` and `augment_effect` params sections; unknown keys are rejected."""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stages.baselines import TfidfConfig
from stages.core.params import StageConfig

# Placeholders a few-shot template may use; {examples} and {n} are required.
TEMPLATE_FIELDS = {"label", "examples", "n"}

DEFAULT_TEMPLATE = (
    'Here are customer messages to a bank, all with the intent "{label}":\n'
    "{examples}\n"
    'Write {n} new customer messages with the same intent "{label}". Vary the wording and the details. '
    "Answer with a numbered list, one message per line, and nothing else."
)
DEFAULT_SYSTEM_PROMPT = (
    "You write short, realistic messages that customers send to their bank's support chat."
)


class FewShotConfig(StageConfig):
    """In-context example generation with the local instruction model (params `lm`)."""

    enabled: bool = True
    # Real train rows shown in each prompt (fewer when the class has fewer rows).
    k: int = Field(default=5, ge=1, le=50)
    prompts_per_class: int = Field(default=2, ge=1)
    # New examples each prompt requests, the {n} of the template.
    examples_per_prompt: int = Field(default=4, ge=1, le=50)
    template: str = DEFAULT_TEMPLATE
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # Start of the model's reply, written for it ("1." makes small models go straight into the
    # numbered list). Empty leaves the whole reply to the model.
    assistant_prefix: str = "1."
    # How a label is written into the prompt: "humanize" turns card_arrival into "card arrival".
    label_display: Literal["humanize", "raw"] = "humanize"
    temperature: float = Field(default=0.7, ge=0, le=5)
    top_p: float = Field(default=0.9, gt=0, le=1)
    max_new_tokens: int = Field(default=120, ge=8, le=4096)
    repetition_penalty: float = Field(default=1.1, gt=0)
    batch_size: int = Field(default=8, ge=1)
    device: str = "auto"
    # CPU threads for torch during generation; 0 keeps torch's default (one per core).
    threads: int = Field(default=0, ge=0)

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid format string ({exc})") from exc
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"uses unknown placeholders {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}"
            )
        missing = {"examples", "n"} - fields
        if missing:
            raise ValueError(f"must contain the placeholders {sorted(missing)}")
        return value


class BackTranslationConfig(StageConfig):
    """Round trip through a pivot language with two Hugging Face translation models."""

    enabled: bool = True
    # source language -> pivot, and pivot -> source.
    forward_model: str = Field(default="Helsinki-NLP/opus-mt-en-de", min_length=1)
    backward_model: str = Field(default="Helsinki-NLP/opus-mt-de-en", min_length=1)
    # true: load only from local folders or the Hugging Face cache, never from the network.
    local_files_only: bool = True
    # What happens when a model cannot be loaded: skip the method (logged, recorded in the
    # metrics) or stop the stage with an error naming the param and the model.
    on_unavailable: Literal["skip", "fail"] = "skip"
    rows_per_class: int = Field(default=8, ge=1)
    # 0 means greedy (beam) decoding; above 0, sampling at that temperature for more varied text.
    temperature: float = Field(default=0.0, ge=0, le=5)
    num_beams: int = Field(default=1, ge=1, le=16)
    max_new_tokens: int = Field(default=96, ge=8, le=1024)
    batch_size: int = Field(default=16, ge=1)
    trust_remote_code: bool = False
    device: str = "auto"


class EditsConfig(StageConfig):
    """Cheap word-level edits of real rows: random deletion and random swap."""

    enabled: bool = True
    rows_per_class: int = Field(default=8, ge=1)
    # Each word is deleted with this probability (one word always survives).
    deletion_rate: float = Field(default=0.1, ge=0, lt=1)
    # Number of adjacent-or-not word swaps = round(swap_rate * word count), at least one when > 0.
    swap_rate: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _some_edit(self) -> EditsConfig:
        if self.enabled and self.deletion_rate == 0 and self.swap_rate == 0:
            raise ValueError("deletion_rate and swap_rate are both 0, so edits would copy rows unchanged")
        return self


class NearDuplicateConfig(StageConfig):
    """Near-duplicate definition: Jaccard similarity of shingle sets, found with MinHash LSH."""

    shingle: Literal["char", "word"] = "char"
    shingle_size: int = Field(default=5, ge=1, le=20)
    # A new row this close to any validation or test row is rejected (leakage).
    threshold: float = Field(default=0.8, gt=0, le=1)
    # A new row this close to a train row or an earlier new row is rejected (adds nothing).
    train_threshold: float = Field(default=0.95, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)


class LabelCheckConfig(StageConfig):
    """A classifier trained on the real train rows must give the intended label this probability."""

    enabled: bool = True
    min_probability: float = Field(default=0.3, ge=0, le=1)
    # The same settings as the TF-IDF baseline (params `baselines.tfidf`), set separately here.
    tfidf: TfidfConfig = TfidfConfig()


class FiltersConfig(StageConfig):
    min_chars: int = Field(default=8, ge=1)
    max_chars: int = Field(default=300, ge=1)
    min_words: int = Field(default=2, ge=1)
    near_duplicate: NearDuplicateConfig = NearDuplicateConfig()
    label_check: LabelCheckConfig = LabelCheckConfig()
    # Upper bound of synthetic rows / all rows of a class after augmentation.
    max_synthetic_share: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _bounds(self) -> FiltersConfig:
        if self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class AugmentConfig(StageConfig):
    """The `augment` params section."""

    enabled: bool = True
    # Which classes get new rows: those with fewer train rows than `class_floor`, or all classes.
    target_classes: Literal["below_floor", "all"] = "below_floor"
    class_floor: int = Field(default=60, ge=1)
    # At most this many target classes (the smallest first; ties by label); null means no limit.
    max_classes: int | None = Field(default=5, ge=1)
    fewshot: FewShotConfig = FewShotConfig()
    backtranslation: BackTranslationConfig = BackTranslationConfig()
    edits: EditsConfig = EditsConfig()
    filters: FiltersConfig = FiltersConfig()


class EffectConfig(StageConfig):
    """The `augment_effect` params section: low-resource comparison with and without augmentation."""

    enabled: bool = True
    # Real train rows kept per class (classes with fewer keep all of theirs).
    shots_per_class: int = Field(default=10, ge=1)
    # Independent subsets (seed, seed + 1, ...); scores are averaged over them.
    repeats: int = Field(default=1, ge=1, le=20)
    # Classifier trained on both tables: "tfidf" (params baselines.tfidf) or "lora" (params train, model).
    model: Literal["tfidf", "lora"] = "tfidf"
    # Changes to the `augment` params for the low-resource run, merged key by key over them.
    augment: dict[str, Any] = {}
