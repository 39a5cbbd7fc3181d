"""Typed config of the `split` params section; every model rejects unknown keys."""

from __future__ import annotations

import math
from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from stages.core.params import StageConfig


class Ratios(StageConfig):
    """Shares of the rows that go to train, validation and test; they must sum to 1."""

    train: float = Field(gt=0, le=1)
    validation: float = Field(ge=0, lt=1)
    test: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Ratios:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"train + validation + test must sum to 1, but {self.train:g} + {self.validation:g} + "
                f"{self.test:g} = {total:g}"
            )
        return self

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.train, self.validation, self.test)


class TemporalConfig(StageConfig):
    """Settings of the `temporal` strategy."""

    ratios: Ratios = Ratios(train=0.7, validation=0.15, test=0.15)
    # Explicit cuts (ISO 8601): train < validation_start <= validation < test_start <= test.
    validation_start: str | None = None
    test_start: str | None = None
    # Format given to pandas.to_datetime: "ISO8601", "mixed" (guess each value) or a strftime pattern.
    timestamp_format: str = Field(default="ISO8601", min_length=1)
    # Rows of a group that are older than the start of the split the group goes to.
    spanning_groups: Literal["quarantine", "later_split"] = "quarantine"

    @field_validator("validation_start", "test_start")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cut(value)
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> TemporalConfig:
        if (self.validation_start is None) != (self.test_start is None):
            raise ValueError("set both validation_start and test_start, or neither to cut by ratios")
        if self.validation_start is not None and parse_cut(self.validation_start) > parse_cut(
            self.test_start
        ):
            raise ValueError("validation_start must not be later than test_start")
        return self

    def cuts(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        if self.validation_start is None or self.test_start is None:
            return None
        return parse_cut(self.validation_start), parse_cut(self.test_start)


def parse_cut(value: str) -> pd.Timestamp:
    """Parse an ISO 8601 date or time as UTC; a time without an offset is taken as UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an ISO 8601 date or time") from exc
    if pd.isna(stamp):
        raise ValueError(f"{value!r} is not an ISO 8601 date or time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class KfoldConfig(StageConfig):
    """Settings of the `kfold` strategy."""

    folds: int = Field(default=5, ge=2, le=100)
    validation_fold: int = Field(default=0, ge=0)
    test: Literal["auto", "predefined", "holdout", "none"] = "auto"
    test_size: float = Field(default=0.1, gt=0, lt=1)
    train_adapter_per_fold: bool = False

    @model_validator(mode="after")
    def _fold_in_range(self) -> KfoldConfig:
        if self.validation_fold >= self.folds:
            raise ValueError(
                f"validation_fold must be below folds ({self.folds}), got {self.validation_fold}"
            )
        return self


class SimilarityConfig(StageConfig):
    """Near-duplicate definition shared by `group_by: near_duplicates` and the leakage check."""

    shingle: Literal["char", "word"] = "char"
    shingle_size: int = Field(default=5, ge=1, le=20)
    threshold: float = Field(default=0.9, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)


def _check_limit(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a whole number of rows or a rate between 0 and 1")
    if isinstance(value, int) and value < 0:
        raise ValueError("a count of rows must not be negative")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError("a rate must be between 0 and 1; write a whole number for a count of rows")
    return value


class LeakageConfig(StageConfig):
    """Limits of the leakage gate: an int is a count of rows, a float in [0, 1] a share of rows."""

    max_exact: int | float = 0
    max_near: int | float = 0.005
    max_group: int | float = 0
    max_time_order: int | float = 0
    examples: int = Field(default=5, ge=0, le=100)

    @field_validator("max_exact", "max_near", "max_group", "max_time_order", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Any:
        return _check_limit(value)


class StabilityConfig(StageConfig):
    """Settings of the baseline stability measurement."""

    enabled: bool = True
    seeds: int = Field(default=5, ge=2, le=100)
    bootstrap: int = Field(default=200, ge=0, le=10000)
    # Processes for the re-split and fold fits, as joblib counts them: -1 uses every core.
    n_jobs: int = Field(default=-1, ge=-1)

    @field_validator("n_jobs")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (every core) or a positive number of processes")
        return value


class SplitConfig(StageConfig):
    """The whole `split` section."""

    strategy: Literal["predefined", "holdout", "stratified", "temporal", "kfold"] = "predefined"
    ratios: Ratios = Ratios(train=0.8, validation=0.1, test=0.1)
    validation_size: float = Field(default=0.1, gt=0, lt=1)
    rare_class_policy: Literal["train_only", "quarantine", "error"] = "train_only"
    group_by: Literal["column", "near_duplicates", "none"] = "near_duplicates"
    group_column: str = Field(default="group", min_length=1)
    temporal: TemporalConfig = TemporalConfig()
    kfold: KfoldConfig = KfoldConfig()
    near_duplicates: SimilarityConfig = SimilarityConfig()
    leakage: LeakageConfig = LeakageConfig()
    stability: StabilityConfig = StabilityConfig()
