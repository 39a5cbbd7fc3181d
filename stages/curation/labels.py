"""Label rules: case folding, aliases, missing labels and labels outside the allowed set."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import model_validator

from stages.core.params import StageConfig

MISSING_LABEL = "missing_label"
LABEL_NOT_ALLOWED = "label_not_allowed"


class LabelConfig(StageConfig):
    """Label normalisation settings and the set of allowed labels (classification only)."""

    casefold: bool = True
    aliases: dict[str, str] = {}
    allowed: list[str] = []
    unknown: Literal["quarantine", "error"] = "quarantine"

    @model_validator(mode="after")
    def _consistent(self) -> LabelConfig:
        aliases = self.folded_aliases()
        chained = sorted(set(aliases.values()) & set(aliases))
        if chained:
            raise ValueError(
                f"aliases: {chained[0]!r} is both an alias and an alias target; "
                "map every alias straight to its final label"
            )
        allowed = set(self.folded_allowed())
        if allowed:
            outside = sorted(set(aliases.values()) - allowed)
            if outside:
                raise ValueError(
                    f"aliases: target {outside[0]!r} is not in `allowed`; add it there or fix the alias"
                )
        return self

    def fold(self, label: str) -> str:
        label = label.strip()
        return label.casefold() if self.casefold else label

    def folded_aliases(self) -> dict[str, str]:
        return {self.fold(alias): self.fold(target) for alias, target in self.aliases.items()}

    def folded_allowed(self) -> list[str]:
        return sorted({self.fold(label) for label in self.allowed})


def normalise_labels(labels: pd.Series, config: LabelConfig) -> tuple[pd.Series, int]:
    """Trim, case-fold (when enabled) and map aliases; returns the labels and how many changed.

    Missing and whitespace-only labels become <NA>.
    """
    original = labels.astype("string")
    normalised = original.str.strip()
    if config.casefold:
        normalised = normalised.str.casefold()
    aliases = config.folded_aliases()
    if aliases:
        normalised = normalised.replace(aliases)
    normalised = normalised.mask(normalised == "", pd.NA).astype("string")
    changed = int((original.fillna("\x00") != normalised.fillna("\x00")).sum())
    return normalised, changed


def label_reasons(labels: pd.Series, config: LabelConfig) -> pd.Series:
    """Return `missing_label` or `label_not_allowed` per row that breaks a label rule, else <NA>."""
    reasons = pd.Series(pd.NA, index=labels.index, dtype="string")
    allowed = config.folded_allowed()
    if allowed:
        reasons[labels.notna() & ~labels.isin(allowed)] = LABEL_NOT_ALLOWED
    reasons[labels.isna()] = MISSING_LABEL
    return reasons
