"""The report's sections, each built from the loaded inputs. A section without data shows a note.

Metrics files are read defensively: a key a stage does not write (or no longer writes) leaves its
part of the section out, and unknown keys are listed as they are, so the report never stops on
a format change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from stages.core import schema as S
from stages.core.tracking import flatten
from stages.reporting import svg
from stages.reporting.html import details, figures, key_value_table, notice, table, text
from stages.reporting.inputs import ReportInputs

# The adapter is the model under test, so it comes after the baselines (in name order).
ADAPTER = "adapter"
METRIC_COLUMNS = ["accuracy", "macro_f1", "weighted_f1", "latency_ms_p50", "latency_ms_p95", "rows"]


def _mapping(data: Any, *keys: str) -> dict[str, Any]:
    """Return data[k1][k2]... when every step is a mapping, else an empty mapping."""
    for key in keys:
        if not isinstance(data, Mapping):
            return {}
        data = data.get(key)
    return dict(data) if isinstance(data, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _model_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: (name == ADAPTER, name))


# --- data -----------------------------------------------------------------------------------------


def sources(inputs: ReportInputs) -> str:
    """Build the sources section: rows per source with type, location, split values and quarantine counts."""
    raw = inputs.raw_rows
    if raw is not None and S.SOURCE not in raw:
        raw = None
    acquired = _mapping(inputs.acquire, "sources")
    if raw is None and not acquired:
        return notice(inputs.why_missing("raw rows", "acquire metrics"))

    parts = []
    if inputs.acquire:
        parts.append(
            figures(
                [
                    ("rows read", inputs.acquire.get("rows_in")),
                    ("rows kept", inputs.acquire.get("rows_out")),
                    ("rows quarantined", inputs.acquire.get("rows_quarantined")),
                    ("sources", len(acquired) or None),
                ]
            )
        )

    names = set(acquired)
    if raw is not None:
        names |= set(raw[S.SOURCE].dropna().astype(str))
    rows = []
    for name in sorted(names):
        stats = _mapping(acquired, name)
        subset = raw[raw[S.SOURCE].astype(str) == name] if raw is not None else None
        rows.append(
            [
                name,
                _unique(subset, S.SOURCE_TYPE),
                _unique(subset, S.SOURCE_LOCATION),
                len(subset) if subset is not None else stats.get("rows"),
                stats.get("quarantined"),
                _synthetic_rows(subset),
                _value_counts(subset, S.SPLIT),
                _time_range(subset, S.ACQUIRED_AT),
            ]
        )
    parts.append(
        table(
            [
                "source",
                "type",
                "location",
                "rows",
                "quarantined",
                "synthetic rows",
                "split values",
                "acquired at",
            ],
            rows,
        )
    )

    extra = {
        name: {k: v for k, v in _mapping(acquired, name).items() if k not in ("rows", "quarantined")}
        for name in sorted(names)
    }
    extra = {name: values for name, values in extra.items() if values}
    if extra:
        parts.append(details("more provenance per source (from the acquire metrics)", key_value_table(extra)))
    if raw is None:
        parts.append(notice(inputs.why_missing("raw rows")))
    return "".join(parts)


def _unique(frame: pd.DataFrame | None, column: str) -> str | None:
    if frame is None or column not in frame:
        return None
    values = sorted(frame[column].dropna().astype(str).unique())
    if not values:
        return None
    return ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def _synthetic_rows(frame: pd.DataFrame | None) -> int | None:
    if frame is None or S.SYNTHETIC not in frame:
        return None
    return int(frame[S.SYNTHETIC].fillna(False).astype(bool).sum())


def _value_counts(frame: pd.DataFrame | None, column: str) -> str | None:
    if frame is None or column not in frame:
        return None
    counts = frame[column].astype("string").fillna("(none)").value_counts()
    return ", ".join(f"{value} {count}" for value, count in sorted(counts.items()))


def _time_range(frame: pd.DataFrame | None, column: str) -> str | None:
    if frame is None or column not in frame:
        return None
    values = frame[column].dropna().astype(str)
    values = values[values != ""]
    if values.empty:
        return None
    return values.min() if values.min() == values.max() else f"{values.min()} to {values.max()}"


def _labelled_rows(inputs: ReportInputs) -> tuple[dict[str, pd.DataFrame], str]:
    """Return the split tables (or the raw rows as one table when there are no splits) and a caption."""
    if inputs.splits:
        return inputs.splits, "the split tables"
    if inputs.raw_rows is not None:
        return {"acquired": inputs.raw_rows}, "the acquired rows (the split tables are absent)"
    return {}, ""


def classes(inputs: ReportInputs) -> str:
    """Build the class section: rows per class and split, imbalance figures and a bar per train class."""
    tables, caption = _labelled_rows(inputs)
    tables = {name: frame for name, frame in tables.items() if S.LABEL in frame}
    if not tables:
        return notice(inputs.why_missing("train split", "raw rows"))
    counts = (
        pd.DataFrame(
            {
                name: frame[S.LABEL].astype("string").fillna("(no label)").value_counts()
                for name, frame in tables.items()
            }
        )
        .fillna(0)
        .astype(int)
    )

    reference = "train" if "train" in counts else next(iter(tables))
    ordered = counts.sort_values([reference, *counts.columns], ascending=False)
    nonzero = ordered[reference][ordered[reference] > 0]
    parts = [
        f"<p>From {escape(caption)}; bars show the {escape(reference)} rows per class, largest first.</p>",
        figures(
            [
                ("classes", len(counts)),
                (f"largest class ({reference})", int(nonzero.max()) if len(nonzero) else None),
                (f"smallest class ({reference})", int(nonzero.min()) if len(nonzero) else None),
                (
                    "imbalance ratio (largest / smallest)",
                    round(float(nonzero.max() / nonzero.min()), 2) if len(nonzero) else None,
                ),
            ]
        ),
        svg.horizontal_bars(
            [(str(label), float(value)) for label, value in ordered[reference].items()],
            title=f"rows per class, {reference}",
            value_format=lambda value: f"{value:.0f}",
            bar_height=10,
        ),
        details(
            "rows per class and split",
            table(
                ["class", *ordered.columns], [[label, *map(int, row)] for label, row in ordered.iterrows()]
            ),
        ),
    ]

    missing = _mapping(inputs.split, "labels_missing_from_train")
    for name, labels in missing.items():
        if isinstance(labels, list) and labels:
            parts.append(
                f'<p class="fail">{len(labels)} classes of the {escape(name)} split have no train rows: '
                f"{text(labels)}</p>"
            )
    return "".join(parts)


def lengths(inputs: ReportInputs, bins: int) -> str:
    """Build the length section: a histogram of text lengths in characters and statistics per split."""
    tables = {name: frame for name, frame in inputs.splits.items() if S.TEXT in frame}
    if not tables:
        return notice(inputs.why_missing("train split", "validation split", "test split"))
    per_split = {name: frame[S.TEXT].astype("string").fillna("") for name, frame in tables.items()}
    characters = np.concatenate([texts.str.len().to_numpy(dtype=float) for texts in per_split.values()])
    if characters.size == 0:
        return notice("the split tables have no rows")
    upper = max(float(characters.max()), 1.0)
    counts, edges = np.histogram(characters, bins=bins, range=(0.0, upper))
    rows = []
    for name, texts in per_split.items():
        chars = texts.str.len()
        words = texts.str.split().str.len().fillna(0)
        rows.append(
            [
                name,
                len(texts),
                _stat(chars, "min"),
                _stat(chars, 0.5),
                _stat(chars, 0.95),
                _stat(chars, "max"),
                _stat(words, 0.5),
                _stat(words, "max"),
            ]
        )
    return svg.histogram(
        [int(count) for count in counts],
        [round(float(edge), 1) for edge in edges],
        title="text length in characters, all splits",
        x_label="characters per text (all splits)",
    ) + table(
        [
            "split",
            "rows",
            "min chars",
            "median chars",
            "95th pct chars",
            "max chars",
            "median words",
            "max words",
        ],
        rows,
    )


def _stat(values: pd.Series, statistic: str | float) -> float | None:
    if values.empty:
        return None
    if statistic == "min":
        return float(values.min())
    if statistic == "max":
        return float(values.max())
    return float(values.quantile(statistic))


# --- quality gates --------------------------------------------------------------------------------


# Stage -> (input name, the metrics key that counts quarantined or rejected rows per reason).
QUARANTINE_SOURCES: dict[str, tuple[str, str]] = {
    "acquire": ("acquire", "quarantine_reasons"),
    "curate": ("curate", "quarantine_reasons"),
    "split": ("split", "quarantine_reasons"),
    "augment": ("augment", "rejected_by_reason"),
}


def quarantine(inputs: ReportInputs) -> str:
    """Build the quarantine section: rows in, out and quarantined per stage, and rows per reason code."""
    rows = []
    reasons: list[tuple[str, float]] = []
    absent = []
    for stage, (attribute, key) in QUARANTINE_SOURCES.items():
        metrics = getattr(inputs, attribute)
        if metrics is None:
            absent.append(stage)
            continue
        counts = {reason: count for reason, count in _mapping(metrics, key).items() if _number(count)}
        quarantined = metrics.get("rows_quarantined", metrics.get("rejected"))
        rows.append([stage, metrics.get("rows_in"), metrics.get("rows_out"), quarantined, len(counts)])
        reasons += [
            (f"{stage}: {reason}", float(count)) for reason, count in sorted(counts.items()) if _number(count)
        ]
    if not rows:
        return notice(
            "no stage metrics found: " + inputs.why_missing(*(f"{s} metrics" for s in QUARANTINE_SOURCES))
        )

    parts = [
        "<p>Every stage writes the rows it removes to its quarantine table with a reason code "
        "(for augment: the generated rows it rejected).</p>",
        table(["stage", "rows in", "rows out", "rows quarantined", "reasons with rows"], rows),
    ]
    if reasons:
        parts.append(
            svg.horizontal_bars(
                sorted(reasons, key=lambda item: -item[1]),
                title="quarantined rows per stage and reason",
                value_format=lambda value: f"{value:.0f}",
                colour=svg.PALETTE[5],
            )
        )
    else:
        parts.append(notice("no row was quarantined"))
    if absent:
        parts.append(notice(f"no metrics for: {', '.join(absent)}"))
    curation = {key: value for key, value in (inputs.curate or {}).items() if key in CURATION_DETAILS}
    if curation:
        parts.append(
            details(
                "curation details (repairs, language, duplicates, label issues, balance)",
                key_value_table(curation),
            )
        )
    return "".join(parts)


# Entries of the curate metrics shown under "curation details".
CURATION_DETAILS = (
    "repairs",
    "language",
    "exact_duplicates",
    "near_duplicates",
    "label_issues",
    "imbalance",
    "labels",
)


def expectations(inputs: ReportInputs) -> str:
    """Build the expectation section: each suite's checks with their result, failed checks first."""
    suites: dict[str, Any] = {}
    for name, summary in _mapping(inputs.curate, "expectations").items():
        suites[f"curate: {name} rows"] = summary
    if inputs.split is not None and "expectations" in inputs.split:
        suites["split: split tables"] = inputs.split["expectations"]
    suites = {name: summary for name, summary in suites.items() if isinstance(summary, Mapping)}
    if not suites:
        return notice(
            inputs.why_missing("curate metrics", "split metrics")
            if inputs.curate is None and inputs.split is None
            else "no expectation results in the curate or split metrics"
        )

    parts = []
    for name, summary in suites.items():
        entries = [entry for entry in summary.get("expectations") or [] if isinstance(entry, Mapping)]
        failed = [entry for entry in entries if entry.get("success") is False]
        verdict = '<span class="fail">failed</span>' if failed else '<span class="pass">passed</span>'
        parts.append(f"<h3>{escape(name)}: {verdict}</h3>")
        parts.append(
            figures(
                [("checks evaluated", summary.get("evaluated", len(entries))), ("checks failed", len(failed))]
            )
        )
        ordered = failed + [entry for entry in entries if entry.get("success") is not False]
        rows = [
            [
                entry.get("type"),
                entry.get("column") or _mapping(entry, "kwargs").get("column"),
                entry.get("severity"),
                "pass" if entry.get("success") else "FAIL",
                entry.get("unexpected_count"),
                entry.get("observed_value"),
            ]
            for entry in ordered
        ]
        parts.append(
            details(
                f"{len(rows)} checks",
                table(["expectation", "column", "severity", "result", "unexpected rows", "observed"], rows),
            )
        )
    return "".join(parts)


