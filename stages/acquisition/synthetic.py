"""Reader that generates labelled rows from templates: every row is marked synthetic.

`templates` maps each label to templates with `{slot}` placeholders; `slots` lists the values of
each slot. Labels take turns (row 1 gets the first label, row 2 the second, ...), so the labels
are balanced. A generator seeded by the params `seed` and the source name draws the template and
the slot values, so the same params always give the same rows.

With `generator: local_model`, each filled template is a prompt instead, and a local causal
language model (`stages.core.local_lm`) writes the row's text. The acquire stage in dvc.yaml does
not depend on the model folder: a pipeline that uses this generator adds the folder (for example
models/base_lm, written by the prepare_model stage) to the acquire stage's `deps`.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.acquisition.base import (
    ColumnMap,
    ReadContext,
    SourceBatch,
    SourceConfig,
    register,
    rejected_frame,
)
from stages.core.errors import InputDataError
from stages.core.params import StageConfig
from stages.core.schema import sha256_hex

logger = logging.getLogger(__name__)


class TemplatePair(StageConfig):
    """Templates of a row's input text and its reference target, filled with the same slot values."""

    text: str = Field(min_length=1)
    target: str = Field(min_length=1)


class LocalModelSettings(StageConfig):
    """The local causal language model that writes each row from its filled prompt."""

    # Folder with safetensors weights and a tokenizer, such as the prepare_model output models/base_lm.
    path: str = Field(min_length=1)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=48, gt=0)
    batch_size: int = Field(default=8, gt=0)
    device: str = "auto"


class SyntheticSourceConfig(SourceConfig):
    type: Literal["synthetic"] = "synthetic"
    columns: ColumnMap = ColumnMap(text="text", label="label")
    # "template" fills the templates; "local_model" sends the filled templates to a local model.
    generator: Literal["template", "local_model"] = "template"
    rows: int = Field(gt=0)
    # label -> templates. A template is a string, or {text, target} for generation tasks.
    templates: dict[str, list[str | TemplatePair]] = Field(min_length=1)
    # slot -> values.
    slots: dict[str, list[str]] = Field(default_factory=dict)
    local_model: LocalModelSettings | None = None

    @model_validator(mode="after")
    def _templates_and_generator(self) -> SyntheticSourceConfig:
        for label, templates in self.templates.items():
            if not templates:
                raise ValueError(f"label {label!r} has no templates")
            for template in templates:
                for text in template_texts(template):
                    for slot in template_slots(text):
                        if slot not in self.slots:
                            raise ValueError(
                                f"template {text!r} of label {label!r} uses slot `{slot}`, "
                                "which `slots` does not define"
                            )
        for slot, values in self.slots.items():
            if not values:
                raise ValueError(f"slot `{slot}` has no values")
        if self.generator == "local_model":
            if self.local_model is None:
                raise ValueError("`generator: local_model` needs a `local_model` block with at least `path`")
            if any(
                isinstance(template, TemplatePair)
                for templates in self.templates.values()
                for template in templates
            ):
                raise ValueError(
                    "`generator: local_model` takes prompt strings, not {text, target} templates"
                )
        elif self.local_model is not None:
            raise ValueError("`local_model` only applies with `generator: local_model`")
        return self


def template_texts(template: str | TemplatePair) -> list[str]:
    return [template] if isinstance(template, str) else [template.text, template.target]


def template_slots(text: str) -> list[str]:
    """Return the slot names of a template in order of first use; raise ValueError on other format syntax."""
    slots: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(
            f"template {text!r} is invalid ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise ValueError(
                f"template {text!r} has the placeholder {{{field_name}}}; "
                "placeholders are plain names like {product}"
            )
        if field_name not in slots:
            slots.append(field_name)
    return slots


def template_query(template: str | TemplatePair) -> str:
    """Return the template as recorded in `source_query`."""
    if isinstance(template, str):
        return template
    return json.dumps({"text": template.text, "target": template.target}, ensure_ascii=False, sort_keys=True)


