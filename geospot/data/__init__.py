"""Data: every source of geotagged images as one stream of clean `Sample`s.

    open_stream(spec, split="train", seed=0, **opts) -> SampleStream
    load_samples(spec, split="val", n=None, **opts) -> list[Sample]
    SyntheticWorld(seed, n_regions, image_size, difficulty, ambiguity).geocoder

The spec grammar is documented in geospot/data/spec.py."""

from geospot.data.spec import SpecError, parse_spec, world_from_spec
from geospot.data.stream import SampleStream, StreamConfig, load_samples, open_stream, skip_reasons, split_of
from geospot.data.synthetic import GeoLabels, SyntheticWorld, cached_world
from geospot.data.types import Sample

__all__ = ["Sample", "SampleStream", "StreamConfig", "open_stream", "load_samples", "split_of", "skip_reasons",
           "SyntheticWorld", "cached_world", "GeoLabels", "world_from_spec", "parse_spec", "SpecError"]
