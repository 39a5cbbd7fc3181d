"""Language filter: quarantine rows written in a language outside `keep`, detected offline by lingua."""

from __future__ import annotations

from functools import cache

import pandas as pd
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder
from pydantic import Field, field_validator, model_validator

from stages.core.params import StageConfig

LANGUAGE_NOT_ALLOWED = "language_not_allowed"

# A moderate candidate set keeps detection fast (lingua's cost grows with the number of
# languages) and avoids rare languages winning on short English texts.
DEFAULT_CANDIDATES = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "tr", "ru", "zh", "ja", "ar"]


class LanguageConfig(StageConfig):
    """Kept languages, detector candidates, and the length and confidence a removal needs."""

    keep: list[str] = ["en"]
    detect_among: list[str] = Field(default_factory=lambda: sorted(DEFAULT_CANDIDATES))
    min_chars: int = Field(default=20, ge=1)
    min_confidence: float = Field(default=0.9, gt=0.0, le=1.0)

    @field_validator("keep", "detect_among")
    @classmethod
    def _iso_codes(cls, codes: list[str]) -> list[str]:
        normalised = []
        for code in codes:
            code = str(code).strip().lower()
            if not hasattr(IsoCode639_1, code.upper()):
                raise ValueError(
                    f"{code!r} is not an ISO 639-1 code that lingua knows (for example en, de, fr)"
                )
            normalised.append(code)
        return sorted(set(normalised))

    @model_validator(mode="after")
    def _candidates_cover_keep(self) -> LanguageConfig:
        if self.keep and self.detect_among:
            missing = sorted(set(self.keep) - set(self.detect_among))
            if missing:
                raise ValueError(
                    f"detect_among must include every language in keep; add {', '.join(missing)}"
                )
            if not set(self.detect_among) - set(self.keep):
                raise ValueError("detect_among must name at least one language besides those in keep")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.keep)


@cache
def _detector(candidates: tuple[str, ...]) -> LanguageDetector:
    if not candidates:
        return LanguageDetectorBuilder.from_all_languages().build()
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in candidates]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def detect_languages(texts: pd.Series, config: LanguageConfig) -> pd.DataFrame:
    """Return the most likely language (ISO 639-1) and its confidence for each row long enough to judge.

    Rows shorter than `min_chars` or missing get <NA>: short texts give unreliable guesses, and
    BANKING77-style queries of a few words would otherwise be lost.
    """
    result = pd.DataFrame(
        {
            "language": pd.Series(pd.NA, index=texts.index, dtype="string"),
            "confidence": pd.Series(float("nan"), index=texts.index),
        }
    )
    values = texts.astype("string")
    judged = values.notna() & (values.str.len().fillna(0) >= config.min_chars)
    if not judged.any():
        return result
    detector = _detector(tuple(config.detect_among))
    # compute_language_confidence_values_in_parallel returns, per text, every candidate sorted by
    # confidence; it runs on all cores and its results do not depend on their number.
    ranked = detector.compute_language_confidence_values_in_parallel(values[judged].tolist())
    result.loc[judged, "language"] = [entry[0].language.iso_code_639_1.name.lower() for entry in ranked]
    result.loc[judged, "confidence"] = [round(float(entry[0].value), 6) for entry in ranked]
    return result


def language_reasons(detected: pd.DataFrame, config: LanguageConfig) -> tuple[pd.Series, pd.Series]:
    """Return (reason, detail) per row: rows confidently in a language outside `keep` are flagged."""
    reasons = pd.Series(pd.NA, index=detected.index, dtype="string")
    details = pd.Series("", index=detected.index, dtype="string")
    flagged = (
        detected["language"].notna()
        & ~detected["language"].isin(config.keep)
        & (detected["confidence"] >= config.min_confidence)
    )
    reasons[flagged] = LANGUAGE_NOT_ALLOWED
    details[flagged] = [
        f"detected {language} (confidence {confidence:.2f}); kept languages: {', '.join(config.keep)}"
        for language, confidence in zip(
            detected.loc[flagged, "language"], detected.loc[flagged, "confidence"], strict=True
        )
    ]
    return reasons, details
