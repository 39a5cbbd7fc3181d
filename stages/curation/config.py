"""The `curate` params section and the task type, parsed and checked."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stages.core.errors import ParamsError
from stages.core.params import StageConfig
from stages.core.schema import SPLIT_NAMES
from stages.curation.coverage import CoverageConfig
from stages.curation.duplicates import ConflictPolicy
from stages.curation.label_issues import LabelIssueConfig
from stages.curation.labels import LabelConfig
from stages.curation.language import LanguageConfig
from stages.curation.near_duplicates import NearDuplicateConfig
from stages.curation.pii import PiiConfig
from stages.curation.text_repair import RepairConfig, UnicodeForm

TaskType = Literal["classification", "generation"]
TASK_TYPES = ("classification", "generation")


class ImbalanceConfig(StageConfig):
    """Class imbalance report settings."""

    min_rows_per_class: int = Field(default=10, ge=1)


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
        unknown = sorted(set(splits) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a split name; use {', '.join(SPLIT_NAMES)}")
        return sorted(set(splits))

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
