"""The seed's entry point, kept: `python -m geospot.train_rl env_type=telescoping
load_checkpoint_path=runs/sft ...` is `geospot rl ...` (geospot.train.rl)."""

import sys

from geospot.train.rl import main

if __name__ == "__main__":
    sys.exit(main())
