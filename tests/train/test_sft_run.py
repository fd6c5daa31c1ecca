"""SFT end to end on a tiny offline model: the seed's command, and SIGKILL + resume
ending with the same weights as an uninterrupted run."""

import subprocess
import sys
from pathlib import Path

import pytest
from resume_helpers import assert_same_final_tensors, kill_inside_step
from resume_helpers import subprocess_env as _env

from geospot.runs.checkpoint import latest_checkpoint
from geospot.runs.folder import read_config, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
DATA = "synthetic:n=256,size=56,seed=0"


def _sft(*args):
    return [sys.executable, "-m", "geospot.sft", *map(str, args)]


@pytest.fixture(scope="module")
def tiny_folder():
    from geospot.models.tiny import build_tiny_model

    return build_tiny_model("qwen2_5_vl", "tiny")


def test_seed_command_with_local_model_folder(tiny_folder, tmp_path, capsys):
    log = tmp_path / "run"
    proc = subprocess.run(
        _sft(f"model_name={tiny_folder}", "max_steps=2", f"data={DATA}", f"log_path={log}",
             "batch_size=2", "eval_n=4", "eval_every=0", "lora_rank=8"),
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_config(log)["config"]["model_name"] == str(tiny_folder)
    steps = [r["step"] for r in read_jsonl(log / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2]
    assert latest_checkpoint(log).name == "2"
    # the untrained and the final eval went through the metrics table
    assert any("eval/median_km" in r for r in read_jsonl(log / "metrics.jsonl"))
    # a second run into the same folder without a terminal refuses (before any model load)
    # instead of prompting
    from geospot.train import sft

    assert sft.main([f"model_name={tiny_folder}", "max_steps=2", f"data={DATA}", f"log_path={log}"]) == 2
    assert "behavior_if_log_dir_exists=resume" in capsys.readouterr().err


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_folder, tmp_path):
    common = [f"model_name={tiny_folder}", f"data={DATA}", "max_steps=8", "save_every=2", "keep_checkpoints=0",
              "batch_size=4", "grad_accum=2", "lora_rank=0", "learning_rate=1e-3", "lr_schedule=cosine",
              "warmup_steps=2", "eval_n=0", "prompt_style=both", "seed=3"]
    # The uninterrupted run goes alongside the one we kill (wall time on a shared CPU).
    full = subprocess.Popen(_sft(*common, f"log_path={tmp_path / 'full'}"), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    # Kill mid-step: after checkpoint 2 exists and step 3 has been logged, i.e. while the
    # loop is inside step 4 with a step of work not in any checkpoint.
    log = tmp_path / "killed"
    killed_at = kill_inside_step(_sft(*common, f"log_path={log}"), log, ROOT)
    assert killed_at and max(killed_at) < 8, killed_at

    full_err = full.communicate(timeout=300)[1]
    assert full.returncode == 0, full_err[-3000:]
    resumed = subprocess.run(_sft(*common, f"log_path={log}", "behavior_if_log_dir_exists=resume"), cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from step {max(killed_at)}" in resumed.stderr

    assert_same_final_tensors(tmp_path / "full", log, 8)
    # metrics read like one run: steps 1..8 once each, same losses
    la = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    lb = [(r["step"], r["loss"]) for r in read_jsonl(log / "metrics.jsonl") if "loss" in r]
    assert la == lb and [s for s, _ in la] == list(range(1, 9))


def test_grad_accum_gives_the_same_loss_as_one_batch(tiny_folder, tmp_path):
    """Every micro-batch is normalised by the whole batch's token count, so splitting a
    batch changes memory use, not the loss (step 1) or the update (step 2's loss)."""
    import io

    from geospot.train.sft import SFTConfig, train

    losses = {}
    for accum in (1, 4):
        cfg = SFTConfig(model_name=str(tiny_folder), data=DATA, max_steps=2, batch_size=8, grad_accum=accum,
                        lora_rank=0, learning_rate=1e-3, lr_schedule="constant", eval_n=0, save_every=0,
                        prompt_style="both", log_path=str(tmp_path / f"a{accum}"), behavior_if_log_dir_exists="raise")
        train(cfg, stderr=io.StringIO())
        losses[accum] = [r["loss"] for r in read_jsonl(tmp_path / f"a{accum}" / "metrics.jsonl") if "loss" in r]
    assert losses[1][0] == pytest.approx(losses[4][0], rel=1e-6)
    assert losses[1][1] == pytest.approx(losses[4][1], rel=1e-3)
    assert losses[1][1] < losses[1][0]


def test_an_env_runs_held_out_numbers_are_printed_with_their_step(tiny_folder, tmp_path):
    """A hierarchical SFT run's label accuracy was only in metrics.jsonl: it is printed under the
    eval table, naming the step it belongs to."""
    import io

    from geospot.train.sft import SFTConfig, train

    err = io.StringIO()
    train(SFTConfig(model_name=str(tiny_folder), data=DATA, max_steps=1, batch_size=2, lora_rank=0, eval_n=2,
                    eval_every=1, eval_at_start=False, save_every=0, prompt_style="hierarchical",
                    log_path=str(tmp_path / "h"), behavior_if_log_dir_exists="raise"), stderr=err)
    assert "step 1: the model's own label answers (its label turns" in err.getvalue(), err.getvalue()


@pytest.mark.parametrize("sig, how, code", [("SIGTERM", "SIGTERM", 143), ("SIGINT", "Ctrl-C", 130),
                                           ("SIGHUP", "SIGHUP", 143)])  # SIGHUP: the terminal closed
def test_a_stop_saves_the_step_it_interrupts(tiny_folder, tmp_path, sig, how, code):
    """`timeout`, `kill`, a scheduler's stop (SIGTERM) or Ctrl-C in one process: the step being trained
    is finished and saved, so nothing trained is lost (save_every here would never have saved), the
    run is marked stopped and says how to resume (exit 128 + the signal)."""
    import signal
    import time

    from geospot.runs.folder import read_jsonl
    from geospot.runs.store import RunReader

    log = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "geospot", "sft", f"model_name={tiny_folder}", "data=synthetic:n=64,size=28,seed=0",
         "max_steps=100000", "save_every=100000", "eval_n=0", "batch_size=2", f"log_path={log}"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.time() + 240
    while (not any(r.get("step", 0) >= 3 for r in read_jsonl(log / "metrics.jsonl")) and proc.poll() is None
           and time.time() < deadline):
        time.sleep(0.2)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    last = max(r["step"] for r in read_jsonl(log / "metrics.jsonl"))
    assert last >= 3 and latest_checkpoint(log).name == str(last)  # the step it was in, saved
    assert f"geospot sft: {how}: stopping once this step is trained and saved" in err
    assert f"geospot sft: stopped ({how}); the last checkpoint is step {last}" in err and "Traceback" not in err
    assert err.rstrip().endswith("behavior_if_log_dir_exists=resume")
    assert RunReader(log).status()["stored"] == "stopped"  # not "running" or "failed"
