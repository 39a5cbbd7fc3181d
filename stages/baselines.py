"""baselines: majority class, keyword rules and TF-IDF with logistic regression, scored like the adapter.

Each baseline is fitted on the train split and writes a prediction table for the test split;
the evaluate stage scores every table the same way. Nothing is pickled: the predictions are
the output.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import pandas as pd
from pydantic import Field, field_validator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from stages.core import schema as S
from stages.core.classification import EvaluateConfig, prediction_table, time_single_predictions
from stages.core.cli import run_stage, stage_parser
from stages.core.errors import InputDataError, ParamsError
from stages.core.io import atomic_dir, read_table, write_json, write_table
from stages.core.params import StageConfig, parse_section, parse_seed, read_params, require_classification

logger = logging.getLogger(__name__)


class TfidfConfig(StageConfig):
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = Field(default=1, ge=1)
    max_features: int | None = Field(default=50000, gt=0)
    C: float = Field(default=10.0, gt=0)
    max_iter: int = Field(default=1000, gt=0)

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 1 or value[1] < value[0]:
            raise ValueError("must be [min_n, max_n] with 1 <= min_n <= max_n")
        return value


class BaselinesConfig(StageConfig):
    tfidf: TfidfConfig = TfidfConfig()
    # label -> keywords. Empty skips the keyword baseline.
    keyword_rules: dict[str, list[str]] = {}
    # Label given when no keyword matches: "majority" (the train majority class) or any label.
    keyword_fallback: str = "majority"


def build_tfidf_classifier(config: TfidfConfig, seed: int) -> Pipeline:
    """Return an unfitted TF-IDF + logistic regression pipeline."""
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    ngram_range=tuple(config.ngram_range),
                    min_df=config.min_df,
                    max_features=config.max_features,
                    sublinear_tf=True,
                    strip_accents="unicode",
                ),
            ),
            ("logreg", LogisticRegression(C=config.C, max_iter=config.max_iter, random_state=seed)),
        ]
    )


class MajorityClassifier:
    """Predicts the most frequent train label; ties go to the label first in sorted order."""

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> MajorityClassifier:
        counts = pd.Series(list(labels)).value_counts()
        top = counts[counts == counts.max()].index
        self.label_ = sorted(str(label) for label in top)[0]
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.label_] * len(texts)


class KeywordClassifier:
    """Predicts the label whose keywords occur most often in the text (whole words, case-insensitive).

    Ties go to the label listed first in the rules; texts with no match get the fallback label.
    """

    def __init__(self, rules: dict[str, list[str]], fallback: str):
        self.fallback = fallback
        self.patterns = [
            (
                label,
                re.compile(r"\b(?:" + "|".join(re.escape(word) for word in words) + r")\b", re.IGNORECASE),
            )
            for label, words in rules.items()
            if words
        ]

    def predict(self, texts: Sequence[str]) -> list[str]:
        predictions = []
        for text in texts:
            best_label, best_count = self.fallback, 0
            for label, pattern in self.patterns:
                count = len(pattern.findall(text))
                if count > best_count:
                    best_label, best_count = label, count
            predictions.append(best_label)
        return predictions


def fit_baselines(
    train: pd.DataFrame, config: BaselinesConfig, seed: int
) -> dict[str, MajorityClassifier | KeywordClassifier | Pipeline]:
    """Fit every configured baseline on the train rows."""
    texts = train[S.TEXT].astype(str).tolist()
    labels = train[S.LABEL].astype(str).tolist()
    models: dict = {}

    models["majority"] = MajorityClassifier().fit(texts, labels)

    if config.keyword_rules:
        known = set(labels)
        unknown = sorted(set(config.keyword_rules) - known)
        if unknown:
            raise ParamsError(
                "baselines.keyword_rules",
                unknown,
                "names labels that are not in the train split",
                "Use labels from the data.",
            )
        fallback = (
            models["majority"].label_ if config.keyword_fallback == "majority" else config.keyword_fallback
        )
        models["keywords"] = KeywordClassifier(config.keyword_rules, fallback)
    else:
        logger.info("no baselines.keyword_rules given: the keyword baseline is skipped")

    if len(set(labels)) < 2:
        logger.warning("the train split has one label only: the TF-IDF baseline is skipped")
    else:
        started = time.perf_counter()
        models["tfidf"] = build_tfidf_classifier(config.tfidf, seed).fit(texts, labels)
        logger.info("fitted TF-IDF + logistic regression in %.1f s", time.perf_counter() - started)
    return models


def predict_baselines(
    models: dict, test: pd.DataFrame, latency_rows: int, seed: int
) -> dict[str, pd.DataFrame]:
    """Predict the test rows with every baseline and time a sample of single predictions."""
    texts = test[S.TEXT].astype(str).tolist()
    tables = {}
    for name, model in models.items():
        predictions = list(model.predict(texts))
        latency = time_single_predictions(model.predict, texts, latency_rows, seed)
        tables[name] = prediction_table(test, predictions, latency)
    return tables


def load_labelled(path: str, split: str) -> pd.DataFrame:
    """Read a split table and check that it has texts and labels."""
    frame = read_table(path)
    for column in (S.TEXT, S.LABEL):
        if column not in frame.columns:
            raise InputDataError(
                path, f"column `{column}` is missing", "Rerun the split stage.", field=column
            )
    if frame.empty:
        raise InputDataError(
            path, f"the {split} split has no rows", "Check the split params and the curate quarantine."
        )
    if frame[S.LABEL].isna().any():
        row = int(frame[S.LABEL].isna().to_numpy().argmax())
        raise InputDataError(
            path,
            f"the {split} split has rows without a label",
            "Check the curate stage's label rules.",
            row=row + 1,
            field=S.LABEL,
        )
    return frame


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", required=True, help="Parquet table of train rows")
    parser.add_argument("--test", required=True, help="Parquet table of test rows")
    parser.add_argument("--out-dir", required=True, help="folder for one prediction table per baseline")
    parser.add_argument("--metrics", required=True, help="JSON metrics file")
    args = parser.parse_args(argv)

    params = read_params(args.params)
    seed = parse_seed(params)
    require_classification(params)
    config = parse_section(params, "baselines", BaselinesConfig)
    # Baselines are timed on the same test rows as the adapter, so they share evaluate.latency_rows.
    latency_rows = parse_section(params, "evaluate", EvaluateConfig).latency_rows

    train = load_labelled(args.train, "train")
    test = load_labelled(args.test, "test")
    models = fit_baselines(train, config, seed)
    tables = predict_baselines(models, test, latency_rows, seed)

    summary = {}
    with atomic_dir(args.out_dir) as out_dir:
        for name, table in tables.items():
            write_table(table, out_dir / f"{name}.parquet")
            summary[name] = {
                "test_rows": len(table),
                "test_accuracy": float((table["prediction"] == table[S.LABEL]).mean()),
            }
            logger.info("%s: test accuracy %.4f", name, summary[name]["test_accuracy"])
    write_json(
        {"baselines": summary, "train_rows": len(train), "labels": int(train[S.LABEL].nunique())},
        args.metrics,
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
