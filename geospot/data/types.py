"""The one sample type every source yields."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from geospot.config import ConfigError


@dataclass(frozen=True, eq=False)
class Sample:
    """A geotagged image. `lat`/`lon` are WGS84 degrees; `labels` may hold
    country / region / city / any source-specific strings; `id` is stable across runs
    (split assignment hashes it) and `source` names where it came from."""

    id: str
    image: Image.Image
    lat: float
    lon: float
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""


class SpecError(ValueError):
    """A data spec that cannot be understood; the message names the part and the fix."""


class DataError(ConfigError):
    """Data that cannot train anything (no usable record, an unreadable file layout); the
    message is one sentence naming the source, the counts by reason and what to do. A
    ConfigError: the `data` key is what needs fixing, and the commands print it as one line."""
