"""GRPO end to end on a tiny offline model: the seed's command from an SFT checkpoint, and
SIGKILL + resume ending with the same weights as an uninterrupted run."""

import subprocess
import sys
from pathlib import Path

import pytest
from resume_helpers import assert_same_final_tensors, kill_inside_step
from resume_helpers import subprocess_env as _env
from warm_start import warm_start

from geospot.runs.checkpoint import latest_checkpoint
from geospot.runs.folder import read_config, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
DATA = "synthetic:n=256,size=56,seed=0"


def _rl(*args):
    return [sys.executable, "-m", "geospot.train_rl", *map(str, args)]


def _run_rl(*args) -> subprocess.CompletedProcess:
    """`python -m geospot.train_rl ARGS` to the end; fails the test with its stderr if it failed."""
    proc = subprocess.run(_rl(*args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A short SFT run (full fine-tuning) the RL runs below start from (warm_start.py)."""
    return warm_start(tmp_path_factory.mktemp("sft") / "run", DATA, max_steps=40)


def test_seed_command_telescoping_from_sft_checkpoint(sft_run, tmp_path):
    log = tmp_path / "rl"
    # no data=: RL continues on the SFT run's data (checked below in config.json)
    _run_rl("env_type=telescoping", f"load_checkpoint_path={sft_run}", f"log_path={log}", "max_steps=2", "batch_size=2",
            "group_size=2", "eval_n=2", "eval_every=2", "max_tokens=20")
    cfg = read_config(log)
    assert cfg["kind"] == "rl" and cfg["config"]["env_type"] == "telescoping"
    assert cfg["config"]["data"] == DATA
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for key in (
        "reward_mean",
        "median_km",
        "acc_25km",
        "acc_200km",
        "acc_750km",
        "format_rate",
        "dropped_groups",
        "turn_1_median_km",
        "tokens_per_s",
        "time_sample_s",
        "time_train_s",
    ):
        assert key in rows[0], key
    assert "tau_km" not in rows[0], (
        "telescoping's default reward is the GeoScore: tau plays no part, so it is not logged"
    )
    assert any("eval/geoscore" in r for r in read_jsonl(log / "metrics.jsonl"))
    assert latest_checkpoint(log).name == "2"
    # the dashboard's store got every image's rollouts
    from geospot.runs.store import RunReader

    shown = RunReader(log).images(1, split="train")
    assert len(shown) == 2 and all(len(im["rollouts"]) == 2 for im in shown)


def test_a_reward_of_the_users_own_module_grades_the_rollouts(sft_run, tmp_path):
    """reward=module:function: geospot calls the user's function with each parsed guess's distance,
    the guess and the truth; an unparsed answer still pays the format penalty. A constant 0.3 makes
    the step's reward_mean 0.3 x format_rate - 0.1 x (1 - format_rate) exactly."""
    import json
    import os

    from geospot.geo import haversine_km

    (tmp_path / "my_rewards.py").write_text(
        "import json, os\n"
        "def constant(distance_km, guess, truth):\n"
        "    with open(os.environ['CALLS'], 'a') as f:\n"
        "        f.write(json.dumps([distance_km, guess, truth]) + '\\n')\n"
        "    return 0.3\n")
    calls, log = tmp_path / "calls.jsonl", tmp_path / "rl"
    env = {**_env(), "CALLS": str(calls), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run(_rl(f"load_checkpoint_path={sft_run}", f"log_path={log}", "max_steps=2", "batch_size=2",
                              "group_size=4", "eval_n=0", "max_tokens=20", "reward=my_rewards:constant"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert len(seen) == round(sum(r["format_rate"] for r in rows) * 2 * 4) > 0  # one call per parsed rollout
    for d, guess, truth in seen:
        assert abs(haversine_km(*guess, *truth) - d) < 1e-6 * max(d, 1.0)
    for r in rows:
        assert r["reward_mean"] == pytest.approx(0.3 * r["format_rate"] - 0.1 * (1 - r["format_rate"]), abs=1e-9)
    assert "tau_km" not in rows[0]  # the function has no tau
    bad = subprocess.run(_rl(f"load_checkpoint_path={sft_run}", f"log_path={tmp_path / 'no'}",
                             "reward=my_rewards:gone"), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "reward='my_rewards:gone' names nothing" in bad.stderr


def test_kl_reference_is_the_sft_policy_not_the_base(sft_run, tmp_path):
    """The sampler IS the starting policy at step 1, so its KL to the reference is ~0; measured
    against the untrained base model it would be nats per token."""
    from geospot.train.rl import RLConfig, run

    cfg = RLConfig(
        model_name="tiny:qwen2_5_vl:tiny",
        load_checkpoint_path=str(sft_run),
        data=DATA,
        kl_coef=0.1,
        max_steps=1,
        batch_size=2,
        group_size=2,
        eval_n=0,
        max_tokens=20,
        log_path=str(tmp_path / "rl"),
    )
    metrics = run(cfg).metrics
    assert abs(metrics["kl"]) < 1e-3, metrics["kl"]


def test_sigkill_then_resume_matches_uninterrupted_run(sft_run, tmp_path):
    common = [
        f"load_checkpoint_path={sft_run}",
        f"data={DATA}",
        "env_type=telescoping",
        "max_steps=6",
        "save_every=2",
        "batch_size=4",
        "group_size=4",
        "learning_rate=1e-4",
        "eval_every=0",
        "max_tokens=20",
        "reward=kernel",
        "tau_schedule=follow_error",
        "tau_start_km=10000",
        "seed=3",
    ]
    _run_rl(*common, f"log_path={tmp_path / 'full'}")

    # Kill mid-step: once step 3 is logged (checkpoint 2 exists), the loop is inside step 4.
    log = tmp_path / "killed"
    killed_at = kill_inside_step(_rl(*common, f"log_path={log}"), log, ROOT)
    assert killed_at and max(killed_at) < 6, killed_at

    _run_rl(*common, f"log_path={log}", "behavior_if_log_dir_exists=resume")

    assert_same_final_tensors(tmp_path / "full", log, 6)
    # metrics read like one run: steps 1..6 once each, same rewards and taus
    ra = [
        (r["step"], r["reward_mean"], r["tau_km"])
        for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")
        if "reward_mean" in r
    ]
    trained = [r["datums"] for r in read_jsonl(tmp_path / "full" / "metrics.jsonl") if "datums" in r]
    assert sum(trained) > 0, "no step had a group with reward spread: the test would not test training"
    rb = [(r["step"], r["reward_mean"], r["tau_km"]) for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert ra == rb and [s for s, *_ in ra] == list(range(1, 7))
