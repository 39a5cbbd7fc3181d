"""HTML building blocks of the report: the page shell, sections, tables and notices.

Every value that reaches the page goes through `html.escape` here or in stages/reporting/svg.py,
because labels, texts and source names come from untrusted data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from stages.core.tracking import flatten

# The page loads nothing: no script, no font, no stylesheet or image from elsewhere. The policy
# makes the browser block any such request, should one ever be added.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1f3a5f; color: #fff; padding: 16px 32px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 0;
  font-size: 13px; }
header dt { opacity: 0.75; }
header dd { margin: 0; font-family: ui-monospace, monospace; }
nav { padding: 8px 32px; background: #e8eef5; font-size: 13px; }
nav a { margin-right: 12px; color: #1f3a5f; }
main { padding: 8px 32px 32px 32px; max-width: 1200px; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 4px 0 10px 0; }
h3 { font-size: 15px; margin: 14px 0 6px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notice { color: #666; font-style: italic; margin: 6px 0; }
.fail { color: #b00020; font-weight: 600; }
.pass { color: #006d3c; font-weight: 600; }
.legend { font-size: 12px; margin: 4px 0; }
.legend .key { margin-right: 14px; white-space: nowrap; }
.legend .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  vertical-align: middle; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 32px; }
.figure { font-size: 13px; }
.figure b { display: block; font-size: 20px; }
details summary { cursor: pointer; font-size: 13px; color: #1f3a5f; }
svg { display: block; margin: 6px 0; max-width: 100%; height: auto; }
"""


def text(value: Any) -> str:
    """Return a value as escaped text; floats get four significant decimals, None a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return escape(f"{value:.4g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}")
    if isinstance(value, (list, tuple, dict)):
        return escape(_clip(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str), 300))
    return escape(_clip(str(value), 300))


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, raw_columns: Sequence[int] = ()) -> str:
    """Return an HTML table; numbers are right-aligned. Cells in `raw_columns` are trusted HTML."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = []
    for row in rows:
        cells = []
        for index, value in enumerate(row):
            if index in raw_columns:
                cells.append(f"<td>{value}</td>")
            elif _is_number(value):
                cells.append(f'<td class="num">{text(value)}</td>')
            else:
                cells.append(f"<td>{text(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return notice("no rows")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_value_table(data: Mapping[str, Any], *, skip: Iterable[str] = ()) -> str:
    """Return a two-column table of a nested mapping flattened to dotted keys."""
    skipped = tuple(skip)
    rows = [
        (key, value)
        for key, value in flatten(data).items()
        if not any(key == name or key.startswith(name + ".") for name in skipped)
    ]
    return table(["key", "value"], rows)


def notice(message: str) -> str:
    return f'<p class="notice">{escape(message)}</p>'


def figures(items: Sequence[tuple[str, Any]]) -> str:
    """Return a row of headline numbers, each with its caption."""
    cells = "".join(
        f'<div class="figure"><b>{text(value)}</b>{escape(caption)}</div>' for caption, value in items
    )
    return f'<div class="figures">{cells}</div>'


def details(summary: str, body: str) -> str:
    """Return a collapsed block: long tables stay in the page without taking its height."""
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{escape(section_id)}"><h2>{escape(title)}</h2>{body}</section>'


def page(
    title: str, header_fields: Sequence[tuple[str, str]], sections: Sequence[tuple[str, str, str]]
) -> str:
    """Return the whole HTML document: header, a link per section, then the sections in order.

    `sections` contains (id, title, body HTML) triples.
    """
    fields = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in header_fields)
    links = "".join(f'<a href="#{escape(section_id)}">{escape(name)}</a>' for section_id, name, _ in sections)
    body = "".join(section(section_id, name, content) for section_id, name, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><header><h1>{escape(title)}</h1><dl>{fields}</dl></header>"
        f"<nav>{links}</nav><main>{body}</main></body></html>\n"
    )
