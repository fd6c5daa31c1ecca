"""The seed's entry point: `python -m geospot.sft model_name=... max_steps=50`.
Everything lives in geospot.train.sft; this module only keeps the old command working."""

from __future__ import annotations

import sys

from geospot.train.sft import SFTConfig, main, train  # noqa: F401  (re-exported for the seed's imports)

if __name__ == "__main__":  # through geospot's dispatcher: a closed pipe or a Ctrl-C as `geospot sft` answers them
    from geospot.cli import main as geospot_main

    sys.exit(geospot_main(["sft", *sys.argv[1:]]))
