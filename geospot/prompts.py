"""The prompt texts and the answer format. The only module that knows them: SFT builds
its targets with `format_answer`, the envs ask with these prompts, and the parser in
`geospot.geo.parse` reads (among many other shapes) what `format_answer` writes."""

from __future__ import annotations

SINGLE_TURN_PROMPT = (
    "Where was this photo taken? Answer with coordinates.\n"
    "Latitude: <degrees>\nLongitude: <degrees>"
)

# Telescoping: one policy, three turns, each answers coordinates and sees its last guess.
TELESCOPING_PROMPTS: tuple[str, ...] = (
    "Where was this photo taken? Give a coarse guess (continent scale).\n"
    "Latitude: <degrees>\nLongitude: <degrees>",
    "Your previous guess was {prev}. Refine it (country / region scale).\n"
    "Latitude: <degrees>\nLongitude: <degrees>",
    "Your previous guess was {prev}. Give your final answer (city scale).\n"
    "Latitude: <degrees>\nLongitude: <degrees>",
)

# The seed showed the previous guess with 1 decimal after the coarse turn, 2 after refine.
PREVIOUS_GUESS_DECIMALS: tuple[int, ...] = (1, 2, 2)


# Hierarchical: one turn per label, coarse -> fine, then the coordinates. Later turns are told
# what is known so far ("This photo was taken in Ile-de-France, France."): the true labels
# (teacher forcing) or the policy's own earlier answers.
LABEL_QUESTIONS: dict[str, str] = {
    "country": "Which country was this photo taken in? Answer with its name.\nCountry: <name>",
    "region": "Which region (state / province) was it taken in? Answer with its name.\nRegion: <name>",
    "city": "Which city or town is it in or nearest to? Answer with its name.\nCity: <name>",
    "coords": "Where exactly was it taken? Answer with coordinates.\nLatitude: <degrees>\nLongitude: <degrees>",
}
FIRST_LABEL_LEAD = "Look at this photo."


def hierarchical_prompt(field: str, known: tuple[str, ...] = ()) -> str:
    """The user text asking for `field`; `known` are the places told so far, coarse first."""
    lead = f"This photo was taken in {', '.join(reversed(known))}." if known else FIRST_LABEL_LEAD
    return f"{lead}\n{LABEL_QUESTIONS[field]}"


def format_label(field: str, label: str) -> str:
    """A label answer, e.g. `Country: France` (the parser also takes a bare `France`)."""
    return f"{field.capitalize()}: {label}"


# Geohash curriculum: three turns at finer geohash precision (2 / 4 / 6 characters, ~1250 /
# 40 / 1 km cells). The answer is coordinates (the original project's form, graded by their
# geohash) or, with `geohash_answer=geohash`, a geohash of the turn's length.
GEOHASH_PROMPTS: tuple[str, ...] = (
    "Where was this photo taken? Give an approximate guess (continent / country scale).\n"
    "Latitude: <degrees>\nLongitude: <degrees>",
    "Your previous guess was {prev}. Refine it (region scale, ~40 km).\nLatitude: <degrees>\nLongitude: <degrees>",
    "Your previous guess was {prev}. Give your final, most precise coordinates (~1 km).\n"
    "Latitude: <degrees>\nLongitude: <degrees>",
)
GEOHASH_CELL_PROMPTS: tuple[str, ...] = (
    "Where was this photo taken? Answer with a geohash of {chars} characters.\nGeohash: <{chars} characters>",
    "Your previous answer was {prev}. Refine it to a geohash of {chars} characters.\nGeohash: <{chars} characters>",
    "Your previous answer was {prev}. Give your final geohash of {chars} characters.\nGeohash: <{chars} characters>",
)


def format_geohash(geohash: str) -> str:
    return f"Geohash: {geohash}"


def format_answer(lat: float, lon: float, decimals: int = 2) -> str:
    """The assistant's answer, e.g. `Latitude: 48.86\\nLongitude: 2.35`."""
    return f"Latitude: {lat:.{decimals}f}\nLongitude: {lon:.{decimals}f}"


def format_previous_guess(lat: float, lon: float, decimals: int) -> str:
    return f"({lat:.{decimals}f}, {lon:.{decimals}f})"


def user_message(image, text: str) -> dict:
    """A chat user turn; `image` may be None for text-only follow-up turns."""
    content = ([{"type": "image", "image": image}] if image is not None else []) + [{"type": "text", "text": text}]
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# Reasoning (`reasoning=true`): think, then answer — the format of GLOBE / GRE Suite / Geo-R.
# The instruction is appended to every coordinate prompt (single and each telescoping turn),
# so a turn's answer reads `<think>…</think>\nLatitude: …\nLongitude: …`; the parser drops the
# think block and reads the answer after it. No braces here: telescoping prompts are
# `.format`ted after the instruction is appended.
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REASONING_INSTRUCTION = (
    "First reason briefly about the clues (climate, vegetation, roads, signs, architecture) "
    f"inside {THINK_OPEN} {THINK_CLOSE}, then give the answer in the format above."
)


def reasoning_prompt(prompt: str) -> str:
    """A coordinate prompt that asks for a short reasoning before the answer."""
    return f"{prompt}\n{REASONING_INSTRUCTION}"


def format_reasoned_answer(reasoning: str, answer: str) -> str:
    """`<think>reasoning</think>\\nanswer`: what a reasoning turn writes (and SFT teaches)."""
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}\n{answer}"


def templated_rationale(labels: dict | None, lat: float, lon: float) -> str:
    """A rationale for SFT targets built from the sample's own labels (OSV-5M columns, the
    synthetic world's names), else its hemisphere. It names places, never numbers: the
    coordinates are stated once, after the reasoning. On a tiny model any reasoning is
    nonsense; this teaches the think-then-answer format, not geography."""
    labels = labels or {}
    names = [str(labels[k]).strip() for k in ("city", "sub-region", "region", "country") if labels.get(k)]
    names = [n for i, n in enumerate(names) if n and n not in names[:i]]
    if names:
        return f"The scene looks like {', '.join(names)}, so I place it there."
    ns = "northern" if lat >= 0 else "southern"
    ew = "east" if lon >= 0 else "west"
    return f"The light and vegetation suggest the {ns} hemisphere, {ew} of Greenwich."


def with_reasoning(messages: list[dict], rationale: str) -> list[dict]:
    """A coordinate chat turned think-then-answer: every user turn's text asks for reasoning,
    every assistant turn is `<think>rationale</think>\\n<its answer>` (SFT targets)."""
    def text_parts(m: dict, edit) -> dict:
        return {**m, "content": [{**p, "text": edit(p["text"])} if p.get("type") == "text" else p
                                 for p in m["content"]]}

    return [text_parts(m, reasoning_prompt) if m["role"] == "user"
            else text_parts(m, lambda a: format_reasoned_answer(rationale, a)) for m in messages]