def _find_key(data: Any, predicate: Callable[[str], bool], path: str = "") -> dict[str, Any]:
    """Return dotted path -> value of every mapping entry whose key matches `predicate`, at any depth."""
    found: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if predicate(str(key)):
                found[name] = value
            else:
                found.update(_find_key(value, predicate, name))
    return found


def pii(inputs: ReportInputs) -> str:
    """Build the PII section: the curate stage's counts of personal data found and redacted, per kind."""
    if inputs.curate is None:
        return notice(inputs.why_missing("curate metrics"))
    found = _find_key(inputs.curate, lambda key: "pii" in key.lower())
    if not found:
        return notice("the curate metrics have no PII counts (no `pii` entry)")
    parts = []
    for name, value in found.items():
        if not isinstance(value, Mapping):
            parts.append(table(["key", "value"], [[name, value]]))
            continue
        counts = {key: count for key, count in flatten(value).items() if _number(count) is not None}
        if not counts:
            parts.append(key_value_table(value))
            continue
        parts.append(f"<h3>{escape(name)}</h3>")
        parts.append(
            svg.horizontal_bars(
                sorted(
                    ((str(key), float(count)) for key, count in counts.items()), key=lambda item: -item[1]
                ),
                title=name,
                value_format=lambda count: f"{count:.0f}",
                colour=svg.PALETTE[3],
            )
        )
        parts.append(details(f"all `{name}` entries", key_value_table(value)))
    return "".join(parts)


