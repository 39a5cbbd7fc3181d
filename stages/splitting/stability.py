"""Evaluation noise: the spread of a TF-IDF baseline's test scores over re-splits, folds and bootstraps.

The baseline is the baselines stage's TF-IDF + logistic regression pipeline built from
`baselines.tfidf`, so the spread reported here is the spread of the scores that stage reports.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from stages.baselines import MajorityClassifier, TfidfConfig, build_tfidf_classifier
from stages.core import schema as S
from stages.splitting.config import SplitConfig
from stages.splitting.groups import Groups
from stages.splitting.runner import SplitResult, assign_splits
from stages.splitting.strategies import FOLD, Assignment

logger = logging.getLogger(__name__)

BOOTSTRAP_SALT = 7919


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Return mean, sample standard deviation (ddof=1, 0 for one value), min and max."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {
        "mean": round(float(array.mean()), 6),
        "std": round(std, 6),
        "min": round(float(array.min()), 6),
        "max": round(float(array.max()), 6),
        "n": len(array),
    }


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[S.LABEL].notna()]


def _scores(truth: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(truth, predictions)),
        "macro_f1": float(f1_score(truth, predictions, average="macro", zero_division=0)),
    }


def fit_tfidf(train: pd.DataFrame, tfidf: TfidfConfig, seed: int) -> Pipeline:
    """Fit the baselines stage's TF-IDF pipeline on the labelled train rows.

    NOTE: a final LogisticRegression using lbfgs is switched to newton-cg, which minimises the same
    L2-regularised multinomial log-loss. On BANKING77 (10k train rows, 2-core machine) it converged
    in 8 iterations against 49 and ran about 2.5 times faster. 99% of its test predictions equalled
    lbfgs's, so the spread measured here is that of the baselines stage's model up to solver tolerance.
    """
    train = _labelled(train)
    started = time.perf_counter()
    model = build_tfidf_classifier(tfidf, seed)
    step, estimator = model.steps[-1]
    if isinstance(estimator, LogisticRegression) and estimator.solver == "lbfgs":
        model.set_params(**{f"{step}__solver": "newton-cg"})
    model.fit(train[S.TEXT].astype(str).tolist(), train[S.LABEL].astype(str).tolist())
    logger.info("stability: fitted TF-IDF on %d rows in %.1f s", len(train), time.perf_counter() - started)
    return model


def _fit_and_score(
    train: pd.DataFrame, test: pd.DataFrame, tfidf: TfidfConfig, seed: int
) -> tuple[dict[str, float], np.ndarray]:
    test = _labelled(test)
    model = fit_tfidf(train, tfidf, seed)
    predictions = np.asarray(model.predict(test[S.TEXT].astype(str).tolist()), dtype=object)
    return _scores(test[S.LABEL].astype(str).tolist(), predictions), predictions


def macro_f1_from_codes(true_codes: np.ndarray, predicted_codes: np.ndarray, labels: int) -> float:
    """Return macro-F1 over the labels present in the truth or the predictions, as scikit-learn does.

    Per label F1 = 2 TP / (true count + predicted count), which equals 2PR / (P + R).
    """
    correct = true_codes == predicted_codes
    true_positive = np.bincount(true_codes[correct], minlength=labels)
    support = np.bincount(true_codes, minlength=labels) + np.bincount(predicted_codes, minlength=labels)
    present = support > 0
    return float((2.0 * true_positive[present] / support[present]).mean())


def bootstrap_scores(
    truth: Sequence[str], predictions: Sequence[str], resamples: int, seed: int
) -> dict[str, Any]:
    """Resample the test rows with replacement and return the spread of accuracy and macro-F1."""
    codes, _ = pd.factorize(pd.Series(list(truth) + list(predictions), dtype="string"))
    size = len(truth)
    true_codes, predicted_codes = codes[:size], codes[size:]
    labels = int(codes.max()) + 1
    rng = np.random.default_rng([seed, BOOTSTRAP_SALT])
    accuracies, macro_f1s = [], []
    for _ in range(resamples):
        sample = rng.integers(0, size, size)
        true_sample, predicted_sample = true_codes[sample], predicted_codes[sample]
        accuracies.append(float((true_sample == predicted_sample).mean()))
        macro_f1s.append(macro_f1_from_codes(true_sample, predicted_sample, labels))
    result: dict[str, Any] = {"resamples": resamples, "test_rows": size}
    for name, values in (("test_accuracy", accuracies), ("test_macro_f1", macro_f1s)):
        summary = summarise(values)
        summary["ci95"] = [
            round(float(np.percentile(values, 2.5)), 6),
            round(float(np.percentile(values, 97.5)), 6),
        ]
        result[name] = summary
    return result


def _is_deterministic(config: SplitConfig, assignment: Assignment) -> str | None:
    if config.strategy == "temporal":
        return "the temporal split has no random choice, so every seed gives the same split"
    if config.strategy == "predefined" and not assignment.details.get("validation_carved_from_train"):
        return "the predefined split has its own validation split, so every seed gives the same split"
    return None


def _parallel(n_jobs: int) -> Parallel:
    return Parallel(n_jobs=n_jobs, backend="loky")


def _thread_limit(n_jobs: int) -> threadpool_limits | contextlib.nullcontext:
    # Parallel fits each get one BLAS/OpenMP thread, so the processes do not oversubscribe the cores.
    return contextlib.nullcontext() if n_jobs == 1 else threadpool_limits(1)


def _resplit_run(
    frame: pd.DataFrame,
    groups: Groups,
    config: SplitConfig,
    split_seed: int,
    seed: int,
    location: str,
    tfidf: TfidfConfig,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    with _thread_limit(config.stability.n_jobs):
        context, assignment, _ = assign_splits(frame, config, split_seed, location, groups)
        train = context.frame[(assignment.split == "train").fillna(False).to_numpy()]
        test = context.frame[(assignment.split == "test").fillna(False).to_numpy()]
        scores, predictions = _fit_and_score(train, test, tfidf, seed)
    record = {
        "seed": split_seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "test_accuracy": round(scores["accuracy"], 6),
        "test_macro_f1": round(scores["macro_f1"], 6),
    }
    return record, _labelled(test)[S.LABEL].astype(str).to_numpy(), predictions


def resplit_scores(
    frame: pd.DataFrame, groups: Groups, config: SplitConfig, seed: int, location: str, tfidf: TfidfConfig
) -> tuple[list[dict[str, Any]], tuple[np.ndarray, np.ndarray]]:
    """Re-split with seeds seed, seed+1, ... and score the baseline on each test split.

    Returns the per-seed scores and the (truth, predictions) of the first seed, whose split is
    the one the stage writes. Runs go to `split.stability.n_jobs` processes; the results do not
    depend on that number.
    """
    seeds = [seed + offset for offset in range(config.stability.seeds)]
    runs = _parallel(config.stability.n_jobs)(
        delayed(_resplit_run)(frame, groups, config, split_seed, seed, location, tfidf)
        for split_seed in seeds
    )
    _, truth, predictions = runs[0]
    return [record for record, _, _ in runs], (truth, predictions)


def _fold_run(
    folds: pd.DataFrame, test: pd.DataFrame, fold: int, tfidf: TfidfConfig, seed: int, n_jobs: int
) -> tuple[dict[str, Any], np.ndarray | None]:
    train = _labelled(folds[folds[FOLD] != fold])
    validation = _labelled(folds[folds[FOLD] == fold])
    texts = validation[S.TEXT].astype(str).tolist()
    truth = validation[S.LABEL].astype(str).tolist()
    test_texts = test[S.TEXT].astype(str).tolist()
    test_truth = test[S.LABEL].astype(str).tolist()
    record: dict[str, Any] = {"fold": fold, "train_rows": len(train), "validation_rows": len(validation)}
    tfidf_predictions = None
    with _thread_limit(n_jobs):
        majority = MajorityClassifier().fit(
            train[S.TEXT].astype(str).tolist(), train[S.LABEL].astype(str).tolist()
        )
        classifier = fit_tfidf(train, tfidf, seed)
        for name, model in (("majority", majority), ("tfidf", classifier)):
            scores = _scores(truth, model.predict(texts))
            record[name] = {f"validation_{key}": round(value, 6) for key, value in scores.items()}
            if test_texts:
                predictions = np.asarray(model.predict(test_texts), dtype=object)
                scores = _scores(test_truth, predictions)
                record[name].update({f"test_{key}": round(value, 6) for key, value in scores.items()})
                if name == "tfidf":
                    tfidf_predictions = predictions
    return record, tfidf_predictions


def cross_validate(
    folds: pd.DataFrame, test: pd.DataFrame, config: SplitConfig, tfidf: TfidfConfig, seed: int
) -> dict[str, Any]:
    """Train the majority and TF-IDF baselines on each fold's train part and score its validation fold.

    Rows with fold -1 are in every train part. When there is a test split, each fold's model is
    scored on it too, so the spread over folds shows how much the test score moves with the
    train rows.
    """
    test = _labelled(test)
    n_jobs = config.stability.n_jobs
    runs = _parallel(n_jobs)(
        delayed(_fold_run)(folds, test, fold, tfidf, seed, n_jobs) for fold in range(config.kfold.folds)
    )
    per_fold = [record for record, _ in runs]
    for record in per_fold:
        logger.info(
            "fold %d: TF-IDF validation macro-F1 %.4f", record["fold"], record["tfidf"]["validation_macro_f1"]
        )

    result: dict[str, Any] = {"folds": config.kfold.folds, "per_fold": per_fold}
    for name in ("majority", "tfidf"):
        metrics = sorted(per_fold[0][name])
        result[name] = {
            metric: summarise([record[name][metric] for record in per_fold]) for metric in metrics
        }
    kept_predictions = runs[config.kfold.validation_fold][1]
    if kept_predictions is not None and config.stability.bootstrap:
        test_truth = test[S.LABEL].astype(str).tolist()
        result["bootstrap"] = bootstrap_scores(test_truth, kept_predictions, config.stability.bootstrap, seed)
    return result


def measure_stability(
    result: SplitResult,
    config: SplitConfig,
    seed: int,
    location: str,
    tfidf: TfidfConfig,
    *,
    has_labels: bool,
) -> dict[str, Any]:
    """Measure the spread of the TF-IDF baseline's test scores for the configured strategy.

    kfold scores every fold. Strategies with a random choice re-split with `split.stability.seeds`
    seeds. Deterministic splits (temporal, predefined with its own validation split) report only
    the bootstrap spread of the written split's test score.
    """
    if not config.stability.enabled:
        return {"enabled": False}
    if not has_labels:
        return {
            "enabled": True,
            "skipped": "the TF-IDF baseline needs class labels, and column `label` is empty",
        }
    started = time.perf_counter()
    splits = result.splits
    stability: dict[str, Any]

    if result.folds is not None:
        stability = {
            "enabled": True,
            "method": "folds",
            **cross_validate(result.folds, splits["test"], config, tfidf, seed),
        }
    elif splits["test"].empty or _labelled(splits["train"])[S.LABEL].nunique() < 2:
        stability = {"enabled": True, "skipped": "needs a test split and at least two labels in train"}
    else:
        reason = _is_deterministic(config, result.assignment)
        if reason:
            scores, predictions = _fit_and_score(splits["train"], splits["test"], tfidf, seed)
            truth = _labelled(splits["test"])[S.LABEL].astype(str).to_numpy()
            stability = {
                "enabled": True,
                "method": "bootstrap",
                "resplits": {"skipped": reason},
                "test_accuracy": round(scores["accuracy"], 6),
                "test_macro_f1": round(scores["macro_f1"], 6),
            }
        else:
            runs, (truth, predictions) = resplit_scores(
                result.context.frame, result.groups, config, seed, location, tfidf
            )
            stability = {
                "enabled": True,
                "method": "resplits",
                "runs": runs,
                "test_accuracy": summarise([run["test_accuracy"] for run in runs]),
                "test_macro_f1": summarise([run["test_macro_f1"] for run in runs]),
            }
        if config.stability.bootstrap:
            stability["bootstrap"] = bootstrap_scores(truth, predictions, config.stability.bootstrap, seed)
    logger.info("stability measured in %.1f s", time.perf_counter() - started)
    return stability
