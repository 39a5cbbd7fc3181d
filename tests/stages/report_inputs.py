"""Synthetic inputs of the report stage: every metrics file and table it reads, with hostile labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.io import write_json, write_table

# Labels and names that would break a page that does not escape its data.
HOSTILE_LABEL = '<script>alert("label")</script>'
HOSTILE_SOURCE = "tickets<img src=x onerror=alert(1)>"
LABELS = ["card_arrival", "change_pin", "exchange_rate", HOSTILE_LABEL]


def rows(count: int, split: str, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    labels = [LABELS[i % len(LABELS)] for i in range(count)]
    texts = [" ".join(["word"] * int(generator.integers(2, 30))) + f" {i}" for i in range(count)]
    frame = pd.DataFrame(
        {
            S.ROW_ID: [f"{split}-{i}" for i in range(count)],
            S.TEXT: texts,
            S.LABEL: labels,
            S.SPLIT: split,
            S.SOURCE: HOSTILE_SOURCE if split == "test" else "banking77-train",
            S.SOURCE_TYPE: "csv",
            S.SOURCE_LOCATION: f"data/sources/{split}.csv",
            S.SYNTHETIC: False,
            S.ACQUIRED_AT: pd.NA,
        }
    )
    return frame


def write_report_inputs(folder: Path) -> dict[str, Path]:
    """Write every report input under `folder` and return the report's option name -> path."""
    splits = {
        "train": rows(80, "train", 0),
        "validation": rows(12, "validation", 1),
        "test": rows(24, "test", 2),
    }
    for name, frame in splits.items():
        write_table(frame, folder / "split" / f"{name}.parquet")
    write_table(pd.concat(splits.values(), ignore_index=True), folder / "raw.parquet")

    write_json(
        {
            "rows_in": 118,
            "rows_out": 116,
            "rows_quarantined": 2,
            "quarantine_reasons": {"unknown_split": 2},
            "sources": {
                "banking77-train": {"rows": 92, "quarantined": 2},
                HOSTILE_SOURCE: {"rows": 24, "quarantined": 0, "url": "https://example.invalid/api"},
            },
        },
        folder / "acquire.json",
    )
    write_json(
        {
            "rows_in": 116,
            "rows_out": 116,
            "rows_quarantined": 0,
            "quarantine_reasons": {},
            "pii": {"rows_redacted": 4, "values_redacted": {"email": 3, "phone": 1, "iban": 0}},
            "repairs": {"text": {"whitespace": 2}},
            "expectations": {
                "raw": None,
                "curated": {
                    "evaluated": 2,
                    "expectations": [
                        {"type": "expect_column_values_to_be_unique", "column": "row_id", "success": True},
                        {
                            "type": "expect_column_values_to_not_be_null",
                            "column": "label",
                            "success": False,
                            "severity": "warning",
                            "unexpected_count": 1,
                        },
                    ],
                },
            },
        },
        folder / "curate.json",
    )
    write_json(
        {
            "strategy": "predefined",
            "rows_in": 116,
            "rows_out": 116,
            "rows_quarantined": 0,
            "quarantine_reasons": {},
            "sizes": {name: len(frame) for name, frame in splits.items()},
            "shares": {name: round(len(frame) / 116, 6) for name, frame in splits.items()},
            "classes": len(LABELS),
            "labels_missing_from_train": {"validation": [], "test": []},
            "expectations": {
                "evaluated": 1,
                "expectations": [
                    {"type": "expect_column_to_exist", "kwargs": {"column": "split"}, "success": True},
                ],
            },
            "leakage": {
                "passed": True,
                "failures": [],
                "limits": {"max_exact": 0, "max_near": 0.01},
                "pairs": {
                    "train_vs_test": {
                        "rows": {"train": 80, "test": 24},
                        "exact": {"rows": 0, "rate": 0.0, "examples": []},
                        "near": {"rows": 1, "rate": 0.041667, "pairs": 1, "threshold": 0.9, "examples": []},
                        "group": {"rows": 0, "rate": 0.0, "skipped": "no group column"},
                    }
                },
            },
            "stability": {
                "resplits": {"macro_f1": {"mean": 0.81, "std": 0.02, "min": 0.78, "max": 0.84, "n": 5}},
                "bootstrap": {"accuracy": {"mean": 0.83, "std": 0.03, "min": 0.77, "max": 0.88, "n": 200}},
            },
        },
        folder / "split.json",
    )
    write_json(
        {
            "real_rows": 80,
            "generated": 10,
            "accepted": 6,
            "rejected": 4,
            "rows_in": 90,
            "rows_out": 86,
            "rejected_by_reason": {"near_duplicate": 3, "too_short": 1},
            "synthetic_share": 0.069767,
            "methods": {
                "edits": {
                    "status": "ran",
                    "generated": 10,
                    "accepted": 6,
                    "rejected": 4,
                    "acceptance_rate": 0.6,
                }
            },
            "target_classes": {"change_pin": {"real": 20, "added": 6}},
        },
        folder / "augment.json",
    )
    write_json(
        {
            "test_macro_f1_without_augmentation": 0.71,
            "test_macro_f1_with_augmentation": 0.74,
            "delta_macro_f1": 0.03,
        },
        folder / "augment_effect.json",
    )
    write_json({"best_epoch": 2, "validation_macro_f1": 0.8, "train_rows": 80}, folder / "train.json")
    (folder / "train_curve.csv").write_text(
        "epoch,train_loss,validation_accuracy,validation_macro_f1\n1,1.2,0.6,0.55\n2,0.7,0.82,0.8\n"
    )

    test = splits["test"]
    predictions = test[S.LABEL].tolist()
    predictions[0] = LABELS[1] if predictions[0] != LABELS[1] else LABELS[0]
    predictions[5] = HOSTILE_LABEL
    write_table(
        pd.DataFrame({S.ROW_ID: test[S.ROW_ID], S.LABEL: test[S.LABEL], "prediction": predictions}),
        folder / "adapter.parquet",
    )
    models = {
        "majority": {"accuracy": 0.25, "macro_f1": 0.1, "rows": 24},
        "tfidf": {"accuracy": 0.8, "macro_f1": 0.78, "rows": 24, "latency_ms_p50": 0.4},
        "adapter": {"accuracy": 0.92, "macro_f1": 0.91, "rows": 24, "latency_ms_p50": 3.1},
    }
    write_json(
        {"models": models, "adapter_minus_tfidf": {"accuracy": 0.12, "macro_f1": 0.13}},
        folder / "evaluate.json",
    )
    write_json(
        {name: {label: round(0.2 * i + 0.1, 2) for i, label in enumerate(LABELS)} for name in models},
        folder / "per_class_f1.json",
    )
    e2e = folder / "e2e"
    e2e.mkdir()
    (e2e / "evaluate.json").write_text(
        json.dumps(
            {
                "forgetting": {
                    "base_perplexity": 30.5,
                    "adapter_perplexity": 31.2,
                    "relative_increase": 0.023,
                    "max_relative_increase": 0.1,
                    "lines": 100,
                    "tokens": 4000,
                }
            }
        )
    )
    return {
        "raw": folder / "raw.parquet",
        "acquire_metrics": folder / "acquire.json",
        "curate_metrics": folder / "curate.json",
        "split_metrics": folder / "split.json",
        "split_dir": folder / "split",
        "augment_metrics": folder / "augment.json",
        "augment_effect": folder / "augment_effect.json",
        "train_metrics": folder / "train.json",
        "train_curve": folder / "train_curve.csv",
        "evaluate_metrics": folder / "evaluate.json",
        "per_class": folder / "per_class_f1.json",
        "predictions": folder / "adapter.parquet",
        "forgetting_dir": e2e,
    }