def splits(inputs: ReportInputs) -> str:
    """Build the split section: strategy, sizes and shares."""
    metrics = inputs.split
    sizes = {name: size for name, size in _mapping(metrics, "sizes").items() if _number(size) is not None}
    if not sizes and inputs.splits:
        sizes = {name: len(frame) for name, frame in inputs.splits.items()}
    if not sizes:
        return notice(inputs.why_missing("split metrics", "train split"))

    shares = _mapping(metrics, "shares")
    total = sum(value for value in sizes.values() if _number(value)) or 1
    parts = []
    if metrics:
        parts.append(
            figures(
                [
                    ("strategy", metrics.get("strategy")),
                    ("rows in", metrics.get("rows_in")),
                    ("rows out", metrics.get("rows_out")),
                    ("classes", metrics.get("classes")),
                ]
            )
        )
    order = [name for name in S.SPLIT_NAMES if name in sizes] + sorted(set(sizes) - set(S.SPLIT_NAMES))
    sizes = {name: sizes[name] for name in order}
    parts.append(
        table(
            ["split", "rows", "share"],
            [[name, size, _percent(float(shares.get(name, size / total)))] for name, size in sizes.items()],
        )
    )
    parts.append(
        svg.horizontal_bars(
            [(name, float(size)) for name, size in sizes.items()],
            title="rows per split",
            value_format=lambda value: f"{value:.0f}",
        )
    )
    for key in ("groups", "strategy_details"):
        value = _mapping(metrics, key)
        if value:
            parts.append(details(key.replace("_", " "), key_value_table(value)))
    return "".join(parts)


