"""Training loops (sft.py, rl.py) and what they share: the run folder and progress line
(common.py), checkpoint/resume (checkpoint.py) and learning-rate schedules (lr.py)."""
