"""The model card's steps cell says how many of the exported run's steps trained nothing (RL
steps whose groups all had equal rewards), read from the run folder's metrics.jsonl."""

import json

from geospot.eval.card import _steps


def _metrics(run_dir, rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"time": 0.0, **r}) + "\n" for r in rows))


def test_steps_cell_counts_idle_steps_up_to_the_exported_step(tmp_path):
    _metrics(tmp_path / "rl", [{"step": 0, "eval/geoscore": 10.0}, {"step": 1, "datums": 0},
                               {"step": 2, "datums": 16}, {"step": 3, "datums": 0}, {"step": 4, "datums": 0}])
    assert _steps(tmp_path / "rl", 2) == ("2 (1 of them trained nothing: every group's rewards were equal, so GRPO "
                                          "had nothing to compare)")
    assert _steps(tmp_path / "rl", 4).startswith("4 (3 of them trained nothing")
    _metrics(tmp_path / "idle", [{"step": 0, "eval/geoscore": 10.0}, {"step": 1, "datums": 0},
                                 {"step": 2, "datums": 0}])
    assert _steps(tmp_path / "idle", 2).startswith("2 (none of them trained: every group's rewards were equal")


def test_steps_cell_is_the_step_alone_when_every_step_trained_or_nothing_is_recorded(tmp_path):
    _metrics(tmp_path / "sft", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
    assert _steps(tmp_path / "sft", 2) == "2"
    assert _steps(tmp_path / "nothing", 5) == "5"  # no metrics.jsonl
    assert _steps(None, 5) == "5"



def test_a_held_out_eval_line_at_a_step_does_not_hide_that_steps_training_line(tmp_path):
    """RL logs a step's training line, then its held-out eval's own line at the same step (always at
    the last, usually the exported one): a step's lines are one record."""
    _metrics(tmp_path / "rl", [{"step": 1, "datums": 0}, {"step": 2, "datums": 0}, {"step": 3, "datums": 16},
                               {"step": 3, "eval/geoscore": 5.0}])
    assert _steps(tmp_path / "rl", 3).startswith("3 (2 of them trained nothing")
    _metrics(tmp_path / "idle", [{"step": 1, "datums": 16}, {"step": 2, "datums": 0}, {"step": 2, "eval/n": 4}])
    assert _steps(tmp_path / "idle", 2).startswith("2 (1 of them trained nothing")


def test_a_training_eval_of_earlier_weights_says_so(tmp_path):
    """A checkpoint of step 200 with held-out evals every 125 steps: the card's row read "training
    eval, step 125" beside evals of other checkpoints hidden as "not these weights"."""
    from geospot.eval.card import _training_evals

    _metrics(tmp_path / "run", [{"step": 0, "eval/geoscore": 1.0}, {"step": 125, "eval/geoscore": 2.0},
                                {"step": 250, "eval/geoscore": 3.0}])
    assert list(_training_evals(tmp_path / "run", 200)) == [
        "training eval, step 0", "training eval, step 125 (earlier weights than these, step 200)"]
    assert list(_training_evals(tmp_path / "run", 250)) == ["training eval, step 0", "training eval, step 250"]
    _metrics(tmp_path / "lone", [{"step": 125, "eval/geoscore": 2.0}])  # no eval of the base model
    assert list(_training_evals(tmp_path / "lone", 200)) == [
        "training eval, step 125 (earlier weights than these, step 200)"]