def leakage(inputs: ReportInputs) -> str:
    """Build the leakage section: rows per pair of splits and check (exact, near, group, time order)."""
    report = _mapping(inputs.split, "leakage")
    if not report:
        return notice(
            inputs.why_missing("split metrics")
            if inputs.split is None
            else "the split metrics have no `leakage` entry"
        )

    parts = []
    passed = report.get("passed")
    if passed is True:
        parts.append('<p class="pass">The leakage gate passed.</p>')
    elif passed is False:
        parts.append('<p class="fail">The leakage gate failed.</p>')
    failures = report.get("failures") or []
    if isinstance(failures, list) and failures:
        parts.append("<ul>" + "".join(f'<li class="fail">{text(line)}</li>' for line in failures) + "</ul>")
    rows = []
    for pair, checks in _mapping(report, "pairs").items():
        if not isinstance(checks, Mapping):
            continue
        if "skipped" in checks:
            rows.append([pair, "all", None, None, checks["skipped"]])
            continue
        for check, result in checks.items():
            if check == "rows" or not isinstance(result, Mapping):
                continue
            note = result.get("skipped") or (
                f"threshold {result['threshold']}" if "threshold" in result else ""
            )
            rows.append([pair, check, result.get("rows"), _rate(result.get("rate")), note])

    parts.append(table(["pair", "check", "rows", "rate", "note"], rows))
    limits = _mapping(report, "limits")
    if limits:
        parts.append(details("limits (split.leakage)", key_value_table(limits)))
    return "".join(parts)


