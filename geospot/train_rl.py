"""The seed's entry point, kept: `python -m geospot.train_rl env_type=telescoping
load_checkpoint_path=runs/sft ...` is `geospot rl ...` (geospot.train.rl)."""

import sys

from geospot.train.rl import main  # noqa: F401  (re-exported for the seed's imports)

if __name__ == "__main__":  # through geospot's dispatcher: a closed pipe or a Ctrl-C as `geospot rl` answers them
    from geospot.cli import main as geospot_main

    sys.exit(geospot_main(["rl", *sys.argv[1:]]))
