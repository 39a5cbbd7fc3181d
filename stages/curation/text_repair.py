"""Text repair: mojibake, HTML, Unicode normalisation, invisible characters and whitespace.

Every step is vectorised with pyarrow compute (RE2 patterns) except the two that need Python
libraries, ftfy and `html.unescape`. Those two run only on the rows a vectorised pattern selects.
"""

from __future__ import annotations

import functools
import html
import unicodedata
from collections.abc import Callable
from typing import Literal

import ftfy
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stages.core.params import StageConfig
from stages.curation.strings import changed, to_arrow, to_series

UnicodeForm = Literal["NFC", "NFKC", "NFD", "NFKD", "none"]


class RepairConfig(StageConfig):
    """Switches for the repair steps; each step is counted in the metrics when it changes a row."""

    fix_mojibake: bool = True
    strip_html: bool = True
    remove_invisible: bool = True
    collapse_whitespace: bool = True


# Mojibake needs non-ASCII characters, so ftfy runs only on rows that contain some.
NON_ASCII = r"[^\x00-\x7F]"

# An HTML or XML tag, comment or declaration: "<b>", "</p>", "<br/>", '<a href="x">', "<!-- x -->".
# A "<" followed by a space or digit ("a < b", "<3") is not a tag and stays.
HTML_TAG = r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?|!--.*?--|![A-Za-z][^<>]*)>"
# A named or numeric character reference: "&amp;", "&#39;", "&#x27;".
HTML_ENTITY = r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"

# Characters that render as nothing: zero-width space, directional marks, bidirectional embeddings
# and isolates, word joiner, invisible operators, byte-order mark, soft hyphen. The zero-width
# non-joiner and joiner (U+200C, U+200D) stay, because they carry meaning in Persian, Indic scripts
# and emoji sequences (a joiner makes 👨‍👩‍👧 one family emoji).
INVISIBLE = r"[\x{200B}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{FEFF}\x{00AD}]"
# C0 and C1 control characters except tab, line feed and carriage return.
CONTROL = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}]"
# Runs of whitespace, including Unicode space separators such as no-break space.
WHITESPACE = r"[\s\p{Z}]+"

# ftfy settings: only the encoding-related fixes. HTML, normalisation, control characters and
# whitespace are separate steps here, so that each is counted and can be switched off.
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=True,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


def repair_texts(
    texts: pd.Series, unicode_form: UnicodeForm, config: RepairConfig
) -> tuple[pd.Series, dict[str, int]]:
    """Repair `texts`; returns the repaired Series and the number of rows each step changed.

    Steps run in this order: mojibake (ftfy), HTML tags then entities, Unicode normalisation,
    invisible and control characters, whitespace. Missing values stay missing.
    """
    values = to_arrow(texts)
    counts: dict[str, int] = {}

    if config.fix_mojibake:
        values, counts["mojibake"] = _apply_on_matches(values, NON_ASCII, _fix_encoding)

    if config.strip_html:
        # Tags become a space so that "a<br>b" keeps two words; the whitespace step tidies up.
        stripped = pc.replace_substring_regex(values, pattern=HTML_TAG, replacement=" ")
        counts["html_tags"] = changed(values, stripped)
        values, counts["html_entities"] = _apply_on_matches(stripped, HTML_ENTITY, html.unescape)

    if unicode_form != "none":
        # ASCII text is already in every normal form. NOTE: pyarrow's utf8_normalize (25.0) returns
        # decomposed text for NFC and NFKC, so Python's unicodedata does the work.
        normalise = functools.partial(unicodedata.normalize, unicode_form)
        values, counts["unicode"] = _apply_on_matches(values, NON_ASCII, normalise)

    if config.remove_invisible:
        cleaned = pc.replace_substring_regex(values, pattern=INVISIBLE, replacement="")
        cleaned = pc.replace_substring_regex(cleaned, pattern=CONTROL, replacement=" ")
        counts["invisible"] = changed(values, cleaned)
        values = cleaned

    if config.collapse_whitespace:
        collapsed = pc.utf8_trim_whitespace(
            pc.replace_substring_regex(values, pattern=WHITESPACE, replacement=" ")
        )
        counts["whitespace"] = changed(values, collapsed)
        values = collapsed

    return to_series(values, texts.index), counts


def _fix_encoding(text: str) -> str:
    return ftfy.fix_text(text, config=FTFY_CONFIG)


def _apply_on_matches(values: pa.Array, pattern: str, function: Callable[[str], str]) -> tuple[pa.Array, int]:
    """Apply a Python string function to the rows matching an RE2 pattern; returns (values, rows changed)."""
    selected = pc.fill_null(pc.match_substring_regex(values, pattern=pattern), False)
    positions = pc.indices_nonzero(selected)
    if len(positions) == 0:
        return values, 0
    originals = pc.take(values, positions).to_pylist()
    fixed = [function(text) for text in originals]
    count = sum(1 for before, after in zip(originals, fixed, strict=True) if before != after)
    if count == 0:
        return values, 0
    return pc.replace_with_mask(values, selected, pa.array(fixed, type=values.type)), count