def _rate(value: Any) -> str | None:
    number = _number(value)
    return None if number is None else _percent(number)


def stability(inputs: ReportInputs) -> str:
    """Build the stability section: the spread of a baseline's test score over re-splits and resamples."""
    report = _mapping(inputs.split, "stability")
    if not report:
        return notice(
            inputs.why_missing("split metrics")
            if inputs.split is None
            else "the split metrics have no `stability` entry"
        )
    rows = []
    other = {}
    for key, value in report.items():
        spread = _spread_rows(key, value)
        if spread:
            rows += spread
        else:
            other[key] = value
    parts = []
    if rows:
        parts.append(table(["measure", "mean", "std", "min", "max", "n"], rows))
    for key, value in list(other.items()):
        if _is_records(value):
            parts.append(f"<h3>{escape(key)}</h3>" + records_table(value))
            del other[key]
    if other:
        parts.append(key_value_table(other))
    return "".join(parts)


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def records_table(records: list[Mapping[str, Any]]) -> str:
    """Return a table with one row per mapping and one column per key (in first-seen order)."""
    columns: list[str] = []
    for record in records:
        columns += [str(key) for key in record if str(key) not in columns]
    return table(columns, [[record.get(column) for column in columns] for record in records])


def _spread_rows(prefix: str, value: Any) -> list[list[Any]]:
    """Return one row per nested {mean, std, min, max, n} mapping under `value`."""
    if not isinstance(value, Mapping):
        return []
    if {"mean", "std"} <= set(value):
        return [
            [prefix, value.get("mean"), value.get("std"), value.get("min"), value.get("max"), value.get("n")]
        ]
    rows = []
    for key, inner in value.items():
        rows += _spread_rows(f"{prefix}.{key}", inner)
    return rows


def augmentation(inputs: ReportInputs) -> str:
    """Build the augmentation section: rows generated, accepted and rejected, and the effect on a baseline."""
    metrics, effect = inputs.augment, inputs.augment_effect
    if metrics is None and effect is None:
        return notice(inputs.why_missing("augment metrics", "augment effect metrics"))
    parts = []
    if metrics is not None:
        parts.append(
            figures(
                [
                    ("real train rows", metrics.get("real_rows")),
                    ("generated", metrics.get("generated")),
                    ("accepted", metrics.get("accepted")),
                    ("rejected", metrics.get("rejected")),
                    ("synthetic share", _rate(metrics.get("synthetic_share"))),
                ]
            )
        )
        methods = _mapping(metrics, "methods")
        if methods:
            parts.append(
                table(
                    ["method", "status", "generated", "accepted", "rejected", "acceptance rate"],
                    [
                        [
                            name,
                            _mapping(methods, name).get("status"),
                            _mapping(methods, name).get("generated"),
                            _mapping(methods, name).get("accepted"),
                            _mapping(methods, name).get("rejected"),
                            _rate(_mapping(methods, name).get("acceptance_rate")),
                        ]
                        for name in methods
                    ],
                )
            )
        targets = _mapping(metrics, "target_classes")
        if targets:
            parts.append(
                details(
                    f"{len(targets)} target classes: real and added rows",
                    table(
                        ["class", "real", "added"],
                        [
                            [
                                label,
                                _mapping(targets, label).get("real"),
                                _mapping(targets, label).get("added"),
                            ]
                            for label in targets
                        ],
                    ),
                )
            )
    else:
        parts.append(notice(inputs.why_missing("augment metrics")))
    if effect is not None:
        parts.append("<h3>Effect on a baseline</h3>")
        if effect.get("skipped"):
            parts.append(notice(f"not measured: {effect.get('reason', 'skipped')}"))
        else:
            without = _number(effect.get("test_macro_f1_without_augmentation"))
            with_augmentation = _number(effect.get("test_macro_f1_with_augmentation"))
            if without is not None and with_augmentation is not None:
                parts.append(
                    svg.horizontal_bars(
                        [("without augmentation", without), ("with augmentation", with_augmentation)],
                        title="test macro-F1 with and without augmentation",
                        value_format=lambda value: f"{value:.4f}",
                        maximum=1.0,
                    )
                )
            parts.append(details("augment effect metrics", key_value_table(effect)))
    return "".join(parts)


