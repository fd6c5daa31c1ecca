"""Data parallelism: 2 processes x 1 thread (torchrun, gloo on CPU; NCCL with a GPU each) versus
1 process x 1 thread, on the SAME global batch: an SFT step and a GRPO step.

- SFT step: B images (single-turn messages), each rank its share; forward/backward + AdamW step
  (LoRA rank 8, all language-model linears), the gradient reduction included (DDP, sum hook).
- GRPO step: B images x G rollouts of exactly MAX_TOKENS tokens (each rank samples its groups),
  group-centred advantages, importance-sampling forward/backward, AdamW step.
- Throughput ratio = 1-process step seconds / 2-process step seconds (the slower rank's).
- `sync_share`: the share of the 2-process step spent in the gradient reduction
  (engines/parallel.py's `sync`: DDP's bucketed all-reduce, triggered by a backward that touches
  every LoRA parameter; waits for the slower rank included).
- `cpu_ratio`: the same ratio in CPU seconds (1-process step / busiest rank's step): what the
  ratio would be with a free core per process; steadier when other processes share the cores
  (the wall ratio then measures them too). `load_before_after`: the 1-minute load around each side.
- Per rank, per phase, wall and CPU seconds (`phases_*_s_per_rank`, exclusive: vision is taken
  out of prefill and forward_backward): data, vision, prefill, decode (the rest of sample), forward_backward,
  sync (inside optim), optim, other.
- Peak memory per rank: ru_maxrss of each process (CPU); torch.cuda.max_memory_allocated on GPU.

The two sides run one after the other (never together: they would share the cores), `--rounds`
times alternately. Prints ONE JSON line. Usage:
  python benchmarks/distributed.py [--model tiny:qwen2_5_vl:small] [--images 8] [--steps 3] [--rounds 1]
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

from geospot.jsonutil import finite_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's geospot

G, MAX_TOKENS, PX, LORA_RANK = 4, 16, 224, 8


class Phases:
    """Exclusive wall and CPU seconds per phase: a phase nested in another (vision inside prefill)
    is taken out of its parent, so the phases of a step add up to the step."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list] = []  # [name, wall0, cpu0, child wall, child cpu]

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            if any(f[0] == name for f in self.stack):  # re-entered (prefill inside prefill_reusing)
                return fn(*a, **kw)
            self.stack.append([name, time.perf_counter(), time.process_time(), 0.0, 0.0])
            try:
                return fn(*a, **kw)
            finally:
                _, w0, c0, cw, cc = self.stack.pop()
                w, c = time.perf_counter() - w0, time.process_time() - c0
                self.wall[name] = self.wall.get(name, 0.0) + w - cw
                self.cpu[name] = self.cpu.get(name, 0.0) + c - cc
                if self.stack:
                    self.stack[-1][3] += w
                    self.stack[-1][4] += c
        return timed

    def reset(self) -> None:
        self.wall, self.cpu = {}, {}