def fill_templates(config: SyntheticSourceConfig, seed: int) -> pd.DataFrame:
    """Return `rows` filled templates: label, text, target (when a template has one) and source_query."""
    generator = np.random.default_rng([seed, int(sha256_hex("synthetic", config.name)[:8], 16)])
    labels = list(config.templates)
    has_target = any(
        isinstance(template, TemplatePair)
        for templates in config.templates.values()
        for template in templates
    )
    records: dict[str, list[Any]] = {"label": [], "text": [], "source_query": []}
    if has_target:
        records["target"] = []
    for row in range(config.rows):
        label = labels[row % len(labels)]
        templates = config.templates[label]
        template = templates[int(generator.integers(len(templates)))]
        slots = dict.fromkeys(slot for text in template_texts(template) for slot in template_slots(text))
        values = {
            slot: config.slots[slot][int(generator.integers(len(config.slots[slot])))] for slot in slots
        }
        if isinstance(template, str):
            text, target = template.format_map(values), None
        else:
            text, target = template.text.format_map(values), template.target.format_map(values)
        records["label"].append(label)
        records["text"].append(text)
        records["source_query"].append(template_query(template))
        if has_target:
            records["target"].append(target)
    frame = pd.DataFrame({name: pd.Series(values, dtype="string") for name, values in records.items()})
    frame["source_row"] = pd.Series(range(1, config.rows + 1), dtype="int64")
    return frame


def write_with_local_model(
    config: SyntheticSourceConfig, prompts: pd.DataFrame, seed: int, key: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Generate each row's text from its filled prompt; return (records, rejected, generation stats).

    A row whose generated text is empty after stripping is rejected with reason `empty_generation`.
    """
    settings = config.local_model
    assert settings is not None
    if not Path(settings.path).is_dir():
        raise InputDataError(
            settings.path,
            "model folder not found",
            "Run `dvc repro prepare_model` to write models/base_lm, "
            f"or set `{key}.local_model.path` to a local model folder.",
        )
    # Imported here because torch and transformers take seconds to import and only this generator needs them.
    from stages.core.local_lm import Sampling, generate, load_lm

    lm = load_lm(settings.path, device=settings.device)
    sampling = Sampling(
        temperature=settings.temperature, top_p=settings.top_p, max_new_tokens=settings.max_new_tokens
    )
    messages = [[{"role": "user", "content": prompt}] for prompt in prompts["text"]]
    result = generate(
        lm, messages, sampling, seed=seed, batch_size=settings.batch_size, description=f"{config.name} rows"
    )

    records = prompts.copy()
    records["prompt"] = prompts["text"]
    records["text"] = pd.Series(result.texts, index=prompts.index, dtype="string")
    records["source_query"] = prompts["text"]
    empty = records["text"].str.len() == 0
    rejected = rejected_frame(
        [
            (
                int(row),
                str(prompt),
                "empty_generation",
                f"row {int(row)}: the model returned no text for the prompt",
            )
            for row, prompt in zip(
                records.loc[empty, "source_row"], records.loc[empty, "prompt"], strict=True
            )
        ]
    )
    stats = {**result.stats(), "model": lm.name}
    return records[~empty].reset_index(drop=True), rejected, stats


@register("synthetic", SyntheticSourceConfig)
def read_synthetic(
    config: SyntheticSourceConfig, index: int, context: ReadContext | None = None
) -> SourceBatch:
    """Generate the source's rows, each marked synthetic, with its template (or prompt) as `source_query`."""
    key = f"acquire.sources[{index}]"
    seed = context.seed if context is not None else 0
    records = fill_templates(config, seed)
    location = f"synthetic:{config.name}"
    extra: dict[str, Any] = {"generator": config.generator}
    rejected = None
    if config.generator == "local_model":
        records, rejected, stats = write_with_local_model(config, records, seed, key)
        assert config.local_model is not None
        location = f"synthetic:{config.name} model={config.local_model.path}"
        extra["generation"] = stats
    extra["distinct_texts"] = int(records["text"].nunique())
    logger.info(
        "source %s: generated %d rows (%d distinct texts)", config.name, len(records), extra["distinct_texts"]
    )
    batch = SourceBatch(records=records, location=location, synthetic=True, extra=extra)
    if rejected is not None:
        batch.rejected = rejected
    return batch
