"""The `curate` params section and the task type, parsed and checked."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stages.core.errors import ParamsError
from stages.core.params import StageConfig
from stages.core.schema import SPLIT_NAMES
from stages.curation.duplicates import ConflictPolicy
from stages.curation.label_issues import LabelIssueConfig
from stages.curation.labels import LabelConfig
from stages.curation.language import LanguageConfig
from stages.curation.near_duplicates import NearDuplicateConfig
from stages.curation.pii import PiiConfig
from stages.curation.text_repair import RepairConfig, UnicodeForm

TaskType = Literal["classification", "generation"]
TASK_TYPES = ("classification", "generation")

# Values inside square brackets: name[The Mill], food[English], customer rating[5 out of 5].
DEFAULT_VALUE_PATTERN = r"\[([^\]]*)\]"


def check_split_names(splits: list[str]) -> list[str]:
    """Return the split names sorted, without repeats. Raise ValueError naming an unknown one."""
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a split name; use {', '.join(SPLIT_NAMES)}")
    return sorted(set(splits))


class ImbalanceConfig(StageConfig):
    """Class imbalance report settings."""

    min_rows_per_class: int = Field(default=10, ge=1)


class CoverageConfig(StageConfig):
    """Settings of the input coverage rule: the values to find, the bar and the splits it may quarantine."""

    enabled: bool = False
    # A regular expression that finds the values in an input. With a capturing group the first
    # group is the value, without one the whole match is.
    value_pattern: str = DEFAULT_VALUE_PATTERN
    # Values that are not expected to appear word for word, such as yes/no of a boolean attribute.
    ignore_values: list[str] = []
    # Quarantine rows of `splits` whose coverage is below `min_coverage` (target_misses_input).
    # With false the coverage is only recorded.
    quarantine: bool = False
    # Share of an input's values (after ignore_values) that its target must mention.
    min_coverage: float = Field(default=1.0, gt=0.0, le=1.0)
    # Splits whose rows may be quarantined. null means every row, those without a split included.
    splits: list[str] | None = ["train", "validation"]

    @field_validator("value_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        if not pattern:
            raise ValueError("must not be empty")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression ({exc})") from None
        return pattern

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, splits: list[str] | None) -> list[str] | None:
        return None if splits is None else check_split_names(splits)


class CurateConfig(StageConfig):
    """The whole `curate` section; see params.yaml for what each key does."""

    unicode_form: UnicodeForm = "NFKC"
    min_chars: int = Field(default=3, ge=1)
    max_chars: int = Field(default=1000, ge=1)
    conflicting_labels: ConflictPolicy = "quarantine_all"
    protected_splits: list[str] = ["test"]
    repair: RepairConfig = RepairConfig()
    pii: PiiConfig = PiiConfig()
    language: LanguageConfig = LanguageConfig()
    labels: LabelConfig = LabelConfig()
    coverage: CoverageConfig = CoverageConfig()
    near_duplicates: NearDuplicateConfig = NearDuplicateConfig()
    label_issues: LabelIssueConfig = LabelIssueConfig()
    imbalance: ImbalanceConfig = ImbalanceConfig()

    @field_validator("protected_splits")
    @classmethod
    def _known_splits(cls, splits: list[str]) -> list[str]:
        return check_split_names(splits)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> CurateConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        return self


def parse_task_type(params: dict[str, Any]) -> TaskType:
    """Return `task.type` from the whole params mapping, checked to be a supported task."""
    task = params.get("task") or {}
    if not isinstance(task, dict):
        raise ParamsError("task", task, "must be a mapping with a `type` key")
    value = task.get("type", "classification")
    if value not in TASK_TYPES:
        raise ParamsError("task.type", value, f"must be one of {', '.join(TASK_TYPES)}")
    return value