# --- models ---------------------------------------------------------------------------------------


def models(inputs: ReportInputs) -> str:
    """Build the model section: every baseline against the adapter on the same test split."""
    scores = _mapping(inputs.evaluate, "models")
    if not scores:
        return notice(
            inputs.why_missing("evaluate metrics")
            if inputs.evaluate is None
            else "the evaluate metrics have no `models` entry"
        )
    names = _model_order(list(scores))
    rows = [[name, *(_mapping(scores, name).get(column) for column in METRIC_COLUMNS)] for name in names]
    parts = [table(["model", *METRIC_COLUMNS], rows)]
    lead = _mapping(inputs.evaluate, "adapter_minus_tfidf")
    if lead:
        parts.append(
            figures(
                [
                    ("adapter minus TF-IDF, accuracy", lead.get("accuracy")),
                    ("adapter minus TF-IDF, macro-F1", lead.get("macro_f1")),
                ]
            )
        )
    series = {
        metric: [_number(_mapping(scores, name).get(metric)) for name in names]
        for metric in ("accuracy", "macro_f1")
    }
    parts.append(svg.legend(list(series)))
    parts.append(svg.grouped_bars(names, series, title="accuracy and macro-F1 per model", maximum=1.0))
    return "".join(parts)


def training(inputs: ReportInputs) -> str:
    """Build the training section: the adapter's best epoch and its training and validation curves."""
    if inputs.train is None and inputs.train_curve is None:
        return notice(inputs.why_missing("train metrics", "training curve"))
    parts = []
    if inputs.train is not None:
        parts.append(key_value_table(inputs.train))
    curve = inputs.train_curve
    if curve is not None and "epoch" in curve and len(curve):
        epochs = [float(value) for value in curve["epoch"]]
        for title, columns in (
            ("validation scores per epoch", ["validation_macro_f1", "validation_accuracy"]),
            ("train loss per epoch", ["train_loss"]),
        ):
            present = [column for column in columns if column in curve]
            if not present:
                continue
            series = {column: [_number(value) for value in curve[column].tolist()] for column in present}
            parts.append(f"<h3>{escape(title)}</h3>")
            parts.append(svg.legend(present))
            parts.append(svg.line_chart(epochs, series, title=title, x_label="epoch"))
    elif curve is None:
        parts.append(notice(inputs.why_missing("training curve")))
    return "".join(parts)


