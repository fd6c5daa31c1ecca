"""Data parallelism: 2 processes x 1 thread (torchrun, gloo on CPU; NCCL with a GPU each) versus
1 process x 1 thread, on the SAME global batch: an SFT step and a GRPO step.

- SFT step: B images (single-turn messages), each rank its share; forward/backward + AdamW step
  (LoRA rank 8, all language-model linears), the gradient reduction included (DDP, sum hook).
- GRPO step: B images x G rollouts of exactly MAX_TOKENS tokens (each rank samples its groups),
  group-centred advantages, importance-sampling forward/backward, AdamW step.
- Throughput ratio = 1-process step seconds / 2-process step seconds (the slower rank's).
- `sync_share`: the share of the 2-process step spent in the gradient reduction
  (engines/parallel.py's `sync`: one one-token forward/backward + DDP's bucketed all-reduce;
  an upper bound on the all-reduce's own share).
- Peak memory per rank: ru_maxrss of each process (CPU); torch.cuda.max_memory_allocated on GPU.

The two sides run one after the other (never together: they would share the cores). Prints ONE
JSON line. Usage:
  python benchmarks/distributed.py [--model tiny:qwen2_5_vl:small] [--images 8] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's geospot

G, MAX_TOKENS, PX, LORA_RANK = 4, 16, 224, 8


def worker(model: str, images: int, steps: int, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    from geospot import distributed
    from geospot.data import open_stream
    from geospot.engines.config import EngineConfig
    from geospot.engines.local import LocalEngine
    from geospot.engines.types import AdamParams, SampleParams
    from geospot.envs.rewards import KernelReward
    from geospot.envs.single_turn import SingleTurnGroupBuilder
    from geospot.rl.advantages import center
    from geospot.rl.datums import trajectory_to_datum
    from geospot.rl.rollouts import do_group_rollouts
    from geospot.train.sft import SFTConfig, make_datums, normalise_weights, target_tokens

    d = distributed.init("auto")
    cuda = torch.cuda.is_available()
    engine = LocalEngine(EngineConfig(model_name=model, lora_rank=LORA_RANK, lora_alpha=2.0 * LORA_RANK,
                                      max_pixels=PX * PX, device=distributed.rank_device("auto", d), seed=0))
    sync_s = [0.0]
    if engine.trainer.sync is not None:  # time the gradient reduction
        inner = engine.trainer.sync.sync

        def timed_sync():
            t = time.perf_counter()
            inner()
            sync_s[0] += time.perf_counter() - t

        engine.trainer.sync.sync = timed_sync
    stream = open_stream(f"synthetic:n=512,size={PX},seed=0", seed=0)
    cfg = SFTConfig(model_name=model, data="synthetic:n=8", prompt_style="single")
    adam = AdamParams(learning_rate=1e-4, beta1=0.9, beta2=0.95)

    def step_sft(step: int) -> None:
        samples = stream.next_batch(images)
        mine = d.share(len(samples))
        datums = make_datums(engine, [samples[i] for i in mine], ["single"] * len(mine), cfg, step, mine)
        datums, _ = normalise_weights(datums, int(d.sum({"t": target_tokens(datums)})["t"]))
        if datums:
            engine.forward_backward(datums, "cross_entropy")
        engine.optim_step(adam)

    def step_grpo(step: int) -> None:
        samples = stream.next_batch(images)
        mine = d.share(len(samples))
        builders = [SingleTurnGroupBuilder(samples[i], engine.renderer, KernelReward(2000.0)) for i in mine]
        params = SampleParams(max_tokens=MAX_TOKENS, stop=(-1,), seed=step)  # exactly MAX_TOKENS tokens
        trajectories_BG = do_group_rollouts(engine, builders, G, params, group_ids=mine)
        datums = []
        for group in trajectories_BG:  # every rollout trained on, as benchmarks/grpo_step.py
            adv_G = center([traj.total_reward for traj in group])
            datums += [trajectory_to_datum(traj, [float(a)]) for traj, a in zip(group, adv_G)]
        if datums:
            engine.forward_backward(datums, "importance_sampling")
        engine.optim_step(adam)

    result = {}
    for name, fn in (("sft", step_sft), ("grpo", step_grpo)):
        times, syncs = [], []
        for step in range(steps + 1):  # the first is a warm-up
            d.barrier()
            sync_s[0] = 0.0
            t0 = time.perf_counter()
            fn(step)
            dt = d.max(time.perf_counter() - t0)  # the step ends when the slowest rank is done
            if step:
                times.append(dt)
                syncs.append(sync_s[0])
        result[name] = {"step_s": statistics.median(times), "step_s_all": [round(t, 3) for t in times],
                        "sync_s": statistics.median(syncs)}
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["peak_mb_per_rank"] = [round(x, 1) for x in d.gather(peak)]
    result["device"] = torch.cuda.get_device_name() if cuda else "cpu"
    result["world"] = d.world
    if d.is_main:
        Path(out).write_text(json.dumps(result))
    distributed.shutdown()


def run_side(nproc: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        me = [str(HERE / "distributed.py"), "--worker", "--model", args.model, "--images", str(args.images),
              "--steps", str(args.steps), "--out", out]
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd = [*launch, *me] if nproc > 1 else [sys.executable, *me]
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            sys.exit(f"{nproc}-process side failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--images", type=int, default=8, help="global batch: images per step (GRPO: x G=4 rollouts)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per kind (after one warm-up)")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.model, args.images, args.steps, args.out)
        return
    one = run_side(1, args)
    two = run_side(2, args)
    res = {"benchmark": "distributed", "model": args.model, "images_per_step": args.images, "group_size": G,
           "max_tokens": MAX_TOKENS, "px": PX, "device": two["device"], "one_process": one, "two_processes": two}
    for k in ("sft", "grpo"):
        res[f"{k}_ratio_2proc_vs_1proc"] = round(one[k]["step_s"] / two[k]["step_s"], 3)
        res[f"{k}_sync_share_2proc"] = round(two[k]["sync_s"] / two[k]["step_s"], 3)
    res["peak_mb_per_rank_2proc"] = two["peak_mb_per_rank"]
    res["peak_mb_1proc"] = one["peak_mb_per_rank"][0]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
