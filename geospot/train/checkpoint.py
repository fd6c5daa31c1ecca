"""Moved to geospot.runs.checkpoint (eval reads checkpoints without importing train); these names
stay importable here for benchmarks/ until its scripts import them from there."""

from geospot.runs.checkpoint import (
           latest_checkpoint,
           list_checkpoints,
           load_checkpoint,
           read_checkpoint,
           resolve_checkpoint,
           save_checkpoint,
)

__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "read_checkpoint", "resolve_checkpoint",
           "save_checkpoint"]