def per_class(inputs: ReportInputs) -> str:
    """Build the per-class section: F1 of every model per class, the adapter's worst classes first."""
    data = inputs.per_class or {}
    scores = {name: values for name, values in data.items() if isinstance(values, Mapping)}
    if not scores:
        return notice(inputs.why_missing("per-class F1"))
    names = _model_order(list(scores))
    labels = sorted({label for values in scores.values() for label in values})
    sort_model = ADAPTER if ADAPTER in scores else names[-1]
    labels.sort(key=lambda label: (_number(scores[sort_model].get(label)) or 0.0, label))
    header = "".join(f"<th>{escape(name)}</th>" for name in names)
    body = []
    for label in labels:
        cells = []
        for name in names:
            value = _number(scores[name].get(label))
            if value is None:
                cells.append("<td>-</td>")
                continue
            # Shade from white (F1 0) to blue (F1 1), keeping dark text readable.
            shade = f"background:rgba(0,114,178,{0.05 + 0.55 * value:.2f})"
            cells.append(f'<td class="num" style="{shade}">{value:.3f}</td>')
        body.append(f"<tr><td>{escape(label)}</td>{''.join(cells)}</tr>")
    means = {name: np.mean([_number(v) or 0.0 for v in scores[name].values()]) for name in names}
    return (
        f"<p>{len(labels)} classes, sorted by the {escape(sort_model)} F1, lowest first. "
        f"Mean F1: {escape(', '.join(f'{name} {value:.3f}' for name, value in means.items()))}.</p>"
        f"<table><thead><tr><th>class</th>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def confusion(inputs: ReportInputs, top: int) -> str:
    """Build the confusion section: the adapter's confusion matrix as a heatmap and its top confusions."""
    predictions = inputs.adapter_predictions
    if predictions is None or not {S.LABEL, "prediction"} <= set(predictions.columns):
        return notice(inputs.why_missing("adapter predictions"))

    gold = predictions[S.LABEL].astype("string").fillna("(no label)")
    predicted = predictions["prediction"].astype("string").fillna("(no prediction)")
    labels = sorted(set(gold) | set(predicted))
    index = {label: position for position, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for actual, guess in zip(gold, predicted, strict=True):
        matrix[index[actual], index[guess]] += 1

    support = matrix.sum(axis=1)
    pairs = [
        (int(matrix[i, j]), labels[i], labels[j], matrix[i, j] / support[i] if support[i] else 0.0)
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and matrix[i, j] > 0
    ]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))

    correct = int(np.trace(matrix))
    parts = [
        figures(
            [
                ("test rows", int(matrix.sum())),
                ("correct", correct),
                ("confused", int(matrix.sum()) - correct),
            ]
        ),
        "<p>Rows: actual class. Columns: predicted class. Blue: correct predictions on the diagonal. "
        "Orange: confusions, shaded relative to the largest one. Hover a cell for its count.</p>",
        svg.heatmap(labels, matrix.tolist(), title="confusion matrix of the adapter"),
        f"<h3>Top {min(top, len(pairs))} confusions</h3>",
        table(
            ["actual", "predicted", "rows", "share of actual"],
            [[actual, guess, count, _percent(share)] for count, actual, guess, share in pairs[:top]],
        )
        if pairs
        else notice("no confusion: every test row was predicted correctly"),
    ]
    return "".join(parts)


def forgetting(inputs: ReportInputs) -> str:
    """Build the forgetting section: general-text perplexity with the adapter off and on."""
    if not inputs.forgetting:
        return notice("not measured: " + inputs.why_missing("forgetting"))
    rows = []
    bars = []
    for path, metrics in inputs.forgetting.items():
        result = _mapping(metrics, "forgetting")
        increase = _number(result.get("relative_increase"))
        allowed = _number(result.get("max_relative_increase"))
        verdict = None
        if increase is not None and allowed is not None:
            verdict = "within limit" if increase <= allowed else "above limit"
        rows.append(
            [
                path,
                result.get("base_perplexity"),
                result.get("adapter_perplexity"),
                _rate(increase),
                _rate(allowed),
                verdict,
                result.get("lines"),
                result.get("tokens"),
            ]
        )
        for key, caption in (("base_perplexity", "base"), ("adapter_perplexity", "with adapter")):
            value = _number(result.get(key))
            if value is not None:
                bars.append((f"{caption} ({path})", value))
    parts = [
        "<p>Perplexity of general-domain text (the WikiText-2 test split) with the adapter switched off "
        "and on; a large rise means the adapter made the model forget general language.</p>",
        table(
            [
                "metrics file",
                "base perplexity",
                "adapter perplexity",
                "change",
                "allowed",
                "verdict",
                "lines",
                "tokens",
            ],
            rows,
        ),
    ]
    if bars:
        parts.append(
            svg.horizontal_bars(
                bars, title="general-text perplexity", value_format=lambda value: f"{value:.2f}"
            )
        )
    return "".join(parts)
