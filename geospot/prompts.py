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
