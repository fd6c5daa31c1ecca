"""The stream's options (StreamConfig) and their names: what a data spec may set inside its
parts besides each source's own options. Its own module so the spec parser (which needs the
names) and the stream (which needs the config) both import it and not each other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from geospot.config import ConfigError, option
from geospot.data.prep import PrepConfig


@dataclass(frozen=True)
class StreamConfig(PrepConfig):
    """The stream's options; the image preparation ones (max_side, square, max_pixels,
    min_side) are PrepConfig's, inherited so a data spec sets them flat like the rest."""

    repeat: bool | None = option(None, "loop over the data forever (default: on for train, off otherwise)")
    shuffle: bool | None = option(None, "shuffle shard order and use the shuffle buffer (default: on for train)")
    shuffle_buffer: int = option(1000, "records held by the shuffle buffer (0 disables it)")
    workers: int = option(2, "image preparation threads (0 = in the calling thread)")
    prefetch: int = option(16, "records prepared ahead of the consumer")
    val_frac: float = option(0.05, "share of ids (by hash) in the val split")
    test_frac: float = option(0.05, "share of ids (by hash) in the test split")
    max_skips_in_a_row: int = option(10_000, "unusable records in a row after which the stream stops with an error "
                                     "naming the reasons instead of searching on (0 = no limit)")

    def validate(self) -> None:
        if not (0 <= self.val_frac and 0 <= self.test_frac and self.val_frac + self.test_frac < 1):
            raise ConfigError("val_frac/test_frac: need 0 <= val_frac, test_frac and val_frac + test_frac < 1")
        if self.workers < 0 or self.prefetch < 1 or self.shuffle_buffer < 0 or self.max_skips_in_a_row < 0:
            raise ConfigError("workers >= 0, prefetch >= 1, shuffle_buffer >= 0, max_skips_in_a_row >= 0")
        if self.min_side < 1 or self.max_pixels < 1:
            raise ConfigError(f"min_side={self.min_side}, max_pixels={self.max_pixels}: both must be at least 1")
        if self.max_side != 0 and self.max_side < self.min_side:  # else every image shrinks below the minimum
            raise ConfigError(f"max_side={self.max_side}: use 0 (keep the size) or a side of at least "
                              f"min_side={self.min_side} px, e.g. 512")


STREAM_KEYS = frozenset(f.name for f in dataclasses.fields(StreamConfig))
