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
