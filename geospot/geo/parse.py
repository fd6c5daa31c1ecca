"""Read a coordinate guess out of whatever a VLM wrote.

Real answers come in many shapes: `Latitude: 48.85\\nLongitude: 2.35` (what
`geospot.prompts.format_answer` writes and SFT teaches), `lat=48.85, lon=2.35`, JSON,
`(48.85, 2.35)`, `48.8566° N, 2.3522° E`, degrees-minutes-seconds `48°51'24"N 2°21'8"E`,
with unicode minus signs and primes, wrapped in markdown, after a `<think>` block, or
restated ("... actually, Latitude: 45 ...").

How it works, top to bottom:
0. an answer longer than MAX_CHARS (1024) is read from its end only, cut at a whitespace
   (models state the answer last; this keeps every input, however hostile, to a few ms);
1. drop `<think>…</think>` blocks (and an unterminated `<think>` tail: no answer yet), in
   one pass over the tags;
2. normalise look-alike characters (− → -, ′ → ', ″ → ", º → °);
3. find every coordinate *token* (a number, optionally with °, minutes, seconds and an
   N/S/E/W hemisphere before or after it);
4. build answers from tokens, in order of how explicit they are:
   labelled (`lat…: <token>` and `lon…: <token>`) > hemisphere pairs (`<N/S token> <E/W token>`)
   > plain pairs (`<token>, <token>`, latitude first);
   within a kind the LAST one wins, because models restate and correct themselves;
5. range-check: |lat| <= 90, |lon| <= 180, minutes/seconds < 60, else None.

Never a cut-off number: a number glued to more digits (`48.85.12`, `1e5`, `12km`) is not a
coordinate; a decimal comma (`Latitude: 48,85`) counts on a labelled answer when nothing
follows that could change it (`48,85,3`, `33,87 S` and `48,85°` give None). Linear time:
every regex matches in bounded steps per position and each pass over the text is one pass.

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

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)

_LOOKALIKES = str.maketrans({
    "\u2212": "-",  # minus sign
    "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-", "\ufe63": "-", "\uff0d": "-",
    "\u2032": "'", "\u2019": "'", "\u02b9": "'", "\u00b4": "'",  # prime, right quote, modifier prime, acute
    "\u2033": '"', "\u201d": '"', "\u02ba": '"',  # double prime, right double quote
    "\u00ba": "\u00b0", "\u02da": "\u00b0", "\u2218": "\u00b0",  # ordinal º, ring ˚, ring operator ∘ -> degree
    "\uff0c": ",", "\u00a0": " ", "\u202f": " ", "\u2009": " ",
})


def _drop_thinking(text: str) -> str:
    """One pass over the tags (a regex `<think>.*?</think>` is quadratic when tags do not
    close): each `<think>` ... first `</think>` block becomes a space; a `</think>` outside a
    block (its `<think>` was in the prompt) drops everything before it; a `<think>` that never
    closes (generation stopped while thinking) drops everything after it."""
    kept: list[str] = []
    pos, open_at = 0, -1
    for m in _THINK_TAG.finditer(text):
        if m.group(1):  # </think>
            if open_at >= 0:  # closes a block
                kept.append(" ")
                open_at = -1
            else:  # stray
                kept.clear()
            pos = m.end()
        elif open_at < 0:  # <think> (one inside a block is part of the block)
            kept.append(text[pos:m.start()])
            open_at = m.start()
    if open_at < 0:
        kept.append(text[pos:])
    return "".join(kept)


def _clean(text: str) -> str:
    if len(text) > MAX_CHARS:
        text = _last_chars(text, MAX_CHARS)
    return _drop_thinking(text).translate(_LOOKALIKES).replace("''", '"')


# Only the end of a very long answer is read: models state or restate the answer last, and
# the parse stays well inside 10 ms for any input. The cut is moved to a whitespace so the
# first number read is whole, never the tail of a longer one.
MAX_CHARS = 1024


def _last_chars(text: str, n: int) -> str:
    start = len(text) - n
    if text[start - 1].isspace():
        return text[start:]
    m = re.search(r"\s", text[start:start + n])
    return text[start + m.end():] if m else ""


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
    comma: float | None  # "48,85": the value read with a decimal comma (NaN: "48,85,3" is ambiguous)


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
    text, end = m.string, m.end()
    nxt = text[end:end + 2]
    if nxt[:1].isalnum() or nxt[:1] == "_" or (nxt[:1] == "." and nxt[1:].isdigit()):
        value = math.nan  # glued to what follows ("1e5", "12km", "48.85.12"): never a cut-off number
    comma = None
    if nxt[:1] == "," and nxt[1:].isdigit() and "." not in m["deg"] and not (m["degsym"] or m["min"] or m["post"]):
        frac = _DIGITS.match(text, end + 1)
        # "48,85" is a decimal comma only when nothing that changes the number follows: not a
        # third part ("48,85,3"), a hemisphere ("33,87 S"), a degree or minute sign.
        after = _AFTER_COMMA.match(text, frac.end())
        third = text[frac.end():frac.end() + 1] in ",." and text[frac.end() + 1:frac.end() + 2].isdigit()
        ambiguous = math.isnan(value) or third or not (after.end() == len(text) or text[after.end()] in _ENDS
                                              or _LABEL.match(text, after.end()))
        comma = math.nan if ambiguous else math.copysign(float(f"{m['deg']}.{frac.group()}"), value or 1.0)
        if m["sign"] == "-" and value == 0:
            comma = -abs(comma)
    decimal = "." in m["deg"] or bool(m["degsym"]) or m["min"] is not None or bool(hemi)
    return _Token(m.start(), end, value, hemi, decimal, comma)


_DIGITS = re.compile(r"\d+")
_AFTER_COMMA = re.compile(r"[ \t]*")
_ENDS = set("\n\r,;|)]}*`\"")


# --- 4: answers from tokens --------------------------------------------------------------

# A label right before a token: "Latitude: ", "**lat** = ", "\"latitude\": ", "lat is about ".
_FILLER = r"""[\s:=*_"'`~≈(\[{|]*(?:(?:is|of|at|approximately|approx\.?|about|around|roughly|≈)[\s:=*_"'`~≈(\[{|]*)*"""
_LABEL = re.compile(r"\b(?:(latitude|lat)|(?:longitude|long|lng|lon))" + _FILLER, re.IGNORECASE)
_LABEL_WINDOW = 48  # characters of text before a token searched for its label

# What may sit between the two halves of a pair.
_PAIR_SEP = re.compile(r"""[\s"'`*_]*[,;/|&][\s"'`*_]*|\s+(?:and\s+)?|\s*,\s*and\s+""", re.IGNORECASE)
_SPACE_SEP = re.compile(r"\s+")


def _labelled(text: str, tokens: list[_Token]) -> LatLon | None:
    # One pass over the labels (not a search before every token): where each label's filler
    # ends, and so where a number it labels must start.
    labels = {m.end(): (m.group(1) is not None, m.start()) for m in _LABEL.finditer(text)}
    lat = lon = None
    for t in tokens:
        hit = labels.get(t.start)
        if hit is None and text[t.start].isspace():  # a token may start with one space; the filler took it
            hit = labels.get(t.start + 1)
        if hit is None or t.start - hit[1] > _LABEL_WINDOW:
            continue
        if hit[0]:
            lat = t
        else:
            lon = t
    if lat is None or lon is None:
        return None
    if lat.hemi == "EW" or lon.hemi == "NS":
        return _INVALID
    # A decimal comma ("Latitude: 48,85") is read as one when both labels are there to say
    # which number is which; "48,85,3" (or a comma on only one side that is ambiguous) is None.
    return LatLon(lat.value if lat.comma is None else lat.comma, lon.value if lon.comma is None else lon.comma)


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
    i, j = a.start - 1, b.end  # walk over the whitespace around the pair (each run at most twice)
    while i >= 0 and text[i].isspace():
        i -= 1
    while j < len(text) and text[j].isspace():
        j += 1
    before, after = text[i] if i >= 0 else "", text[j] if j < len(text) else ""
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
    tokens = [_token(m) for m in _TOKEN.finditer(text)]  # linear: each regex here matches in bounded steps
    if not tokens:
        return None
    for find in (_labelled, lambda s, ts: _pairs(s, ts, True), lambda s, ts: _pairs(s, ts, False)):
        answer = find(text, tokens)
        if answer is not None:
            return _valid(answer)
    return None
