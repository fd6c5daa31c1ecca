"""Training loops (sft.py, rl.py) and what they share: the run lifecycle (lifecycle.py), seeding and
the progress line (common.py) and learning-rate schedules (lr.py). Run folders and checkpoints
live in geospot.runs."""