def worker(model: str, images: int, steps: int, out: str, kinds: str = "sft,grpo") -> None:
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
    stream = open_stream(f"synthetic:n=512,size={PX},seed=0", seed=0)
    # per phase, per rank: where a step's time goes (exclusive: nested phases are taken out)
    ph = Phases()
    sampler, trainer = engine.sampler, engine.trainer
    stream.next_batch = ph.wrap("data", stream.next_batch)
    engine.image_cache.fn = ph.wrap("vision", engine.image_cache.fn)
    sampler.prefill = ph.wrap("prefill", sampler.prefill)
    sampler.prefill_reusing = ph.wrap("prefill", sampler.prefill_reusing)
    sampler.sample = ph.wrap("decode", sampler.sample)  # what sample() spends outside prefill
    trainer.forward_backward = ph.wrap("forward_backward", trainer.forward_backward)
    trainer.optim_step = ph.wrap("optim", trainer.optim_step)
    if trainer.sync is not None:  # the gradient reduction (touch + all-reduce, waits included)
        trainer.sync.sync = ph.wrap("sync", trainer.sync.sync)
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
        if name not in kinds.split(","):
            continue
        times, cpu_times, syncs, walls, cpus = [], [], [], [], []
        for step in range(steps + 1):  # the first is a warm-up
            d.barrier()
            ph.reset()
            t0, c0 = time.perf_counter(), time.process_time()
            fn(step)
            own, own_cpu = time.perf_counter() - t0, time.process_time() - c0
            dt = d.max(own)  # the step ends when the slowest rank is done
            dc = d.max(own_cpu)  # CPU seconds of the busiest rank: steadier than wall time on a shared machine
            if step:
                times.append(dt)
                cpu_times.append(dc)
                syncs.append(ph.wall.get("sync", 0.0))
                walls.append({**ph.wall, "other": own - sum(ph.wall.values()), "step": own})
                cpus.append({**ph.cpu, "other": own_cpu - sum(ph.cpu.values()), "step": own_cpu})

        def med(rows):
            return {k: round(statistics.median(r.get(k, 0.0) for r in rows), 4) for k in rows[0]}

        result[name] = {"step_s": statistics.median(times), "step_s_all": [round(t, 3) for t in times],
                        "step_cpu_s": statistics.median(cpu_times),
                        "sync_s": statistics.median(syncs),
                        "phases_wall_s_per_rank": d.gather(med(walls)), "phases_cpu_s_per_rank": d.gather(med(cpus))}
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
              "--steps", str(args.steps), "--kinds", args.kinds, "--out", out]
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd = [*launch, *me] if nproc > 1 else [sys.executable, *me]
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        load_before = os.getloadavg()[0]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            sys.exit(f"{nproc}-process side failed:\n{proc.stderr[-3000:]}")
        # the 1-minute load average around the side: other tenants' processes share the cores
        return {**json.loads(Path(out).read_text()), "load_before_after": [load_before, os.getloadavg()[0]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--images", type=int, default=8, help="global batch: images per step (GRPO: x G=4 rollouts)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per kind (after one warm-up)")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--rounds", type=int, default=1, help="1-process then 2-process runs, repeated; ratios are "
                                                          "the medians over the rounds")
    ap.add_argument("--kinds", default="sft,grpo", help="which steps to time: sft, grpo or both (comma-separated)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.kinds or set(args.kinds.split(",")) - {"sft", "grpo"}:
        ap.error(f"--kinds {args.kinds}: name sft, grpo or both (sft,grpo)")
    if args.worker:
        worker(args.model, args.images, args.steps, args.out, args.kinds)
        return
    rounds = []  # 1 process, then 2, repeated: a drift in the machine's load hits both sides alike
    for _ in range(args.rounds):
        one, two = run_side(1, args), run_side(2, args)
        rnd = {"load_1proc": one["load_before_after"], "load_2proc": two["load_before_after"]}
        for k in args.kinds.split(","):
            rnd[f"{k}_ratio"] = round(one[k]["step_s"] / two[k]["step_s"], 3)
            rnd[f"{k}_cpu_ratio"] = round(one[k]["step_cpu_s"] / two[k]["step_cpu_s"], 3)
            rnd[f"{k}_sync_share"] = round(two[k]["sync_s"] / two[k]["step_s"], 3)
        rounds.append(rnd)
    res = {"benchmark": "distributed", "model": args.model, "images_per_step": args.images, "group_size": G,
           "max_tokens": MAX_TOKENS, "px": PX, "device": two["device"], "one_process": one, "two_processes": two,
           "rounds": rounds}
    for k in args.kinds.split(","):  # medians over the rounds (the sides' details above: the last round's)
        for m in ("ratio", "cpu_ratio", "sync_share"):
            res[f"{k}_{m}_2proc_vs_1proc" if m != "sync_share" else f"{k}_sync_share_2proc"] = statistics.median(
                r[f"{k}_{m}"] for r in rounds)
    res["peak_mb_per_rank_2proc"] = two["peak_mb_per_rank"]
    res["peak_mb_1proc"] = one["peak_mb_per_rank"][0]
    print(json.dumps(finite_json(res)))


if __name__ == "__main__":
    main()
