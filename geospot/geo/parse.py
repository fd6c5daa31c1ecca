"""Read a coordinate guess out of whatever a VLM wrote.

Real answers come in many shapes: `Latitude: 48.85\\nLongitude: 2.35` (what
`geospot.prompts.format_answer` writes and SFT teaches), `lat=48.85, lon=2.35`, JSON,
`(48.85, 2.35)`, `48.8566° N, 2.3522° E`, degrees-minutes-seconds `48°51'24"N 2°21'8"E`,
with unicode minus signs and primes, wrapped in markdown, after a `<think>` block, or
restated ("... actually, Latitude: 45 ...").

How it works, top to bottom:
1. drop `<think>…</think>` blocks (and an unterminated `<think>` tail: no answer yet);
2. normalise look-alike characters (− → -, ′ → ', ″ → ", º → °);
3. find every coordinate *token* (a number, optionally with °, minutes, seconds and an
   N/S/E/W hemisphere before or after it);
4. build answers from tokens, in order of how explicit they are:
   labelled (`lat…: <token>` and `lon…: <token>`) > hemisphere pairs (`<N/S token> <E/W token>`)
   > plain pairs (`<token>, <token>`, latitude first);
   within a kind the LAST one wins, because models restate and correct themselves;
5. range-check: |lat| <= 90, |lon| <= 180, minutes/seconds < 60, else None.

Never raises on any string; non-strings give None.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple


class LatLon(NamedTuple):
    lat: float
    lon: float


# --- 1 + 2: cleaning ---------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)

_LOOKALIKES = str.maketrans({
    "\u2212": "-",  # minus sign
    "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-", "\ufe63": "-", "\uff0d": "-",
    "\u2032": "'", "\u2019": "'", "\u02b9": "'", "\u00b4": "'",  # prime, right quote, modifier prime, acute
    "\u2033": '"', "\u201d": '"', "\u02ba": '"',  # double prime, right double quote
    "\u00ba": "\u00b0", "\u02da": "\u00b0", "\u2218": "\u00b0",  # ordinal º, ring ˚, ring operator ∘ -> degree
    "\uff0c": ",", "\u00a0": " ", "\u202f": " ", "\u2009": " ",
})


def _clean(text: str) -> str:
    text = _THINK.sub(" ", text)
    close = list(_THINK_CLOSE.finditer(text))
    if close:  # a stray </think> (the opening tag was in the prompt): keep what follows it
        text = text[close[-1].end():]
    opened = _THINK_OPEN.search(text)
    if opened:  # still thinking when generation stopped: whatever follows is not an answer
        text = text[: opened.start()]
    return text.translate(_LOOKALIKES).replace("''", '"')


# --- 3: tokens ---------------------------------------------------------------------------

_NUM = r"\d+(?:\.\d*)?|\.\d+"
_TOKEN = re.compile(
    r"""
    (?<![\w.])                                   # not glued to a word or another number
    (?:(?P<pre>[NSEW])(?![A-Za-z])\s*)?          # hemisphere before: "N 48.85"
    (?P<sign>[-+])?\s?
    (?P<deg>""" + _NUM + r""")(?![\d])
    (?:\s?(?P<degsym>°|\b(?i:deg|degs|degree|degrees)\b))?
    (?:\s?(?P<min>""" + _NUM + r""")\s?(?:'|\b(?i:min)\b)
       (?:\s?(?P<sec>""" + _NUM + r""")\s?(?:"|\b(?i:sec)\b))?
    )?
    (?(pre)|(?:\s?(?P<post>(?i:north|south|east|west)|[NSEW])(?![A-Za-z]))?)  # after, unless before
    """,
    re.VERBOSE,
)


class _Token(NamedTuple):
    start: int
    end: int
    value: float  # signed decimal degrees (NaN if malformed: minutes/seconds >= 60)
    hemi: str  # "", "NS" or "EW"
    decimal: bool  # written with a decimal point, degree sign or minutes (looks like a coordinate)


def _to_float(s: str | None) -> float:
    if not s:
        return 0.0
    try:
        return float(s)
    except (ValueError, OverflowError):
        return math.nan


def _token(m: re.Match) -> _Token:
    deg, mins, secs = _to_float(m["deg"]), _to_float(m["min"]), _to_float(m["sec"])
    # a minutes field without a degree sign ("48 51'") is too ambiguous; seconds >= 60 invalid
    if m["min"] is not None and not m["degsym"]:
        value = math.nan
    elif mins >= 60 or secs >= 60:
        value = math.nan
    else:
        value = deg + mins / 60.0 + secs / 3600.0
    if m["sign"] == "-":
        value = -value
    pre, post = (m["pre"] or "").upper(), (m["post"] or "").upper()[:1]
    if pre and post and pre != post:
        value = math.nan  # "N 48 S": contradictory
    hemi_letter = pre or post
    hemi = ""
    if hemi_letter:
        hemi = "NS" if hemi_letter in "NS" else "EW"
        if hemi_letter in "SW":
            value = -abs(value)
        if m["sign"] == "-" and hemi_letter in "NE":
            value = math.nan  # "-48 N": contradictory
    if m.end() < len(m.string) and (m.string[m.end()].isalnum() or m.string[m.end()] == "_"):
        value = math.nan  # glued to what follows ("1e5", "12km", "1E5"): not a coordinate
    decimal = "." in m["deg"] or bool(m["degsym"]) or m["min"] is not None or bool(hemi)
    return _Token(m.start(), m.end(), value, hemi, decimal)


# --- 4: answers from tokens --------------------------------------------------------------

# A label right before a token: "Latitude: ", "**lat** = ", "\"latitude\": ", "lat is about ".
_FILLER = r"""[\s:=*_"'`~≈(\[{|]*(?:(?:is|of|at|approx\.?|approximately|about|around|roughly|≈)[\s:=*_"'`~≈(\[{|]*)*"""
_LAT_LABEL = re.compile(r"\b(?:lat|latitude)" + _FILLER + r"$", re.IGNORECASE)
_LON_LABEL = re.compile(r"\b(?:lon|lng|long|longitude)" + _FILLER + r"$", re.IGNORECASE)
_LABEL_WINDOW = 48  # characters of text before a token searched for its label

# What may sit between the two halves of a pair.
_PAIR_SEP = re.compile(r"""[\s"'`*_]*[,;/|&][\s"'`*_]*|\s+(?:and\s+)?|\s*,\s*and\s+""", re.IGNORECASE)
_SPACE_SEP = re.compile(r"\s+")


def _labelled(text: str, tokens: list[_Token]) -> LatLon | None:
    lat = lon = None
    for t in tokens:
        before = text[max(0, t.start - _LABEL_WINDOW): t.start]
        if _LAT_LABEL.search(before):
            lat = t
        elif _LON_LABEL.search(before):
            lon = t
    if lat is None or lon is None:
        return None
    if lat.hemi == "EW" or lon.hemi == "NS":
        return _INVALID
    return LatLon(lat.value, lon.value)


def _pairs(text: str, tokens: list[_Token], hemispheres: bool) -> LatLon | None:
    """The last adjacent token pair forming an answer. With `hemispheres`, both tokens carry
    N/S/E/W letters (one of each; either order). Without, neither does: latitude first."""
    for a, b in zip(tokens[-2::-1], tokens[::-1]):  # adjacent pairs, last first
        sep = text[a.end: b.start]
        if not _PAIR_SEP.fullmatch(sep):
            continue
        if hemispheres:
            if {a.hemi, b.hemi} == {"NS", "EW"}:
                return LatLon(a.value, b.value) if a.hemi == "NS" else LatLon(b.value, a.value)
        elif not a.hemi and not b.hemi and a.decimal and b.decimal:
            return LatLon(a.value, b.value)
        elif not a.hemi and not b.hemi and _SPACE_SEP.fullmatch(sep) is None and _bracketed(text, a, b):
            return LatLon(a.value, b.value)  # "(48, 2)": integers only when bracketed
    return None


def _bracketed(text: str, a: _Token, b: _Token) -> bool:
    before, after = text[:a.start].rstrip()[-1:], text[b.end:].lstrip()[:1]
    return (before, after) in {("(", ")"), ("[", "]"), ("{", "}")}


_INVALID = LatLon(math.nan, math.nan)


def _valid(p: LatLon) -> LatLon | None:
    lat, lon = p
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if abs(lat) > 90.0 or abs(lon) > 180.0:
        return None
    return LatLon(float(lat), float(lon))


def parse_coordinates(text) -> LatLon | None:
    """The guess in `text` as LatLon(lat, lon) in signed decimal degrees, or None when there
    is no readable, in-range answer. Never raises."""
    if not isinstance(text, str) or not text:
        return None
    text = _clean(text)
    tokens = [_token(m) for m in _TOKEN.finditer(text)]
    if not tokens:
        return None
    for find in (_labelled, lambda s, ts: _pairs(s, ts, True), lambda s, ts: _pairs(s, ts, False)):
        answer = find(text, tokens)
        if answer is not None:
            return _valid(answer)
    return None
