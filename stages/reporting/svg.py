"""Inline SVG charts for the HTML report: bars, grouped bars, a histogram, a heatmap and line charts.

Every function returns one `<svg>` element as text. Labels come from the data, so every piece of
text goes through `html.escape`; numbers are formatted here. The charts need no script, font file
or stylesheet outside the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

# The Okabe-Ito palette, chosen to stay distinguishable with common colour blindness, in drawing order.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
TEXT_COLOUR = "#222"
GRID_COLOUR = "#ddd"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
LABEL_CHAR_PX = 7.2  # upper estimate of the width of one character of the 12 px label font


def _number(value: float) -> str:
    """Format a coordinate with at most one decimal, so equal charts give equal text."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _clip(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f'<svg role="img" width="{_number(width)}" '
        f'height="{_number(height)}" viewBox="0 0 {_number(width)} {_number(height)}" {FONT}>'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" text-anchor="{anchor}" fill="{TEXT_COLOUR}"{extra}>'
        f"{escape(text)}</text>"
    )


def _rect(x: float, y: float, width: float, height: float, fill: str, tooltip: str | None = None) -> str:
    inner = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return (
        f'<rect x="{_number(x)}" y="{_number(y)}" width="{_number(max(width, 0.0))}" '
        f'height="{_number(height)}" fill="{fill}">{inner}</rect>'
    )


def legend(names: Sequence[str]) -> str:
    """Return an HTML legend (coloured squares and names) for series drawn in palette order."""
    items = [
        f'<span class="key"><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
        f"{escape(name)}</span>"
        for i, name in enumerate(names)
    ]
    return '<div class="legend">' + "".join(items) + "</div>"


def horizontal_bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    value_format: Callable[[float], str] = lambda value: f"{value:g}",
    maximum: float | None = None,
    width: int = 720,
    bar_height: int = 14,
    colour: str = PALETTE[0],
) -> str:
    """Draw one horizontal bar per (label, value), labels on the left and values at the bar ends."""
    if not items:
        return ""
    label_chars = min(max(len(label) for label, _ in items), 40)
    left = 8 + label_chars * LABEL_CHAR_PX
    right = 70
    plot_width = max(width - left - right, 50)
    top = 4
    step = bar_height + 4
    scale_max = maximum if maximum is not None else max((value for _, value in items), default=0.0)
    scale_max = scale_max if scale_max > 0 else 1.0
    body = []
    for index, (label, value) in enumerate(items):
        y = top + index * step
        length = plot_width * min(max(value, 0.0), scale_max) / scale_max
        body.append(_text(left - 6, y + bar_height - 3, _clip(label, 40), "end"))
        body.append(_rect(left, y, length, bar_height, colour, f"{label}: {value_format(value)}"))
        body.append(_text(left + length + 4, y + bar_height - 3, value_format(value)))
    height = top + len(items) * step + 4
    return _svg(width, height, body, title)


def grouped_bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
    value_format: Callable[[float], str] = lambda value: f"{value:.3f}",
    maximum: float | None = None,
    width: int = 720,
    bar_height: int = 12,
) -> str:
    """Draw, for each category, one bar per series (in palette order); None values are left out."""
    if not categories or not series:
        return ""
    label_chars = min(max(len(name) for name in categories), 40)
    left = 8 + label_chars * LABEL_CHAR_PX
    right = 70
    plot_width = max(width - left - right, 50)
    names = list(series)
    values = [value for column in series.values() for value in column if value is not None]
    scale_max = maximum if maximum is not None else max(values, default=0.0)
    scale_max = scale_max if scale_max > 0 else 1.0
    group_height = len(names) * (bar_height + 2) + 10
    body = []
    for index, category in enumerate(categories):
        top = 4 + index * group_height
        body.append(_text(left - 6, top + group_height / 2, _clip(category, 40), "end"))
        for position, name in enumerate(names):
            value = series[name][index]
            if value is None:
                continue
            y = top + position * (bar_height + 2)
            length = plot_width * min(max(value, 0.0), scale_max) / scale_max
            colour = PALETTE[position % len(PALETTE)]
            body.append(
                _rect(left, y, length, bar_height, colour, f"{category}, {name}: {value_format(value)}")
            )
            body.append(_text(left + length + 4, y + bar_height - 2, value_format(value)))
    height = 4 + len(categories) * group_height
    return _svg(width, height, body, title)


