"""Data parallelism under torchrun (2 gloo processes on CPU) ends where one process ends: same
seed, same global batch, same weights (fp32, max abs diff <= 1e-5). Kept to 2 short steps each:
the CPU is shared."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from dist_helpers import ROOT, descendants, failure_text, kill_job_inside_step, run_both, torchrun, weight_diff
from resume_helpers import assert_same_final_tensors, saved_tensors, subprocess_env
from warm_start import warm_start

from geospot.distributed import Dist
from geospot.runs.checkpoint import latest_checkpoint
from geospot.runs.folder import read_jsonl

TOL = 1e-5
TINY = "tiny:qwen2_5_vl:tiny"
DATA = "synthetic:n=64,size=56,seed=0"


def test_shares_are_contiguous_blocks_in_rank_order():
    # 5 items over 2 ranks: [0, 1] and [2, 3, 4]; 1 item over 2 ranks: rank 0 gets none
    assert [list(Dist(r, 2).share(5)) for r in range(2)] == [[0, 1], [2, 3, 4]]
    assert [list(Dist(r, 2).share(1)) for r in range(2)] == [[], [0]]
    assert [list(Dist(r, 3).share(7)) for r in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]
    assert list(Dist().share(4)) == [0, 1, 2, 3]


def test_one_process_collectives_return_their_input():
    d = Dist()
    assert not d.active and d.is_main
    assert d.sum({"a": 1.5, "b": 2}) == {"a": 1.5, "b": 2}
    assert d.gather("x") == ["x"] and d.broadcast(7) == 7 and d.max(3.0) == 3.0


def _losses(folder):
    return [(r["step"], r["loss"]) for r in read_jsonl(folder / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("lora_rank,reshard", [(4, "off"), (0, "off"), (0, "on")],
                         ids=["lora-ddp", "full-fsdp2", "full-fsdp2-resharded"])
def test_sft_two_processes_equal_one(tmp_path, lora_rank, reshard):
    # 3 images over 2 ranks (1 + 2), grad_accum=3: one backward pass on rank 0, two on rank 1
    # (vs 3 for one process), and one gradient reduction per step
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=2", "batch_size=3", "grad_accum=3", "eval_n=0",
            f"lora_rank={lora_rank}", "learning_rate=1e-3", "seed=1", "prompt_style=both", f"fsdp_reshard={reshard}"]
    one, two = run_both("geospot.sft", args, tmp_path)
    diff, size = weight_diff(one, two)
    assert diff <= TOL, f"2 processes differ from 1 by {diff}"
    if lora_rank:
        assert size > 1e-3  # the weights moved (LoRA B starts at 0): equality is not of untouched weights
        assert "broadcast_buffers" not in (tmp_path / "two.log").read_text()  # no deprecation warning per rank
    la, lb = _losses(one), _losses(two)  # rank 0 alone wrote the metrics: each step once
    assert [s for s, _ in lb] == [1, 2] and all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(la, lb))
    assert not list(two.glob("**/*rank*"))
    said = (tmp_path / "two.log").read_text()
    assert "torchrun: 2 processes, each with its share of every batch of 3 images\n" in said
    assert [json.loads((f / "config.json").read_text())["processes"] for f in (one, two)] == [1, 2]


def test_bf16_full_fine_tuning_keeps_fp32_master_shards_and_saves_them(tmp_path):
    # FSDP2 over a bf16 model: each rank's optimizer steps fp32 copies of its shards, and the
    # checkpoint gathers them whole in fp32 (resume is exact); the one-process run does the same
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=2", "batch_size=2", "eval_n=0", "lora_rank=0",
            "dtype=bfloat16", "learning_rate=1e-5", "seed=1", "prompt_style=single"]
    one, two = run_both("geospot.sft", args, tmp_path)
    for run in (one, two):
        saved = {k: v for k, v in saved_tensors(latest_checkpoint(run) / "engine").items()
                 if k.startswith("trainable")}
        assert saved and all(v.dtype == torch.float32 for v in saved.values())
    diff, _ = weight_diff(one, two)
    assert diff <= 2e-5, f"2 processes differ from 1 by {diff} (2 steps of lr 1e-5)"


@pytest.fixture(scope="module")
def warm_model(tmp_path_factory):
    """A tiny model SFT-trained (full fine-tuning, as tests/train/test_rl_run.py's warm start) and
    exported as a model folder: its sampled answers parse often enough that GRPO groups have
    reward spread, so the RL steps below really train (a LoRA adapter goes on top)."""
    from geospot.engines.config import EngineConfig
    from geospot.engines.local import LocalEngine
    from geospot.runs.checkpoint import read_checkpoint, resolve_checkpoint

    log = warm_start(tmp_path_factory.mktemp("sft") / "run", "synthetic:n=256,size=56,seed=0", max_steps=40)
    engine = LocalEngine(EngineConfig(model_name=TINY, lora_rank=0, device="cpu"))
    engine.load_state(read_checkpoint(resolve_checkpoint(log)).engine_path, with_optimizer=False)
    return engine.export(str(log.parent / "model"))


# the warm model seldom formats a telescoping answer at temperature 1: a seed whose groups differ
@pytest.mark.parametrize("env_type,seed", [("single", 1), ("telescoping", 5)])
def test_rl_two_processes_equal_one(warm_model, tmp_path, env_type, seed):
    # 3 groups over 2 ranks (1 + 2): a rank may have no datums at a step (its groups constant)
    args = [f"model_name={warm_model}", f"data={DATA}", "max_steps=3", "batch_size=3", "group_size=4", "eval_n=0",
            "lora_rank=4", "learning_rate=1e-3", f"seed={seed}", "max_tokens=20", f"env_type={env_type}",
            "reward=kernel", "tau_schedule=follow_error", "tau_window=2", "tau_start_km=10000"]
    # the reference is torchrun with ONE process: a torchrun job draws each group from its own seed
    # (any world size); a plain `python -m` run keeps its one generator per sampling call
    one, two = run_both("geospot.train_rl", args, tmp_path, one_under_torchrun=True)
    rows_one = [r for r in read_jsonl(one / "metrics.jsonl") if "reward_mean" in r]
    rows_two = [r for r in read_jsonl(two / "metrics.jsonl") if "reward_mean" in r]
    assert sum(r["datums"] for r in rows_one) > 0, "no step trained: the test would compare untouched weights"
    # the same rollouts (each group samples from its own seed) and the same tau (all ranks' distances)
    for key in ("reward_mean", "format_rate", "tau_km", "datums", "sampled_tokens"):
        assert [r.get(key) for r in rows_one] == pytest.approx([r.get(key) for r in rows_two], abs=1e-6), key
    diff, _ = weight_diff(one, two)
    assert diff <= TOL, f"2 processes differ from 1 by {diff}"


def test_rl_full_ft_fsdp2_resharded_two_processes_equal_one(warm_model, tmp_path):
    """Full fine-tuning with FSDP2 resharding: every forward gathers its layers from both ranks, so
    the ranks must run the same number of forwards although rank 0 has 1 group and rank 1 has 2,
    and their rollouts stop at different lengths (the lockstep fillers); weights equal 1 process."""
    args = [f"model_name={warm_model}", f"data={DATA}", "max_steps=3", "batch_size=3", "group_size=4",
            "lora_rank=0", "fsdp_reshard=on", "learning_rate=1e-4", "seed=1", "max_tokens=20", "env_type=single",
            "reward=kernel", "tau_schedule=follow_error", "tau_window=2", "tau_start_km=10000",
            # a held-out eval of 3 images: shares of 1 and 2, padded to equal sample calls
            "eval_n=3", "eval_data=synthetic:n=256,size=56,seed=0", "eval_every=3", "eval_at_start=false"]
    one, two = run_both("geospot.train_rl", args, tmp_path, one_under_torchrun=True)
    rows_one = [r for r in read_jsonl(one / "metrics.jsonl") if "reward_mean" in r]
    rows_two = [r for r in read_jsonl(two / "metrics.jsonl") if "reward_mean" in r]
    assert sum(r["datums"] for r in rows_one) > 0, "no step trained: the test would compare untouched weights"
    evals = [[{k: v for k, v in r.items() if k.startswith("eval/") and v is not None}
              for r in read_jsonl(f / "metrics.jsonl") if "eval/n" in r] for f in (one, two)]
    assert len(evals[0]) == 1 and evals[0][0]["eval/n"] == evals[1][0]["eval/n"] == 3
    assert evals[0][0] == pytest.approx(evals[1][0], rel=1e-6)
    # rollouts stopped early (uneven lengths): 3 groups x 4 rollouts x 20 tokens is the most
    assert all(r["sampled_tokens"] < 3 * 4 * 20 for r in rows_two), [r["sampled_tokens"] for r in rows_two]
    for key in ("reward_mean", "datums", "sampled_tokens"):
        assert [r.get(key) for r in rows_one] == pytest.approx([r.get(key) for r in rows_two], abs=1e-6), key
    diff, size = weight_diff(one, two)
    assert diff <= TOL, f"2 processes differ from 1 by {diff}"


def test_reshard_choice_says_why():
    from geospot.engines.parallel import reshard_choice

    gb = 10**9
    assert reshard_choice("on", 1, 1, None) == (True, "fsdp_reshard=on")
    assert reshard_choice("off", 100 * gb, 100 * gb, 80 * gb)[0] is False
    assert reshard_choice("auto", 100 * gb, 100 * gb, None) == (False, "fsdp_reshard=auto: off on CPU (no GPU memory "
                                                                        "to save)")
    # 7B full fine-tuning, bf16: 16.6 GB weights + 15.2 GB grads = 31.8 GB; half of an 80 GB card is 40
    assert reshard_choice("auto", int(16.6 * gb), int(15.2 * gb), 80 * gb)[0] is False
    on, why = reshard_choice("auto", int(16.6 * gb), int(15.2 * gb), 40 * gb)  # over 20 GB
    assert on and "31.8 GB" in why and "40 GB" in why


def killed_and_resumed(module: str, args: list[str], tmp_path: Path) -> tuple[Path, str]:
    """Two 2-process torchrun jobs of `module` side by side: one uninterrupted into tmp_path/full, one
    SIGKILLed inside step 4 into tmp_path/killed and then resumed there. Returns (the killed run's
    folder, the resumed job's stderr) once both have finished and the resume said where it started."""
    full = subprocess.Popen(torchrun(module, [*args, f"log_path={tmp_path / 'full'}"]), cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    log = tmp_path / "killed"
    killed_at = kill_job_inside_step(torchrun(module, [*args, f"log_path={log}"]), log, after_step=3)
    assert killed_at and max(killed_at) < 5, killed_at
    out = full.communicate(timeout=400)[0]
    assert full.returncode == 0, failure_text(out)
    resumed = subprocess.run(torchrun(module, [*args, f"log_path={log}", "behavior_if_log_dir_exists=resume"]),
                             cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, failure_text(resumed.stderr)
    assert f"from step {max(killed_at)}" in resumed.stderr
    return log, resumed.stderr


@pytest.mark.parametrize("reshard", ["off", "on"], ids=["whole", "resharded"])
def test_two_process_job_killed_mid_step_resumes_exactly(tmp_path, reshard):
    """FSDP2 full fine-tuning in bf16 (the sharded optimizer and its fp32 master shards are the
    hardest state to restore): a 2-process job SIGKILLed inside step 4 and resumed under torchrun
    ends with the weights, master weights and optimizer of an uninterrupted 2-process job. Resharded:
    the weights rest as shards (gathered per layer per forward) when they are saved and loaded, and
    5 images in 5 micro-batches over 2 ranks give rank 0 one call less (an empty one in lockstep)."""
    batch = ["batch_size=6", "grad_accum=2"] if reshard == "off" else ["batch_size=5", "grad_accum=5"]
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=5", "save_every=2", "keep_checkpoints=0", *batch,
            "lora_rank=0", "dtype=bfloat16", "learning_rate=1e-3", "lr_schedule=cosine", "eval_n=0", "seed=3",
            f"fsdp_reshard={reshard}"]
    log, stderr = killed_and_resumed("geospot.sft", args, tmp_path)
    assert f"FSDP2: fsdp_reshard={reshard}" in stderr
    assert_same_final_tensors(tmp_path / "full", log, 5)
    assert _losses(tmp_path / "full") == _losses(log)  # rank 0 wrote each step once


def test_rl_resharded_job_killed_mid_step_resumes_exactly(warm_model, tmp_path):
    """GRPO, full fine-tuning with FSDP2 resharding (weights sharded at rest, every model call in
    lockstep; 3 groups over 2 ranks: 1 + 2): a 2-process job SIGKILLed inside step 4 and resumed
    under torchrun ends with an uninterrupted job's weights and optimizer, the same rollouts and tau."""
    args = [f"model_name={warm_model}", f"data={DATA}", "max_steps=5", "save_every=2", "keep_checkpoints=0",
            "batch_size=3", "group_size=4", "lora_rank=0", "fsdp_reshard=on", "learning_rate=1e-4", "seed=1",
            "max_tokens=20", "env_type=single", "reward=kernel", "tau_schedule=follow_error", "tau_window=2",
            "tau_start_km=10000", "eval_n=0"]
    log, stderr = killed_and_resumed("geospot.train_rl", args, tmp_path)
    assert "FSDP2: fsdp_reshard=on" in stderr
    rows = [[(r["step"], r["reward_mean"], r["tau_km"], r["datums"]) for r in read_jsonl(f / "metrics.jsonl")
             if "reward_mean" in r] for f in (tmp_path / "full", log)]
    assert sum(r[3] for r in rows[0]) > 0, "no step trained: the test would compare untouched weights"
    assert rows[0] == rows[1] and [r[0] for r in rows[1]] == [1, 2, 3, 4, 5]  # rank 0 wrote each step once
    assert_same_final_tensors(tmp_path / "full", log, 5)


def sft_job_past_step(args: list[str], log: Path, step: int) -> subprocess.Popen:
    """A 2-process torchrun SFT job, returned once its metrics show `step` (output piped)."""
    proc = subprocess.Popen(torchrun("geospot.sft", args), cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(r.get("step") == step for r in read_jsonl(log / "metrics.jsonl")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("killed", [1, 0])
def test_a_rank_that_dies_ends_the_job_with_one_sentence(tmp_path, killed):
    """A rank SIGKILLed after step 3 (checkpoints every 2 steps): one line says which rank died, the
    last checkpoint and the command that resumes, and no gloo error reaches the output. Rank 0 says
    it; when rank 0 is the one killed, rank 1 does (torchrun's own summary was all there was)."""
    log = tmp_path / "run"
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=40", "save_every=2", "batch_size=4", "lora_rank=4",
            "eval_n=0", f"log_path={log}"]
    proc = sft_job_past_step(args, log, 3)
    rank = [pid for pid in descendants(proc.pid)
            if f"RANK={killed}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    assert len(rank) == 1
    os.kill(rank[0], signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    last = max(int(c.name) for c in (log / "checkpoints").iterdir() if c.name.isdigit())
    assert last >= 2
    said = [line for line in out.splitlines() if line.startswith("geospot: ")]
    assert said == [f"geospot: rank {killed} died, so the job stopped; the last checkpoint is step {last} in {log}; "
                    f"resume with: torchrun --standalone --nproc_per_node=2 -m geospot.sft {' '.join(args)} "
                    "behavior_if_log_dir_exists=resume"], out[-3000:]
    assert "Connection closed" not in out and "gloo" not in out.lower(), out[-3000:]


@pytest.mark.parametrize("sig, first", [(signal.SIGTERM, "geospot: torchrun stopped the job"),
                                        (signal.SIGINT, "geospot: the job was interrupted (Ctrl-C)")])
def test_an_interrupted_job_is_not_reported_as_a_dead_rank(tmp_path, sig, first):
    """`timeout` / a scheduler SIGTERM torchrun, Ctrl-C SIGINTs it, and it passes either on to every
    rank: rank 1 may be gone before rank 0 looks, but it was stopped, not killed, and rank 0 says so
    (one line, no rank named, no rank's traceback: Ctrl-C used to print each rank's)."""
    log = tmp_path / "run"
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=400", "save_every=50", "batch_size=4", "lora_rank=4",
            "eval_n=0", f"log_path={log}"]
    proc = sft_job_past_step(args, log, 3)
    os.kill(proc.pid, sig)
    out = proc.communicate(timeout=120)[0]
    said = [line for line in out.splitlines() if line.startswith("geospot: ")]
    assert len(said) == 1 and said[0].startswith(first), out[-3000:]
    assert "resume with: torchrun --standalone --nproc_per_node=2" in said[0]
    # every rank finished the step it was training and saved it, as one process does (it stopped at once,
    # and the steps since the last save_every checkpoint were lost)
    trained = max(r["step"] for r in read_jsonl(log / "metrics.jsonl") if "loss" in r)
    assert f"the last checkpoint is step {trained} in" in said[0], out[-3000:]
    # (torchrun's own SignalException traceback follows either signal; no rank's reaches the output)
    assert "KeyboardInterrupt" not in out and "[rank" not in out, out[-3000:]


def test_resume_command_names_the_launch_and_the_keys():
    from geospot.train.rank_death import resume_command

    env = {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}
    cmd = resume_command(["rl", "log_path=runs/a b", "behavior_if_log_dir_exists=raise"], "geospot", env)
    assert cmd == ("torchrun --nproc_per_node=8 --nnodes=2 --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT -m geospot rl "
                   f"'log_path={os.getcwd()}/runs/a b' behavior_if_log_dir_exists=resume")  # the folder absolute
    # a job given no log_path named its own folder: the command names it
    cmd = resume_command(["sft", "max_steps=9"], "geospot", {"WORLD_SIZE": "2"}, "runs/sft-tiny-20261207-101010")
    assert cmd == ("torchrun --standalone --nproc_per_node=2 -m geospot sft max_steps=9 "
                   f"log_path={os.getcwd()}/runs/sft-tiny-20261207-101010 behavior_if_log_dir_exists=resume")


def test_tinker_refuses_torchrun_before_joining_a_process_group(monkeypatch, tmp_path, capsys):
    from geospot.train import sft

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; no process group is ever joined
    assert sft.main(["engine=tinker", f"model_name={TINY}", f"log_path={tmp_path / 'run'}", "data=synthetic:n=8"]) == 2
    assert "engine=tinker does not run under torchrun" in capsys.readouterr().err


def test_rank_and_world_size_left_in_the_environment_are_one_sentence_not_a_traceback(monkeypatch):
    """`RANK=0 WORLD_SIZE=2 python -m geospot sft ...` (no torchrun) ended in torch's traceback about
    MASTER_ADDR; with MASTER_ADDR/PORT too it waited 30 minutes without a word."""
    from geospot import distributed

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(distributed.JoinError, match=r"^RANK and WORLD_SIZE are set but MASTER_ADDR and MASTER_PORT "
                                                   r"not, so this is no torchrun job: start one with `torchrun"):
        distributed.init("cpu")
