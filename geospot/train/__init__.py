"""Training loops (sft.py, rl.py) and what they share: the run lifecycle (lifecycle.py), resuming a
run (resume.py), the inputs checked before the model loads (inputs.py), a dead rank under torchrun
(rank_death.py), seeding and the progress line (common.py) and learning-rate schedules (lr.py). Run
folders and checkpoints live in geospot.runs."""
