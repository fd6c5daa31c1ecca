"""Read a place label or a geohash out of what a VLM wrote (the coordinates parser is
`geospot.geo.parse`; this module sits next to it and shares nothing but the idea).

A label answer is expected as the prompt asks, `Country: France` or just `France`; we take
the last `<field>: value` line if there is one (models restate), else the first non-empty
line, and strip markdown, quotes and a trailing full stop. A `<think>` block is dropped
first; an unterminated one means no answer yet. A geohash answer is `Geohash: u09t` or a
lone token of geohash characters. Never raises; non-strings give None."""

from __future__ import annotations

import re

from geospot.geo.geohash import is_geohash

_THINK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_STRIP = " \t*_`\"'.:;-#>"
MAX_LABEL_CHARS = 80  # longer than any place name: a paragraph is not a label


def _answer_text(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    text = _THINK.sub(" ", text)
    if "</think>" in text.lower():
        text = text[text.lower().rindex("</think>") + len("</think>"):]
    opened = _THINK_OPEN.search(text)
    return text[: opened.start()] if opened else text


def parse_label(text: object, field: str) -> str | None:
    """The label a `field` answer names ('country', 'region', 'city'), or None."""
    body = _answer_text(text)
    if body is None:
        return None
    keyed = re.findall(rf"^\W*{re.escape(field)}\W*[:=]\s*(.+)$", body, re.IGNORECASE | re.MULTILINE)
    lines = keyed[-1:] or [ln for ln in body.splitlines() if ln.strip(_STRIP)][:1]
    if not lines:
        return None
    label = lines[0].strip().strip(_STRIP).strip()
    return label if 0 < len(label) <= MAX_LABEL_CHARS else None


def parse_geohash(text: object) -> str | None:
    """The geohash an answer gives (lower case), or None."""
    body = _answer_text(text)
    if body is None:
        return None
    keyed = re.findall(r"geohash\W*[:=]?\s*([0-9a-z]+)", body, re.IGNORECASE)
    candidates = keyed[-1:] or body.split()
    if len(candidates) != 1:
        return None
    token = candidates[0].strip(_STRIP).lower()
    return token if is_geohash(token) else None