def histogram(
    counts: Sequence[int],
    edges: Sequence[float],
    *,
    title: str,
    x_label: str,
    width: int = 720,
    height: int = 220,
) -> str:
    """Draw a histogram of pre-computed bin counts; `edges` has one more entry than `counts`."""
    if not counts:
        return ""
    left, right, top, bottom = 50, 16, 10, 40
    plot_width = width - left - right
    plot_height = height - top - bottom
    peak = max(max(counts), 1)
    bar_width = plot_width / len(counts)

    body = [
        f'<line x1="{left}" y1="{top + plot_height}" x2="{left + plot_width}" y2="{top + plot_height}" '
        f'stroke="{TEXT_COLOUR}"/>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_height * (1 - fraction)
        body.append(_text(left - 6, y + 4, f"{round(peak * fraction):d}", "end"))
        body.append(
            f'<line x1="{left}" y1="{_number(y)}" x2="{left + plot_width}" y2="{_number(y)}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
    for index, count in enumerate(counts):
        bar = plot_height * count / peak
        tooltip = f"{edges[index]:g} to {edges[index + 1]:g}: {count} rows"
        body.append(
            _rect(
                left + index * bar_width + 0.5,
                top + plot_height - bar,
                bar_width - 1,
                bar,
                PALETTE[0],
                tooltip,
            )
        )

    tick_step = max(1, math.ceil(len(counts) / 8))
    for index in range(0, len(edges), tick_step):
        x = left + index * bar_width
        body.append(_text(x, top + plot_height + 16, f"{edges[index]:g}", "middle"))
    body.append(_text(left + plot_width / 2, height - 6, x_label, "middle"))
    return _svg(width, height, body, title)


def heatmap(
    labels: Sequence[str],
    matrix: Sequence[Sequence[int]],
    *,
    title: str,
    row_axis: str = "actual",
    column_axis: str = "predicted",
    cell: int | None = None,
) -> str:
    """Draw a square count matrix as shaded cells: rows are `labels[i]`, columns `labels[j]`.

    The axes are named only in the cell tooltips; the caller captions the chart.

    Cells on the diagonal are blue, the others orange, both shaded by the count relative to the
    largest count of their kind, so that rare confusions stay visible next to large diagonals.
    """
    size = len(labels)
    if size == 0:
        return ""
    cell = cell or max(4, min(28, 800 // size))
    label_chars = min(max(len(label) for label in labels), 32)
    # Below 8 px per cell the labels would overlap; the cell tooltips still name both classes.
    show_labels = cell >= 8
    label_px = min(11, cell - 1)
    margin = 8 + label_chars * LABEL_CHAR_PX * label_px / 12 if show_labels else 24
    diagonal_peak = max((matrix[i][i] for i in range(size)), default=0) or 1
    off_peak = max((matrix[i][j] for i in range(size) for j in range(size) if i != j), default=0) or 1
    body = []
    for i in range(size):
        for j in range(size):
            count = int(matrix[i][j])
            if count == 0:
                continue
            diagonal = i == j
            share = count / (diagonal_peak if diagonal else off_peak)
            # Shade from a light tint (one row) to the full colour (the largest count of its kind).
            opacity = 0.15 + 0.85 * share
            colour = "#0072B2" if diagonal else "#D55E00"
            body.append(
                f'<rect x="{_number(margin + j * cell)}" y="{_number(margin + i * cell)}" width="{cell}" '
                f'height="{cell}" fill="{colour}" fill-opacity="{opacity:.2f}"><title>'
                f"{escape(f'{row_axis} {labels[i]}, {column_axis} {labels[j]}: {count}')}</title></rect>"
            )
    grid_end = margin + size * cell
    body.append(
        f'<rect x="{_number(margin)}" y="{_number(margin)}" width="{size * cell}" height="{size * cell}" '
        f'fill="none" stroke="{GRID_COLOUR}"/>'
    )
    if show_labels:
        font = f' font-size="{label_px}"'
        for index, label in enumerate(labels):
            centre = margin + index * cell + cell / 2 + 3
            body.append(_text(margin - 4, centre, _clip(label, 32), "end", font))
            body.append(
                _text(
                    centre - 3,
                    margin - 4,
                    _clip(label, 32),
                    "start",
                    f'{font} transform="rotate(-90 {_number(centre - 3)} {_number(margin - 4)})"',
                )
            )
    return _svg(grid_end + 8, grid_end + 8, body, title)


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
    x_label: str,
    width: int = 720,
    height: int = 240,
) -> str:
    """Draw one line with point markers per series against a shared x axis; None values leave gaps."""
    values = [value for column in series.values() for value in column if value is not None]
    if not x or not values:
        return ""
    left, right, top, bottom = 56, 16, 10, 40
    plot_width = width - left - right
    plot_height = height - top - bottom
    low, high = min(values), max(values)
    if math.isclose(low, high):
        low, high = low - 0.5, high + 0.5
    x_low, x_high = min(x), max(x)
    x_span = (x_high - x_low) or 1.0

    def point(x_value: float, y_value: float) -> tuple[float, float]:
        return (
            left + plot_width * (x_value - x_low) / x_span if len(x) > 1 else left + plot_width / 2,
            top + plot_height * (1 - (y_value - low) / (high - low)),
        )

    body = []
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_height * (1 - fraction)
        body.append(_text(left - 6, y + 4, f"{low + (high - low) * fraction:.3g}", "end"))
        body.append(
            f'<line x1="{left}" y1="{_number(y)}" x2="{left + plot_width}" y2="{_number(y)}" '
            f'stroke="{GRID_COLOUR}"/>'
        )
    for value in x:
        body.append(_text(point(value, low)[0], top + plot_height + 16, f"{value:g}", "middle"))
    for position, (name, column) in enumerate(series.items()):
        colour = PALETTE[position % len(PALETTE)]
        points = [point(xv, yv) for xv, yv in zip(x, column, strict=True) if yv is not None]
        if len(points) > 1:
            path = " ".join(f"{_number(px)},{_number(py)}" for px, py in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (px, py), (xv, yv) in zip(
            points, [(a, b) for a, b in zip(x, column, strict=True) if b is not None], strict=True
        ):
            body.append(
                f'<circle cx="{_number(px)}" cy="{_number(py)}" r="3" fill="{colour}">'
                f"<title>{escape(f'{name} at {x_label} {xv:g}: {yv:.4g}')}</title></circle>"
            )
    body.append(_text(left + plot_width / 2, height - 6, x_label, "middle"))
    return _svg(width, height, body, title)
