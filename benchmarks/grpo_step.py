"""One GRPO step, our local engine vs TRL's GRPOTrainer, same model, same data, same run.

Step = B images x G=8 rollouts of exactly 24 tokens (448 px images: 256 image tokens each),
rewards, group-centred advantages, one LoRA (rank 8, all language-model linears, vision frozen)
policy-gradient forward/backward and one AdamW step.
- ours: `do_group_rollouts` (prefill each image + prompt once, repeat the KV cache for the G
  samples), `engine.forward_backward(importance_sampling)` — shared-prefix packing
  (geospot/engines/prefix.py: each group one row, image + prompt once, its G completions against
  it), the vision features reused from sampling (geospot/engines/vision_cache.py) — and
  `engine.optim_step`. Every rollout is trained on (like TRL; our RL loop would also skip
  zero-advantage rollouts, which would only make ours cheaper).
- TRL 1.16: `GRPOTrainer` with num_generations=8, max_completion_length=24 (min_new_tokens=24),
  loss_type="dr_grpo" (a constant-normalised sum: on-policy its gradient is ours, -sum A * grad lp,
  up to a constant), beta=0 (no reference model, as ours), scale_rewards="none" (centred only),
  the same LoRA modules/rank/alpha, lr, betas (0.9, 0.95), no gradient checkpointing, fp32, CPU,
  no vLLM. TRL runs the vision tower and the prompt once per rollout, in generation and training.

Each side runs in its own fresh process (so peak RSS is per side): a warm-up step, the timed step
(wall-clock and process CPU seconds: on a shared box CPU time is the steadier measure), then one
step under cProfile for the breakdown (vision tower / language model / backward). Each step takes
fresh images. Memory: resource.getrusage(RUSAGE_SELF).ru_maxrss of that process (whole life:
model load + all steps), the peak RSS of each phase of the timed step (the kernel's VmHWM, reset
through /proc/self/clear_refs: sampling, then training) and VmRSS before the timed step.
Token efficiency = tokens a minimal computation needs (each prefix once per group in prefill and
training + every sampled token) / tokens pushed through the language model; ours from the
engine's token_stats(), TRL's counted from its (equal-length) batches with the same `needed`.

Fraction of peak (issue 24): benchmarks/flops.py gives the minimal FLOPs of the step and of each
phase (vision tower once per image, prefill once per group, decode, training against the shared
prefix with a frozen base); the fp32 matmul peak is measured in our process on the same threads,
right before and right after the timed step (best of 5 over a 1024^3 and a model-sized matmul at each
moment; the mean of the two moments: on a shared box the load drifts); each phase's seconds come from the timed step
(vision and prefill by forward hooks on the tower and on the language model's multi-token calls
during sampling; decode = the rest of sampling, i.e. the decode loop with its per-token overhead,
rendering and rewards; train = forward_backward; optim = optim_step, no FLOPs counted).
fraction_of_peak = minimal FLOPs / (seconds x peak); TRL's is its step time against the same
minimal FLOPs (the useful work), next to the speed ratio. fraction_of_peak_cpu is the same with
process CPU seconds against the peak measured in CPU seconds: when other processes share the cores,
wall time counts their slices, CPU time does not.

Prints ONE JSON line (profiles go to stderr). Usage:
  python benchmarks/grpo_step.py [--images 2] [--threads 2] [--model tiny:qwen2_5_vl:small]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import json
import math
import multiprocessing as mp
import os
import pstats
import queue
import resource
import sys
import tempfile
import time

import flops  # benchmarks/flops.py (this folder is on sys.path: the script's own, in the children too)

from geospot.jsonutil import finite_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

G, MAX_TOKENS, PX, LORA_RANK, LORA_ALPHA, LR, TAU_KM = 8, 24, 448, 8, 32.0, 1e-5, 2000.0
DATA = "synthetic:n=64,size=448,seed=0"
# per side: a warm-up step, the timed step (wall and CPU seconds), then a step under cProfile (its
# breakdown explains the time; profiling overhead stays out of the timed numbers). Each step
# takes fresh images.
WARMUP, TIMED, PROFILED = 0, 1, 2
STEPS = 3


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


_LIFE_PEAK_MB = 0.0  # resetting VmHWM also resets ru_maxrss: keep the whole-life peak ourselves


def _phase_start() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next _phase_peak_mb() covers one phase."""
    global _LIFE_PEAK_MB
    _LIFE_PEAK_MB = max(_LIFE_PEAK_MB, _phase_peak_mb())
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _phase_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _maxrss_mb() -> float:
    """Peak RSS over the process's life (ru_maxrss, KiB on Linux), across VmHWM resets."""
    return max(_LIFE_PEAK_MB, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _samples(n: int):
    from geospot.data import load_samples

    samples = load_samples(DATA, split="train", n=n)
    if len(samples) < n:
        raise RuntimeError(f"{DATA} has only {len(samples)} train samples, need {n}")
    return samples


def _reward(text: str, lat: float, lon: float) -> float:
    """The single-turn env's reward: exp(-d/tau), -0.1 when unparseable (used for TRL; our env
    computes the same through SingleTurnEnv + KernelReward)."""
    from geospot.geo import haversine_km, parse_coordinates

    guess = parse_coordinates(text)
    if guess is None:
        return -0.1
    return math.exp(-float(haversine_km(guess[0], guess[1], lat, lon)) / TAU_KM)


def _model_parts_s(stats: pstats.Stats, model) -> dict:
    """Cumulative seconds (and calls) in the vision tower's and the language model's forward, from
    the profile: the split that explains the step time."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = base.model
    out = {}
    for name, mod in (("vision_tower", inner.visual), ("language_model", inner.language_model)):
        code = inspect.unwrap(type(mod).forward).__code__
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        cc, nc, tt, ct, _ = stats.stats.get(key, (0, 0, 0.0, 0.0, None))
        out[f"{name}_s"] = round(ct, 3)
        out[f"{name}_calls"] = nc
    for key, (_cc, _nc, _tt, ct, _) in stats.stats.items():
        if key[2] == "_engine_run_backward":
            out["backward_s"] = round(out.get("backward_s", 0.0) + ct, 3)
    return out


def _top(stats: pstats.Stats, n: int = 8) -> list[str]:
    s = io.StringIO()
    stats.stream = s
    stats.sort_stats("tottime").print_stats(n)
    stats.stream = sys.stdout
    return [ln.strip() for ln in s.getvalue().splitlines() if ln.strip()[:1].isdigit()][:n]


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class PhaseClock:
    """(wall, CPU) seconds in the vision tower and in the language model's multi-token (prefill)
    calls, by forward hooks; `reset()` at a phase start, read after."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        inner = base.model
        self.spent: dict[str, list[float]] = {}
        self._t0: dict[str, tuple[float, float]] = {}
        inner.visual.register_forward_pre_hook(lambda m, a: self._start("vision"))
        inner.visual.register_forward_hook(lambda m, a, o: self._stop("vision"))
        inner.language_model.register_forward_pre_hook(self._lm_pre, with_kwargs=True)
        inner.language_model.register_forward_hook(lambda m, a, kw, o: self._stop("prefill"), with_kwargs=True)
        self.reset()

    def reset(self) -> None:
        self.spent = {"vision": [0.0, 0.0], "prefill": [0.0, 0.0]}
        self._t0.clear()

    def _start(self, name: str) -> None:
        self._t0[name] = _now()

    def _stop(self, name: str) -> None:
        t0 = self._t0.pop(name, None)
        if t0 is not None:
            t1 = _now()
            self.spent[name] = [self.spent[name][0] + t1[0] - t0[0], self.spent[name][1] + t1[1] - t0[1]]

    def _lm_pre(self, module, args, kwargs) -> None:
        x = kwargs.get("inputs_embeds")
        x = kwargs.get("input_ids") if x is None else x
        if x is not None and x.shape[1] > 1:
            self._start("prefill")


def phase_table(flops_by_phase: dict, seconds: dict, peak: dict) -> dict:
    """{phase: {gflop, s, gflops, fraction_of_peak, cpu_s, fraction_of_peak_cpu}}: wall seconds
    against the wall-clock peak, CPU seconds against the CPU-time peak (steadier on a shared box)."""
    out = {}
    for name, (wall, cpu) in seconds.items():
        g = flops_by_phase.get(name, 0) / 1e9
        out[name] = {"gflop": round(g, 3), "s": round(wall, 4), "gflops": round(g / wall, 1) if wall else None,
                     "fraction_of_peak": round(g / wall / peak["gflops"], 3) if wall else None,
                     "cpu_s": round(cpu, 4),
                     "fraction_of_peak_cpu": round(g / cpu / peak["gflops_cpu"], 3) if cpu > 0 else None}
    return out


# -- ours ----------------------------------------------------------------------------------------------


def run_ours(model_name: str, B: int, threads: int, out: mp.Queue) -> None:
    import torch

    torch.set_num_threads(threads)
    from geospot.engines.config import EngineConfig
    from geospot.engines.local import LocalEngine, TokenCounter
    from geospot.engines.types import AdamParams, SampleParams
    from geospot.envs.rewards import KernelReward
    from geospot.envs.single_turn import SingleTurnGroupBuilder
    from geospot.rl.advantages import center
    from geospot.rl.datums import trajectory_to_datum
    from geospot.rl.rollouts import do_group_rollouts

    engine = LocalEngine(EngineConfig(model_name=model_name, lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA,
                                      max_pixels=PX * PX, seed=0))
    shapes = flops.model_shapes(engine.model)
    text = engine.model.get_base_model().config.get_text_config()
    peak_shapes = ((1024, 1024, 1024), (512, text.hidden_size, text.intermediate_size))
    clock = PhaseClock(engine.model)
    samples = _samples(B * STEPS)
    params = SampleParams(max_tokens=MAX_TOKENS, stop=(-1,), seed=0)  # exactly 24 tokens, like TRL's min_new_tokens
    adam = AdamParams(learning_rate=LR, beta1=0.9, beta2=0.95)
    prof = cProfile.Profile()
    for step in range(STEPS):
        builders = [
            SingleTurnGroupBuilder(s, engine.renderer, KernelReward(TAU_KM)) for s in samples[step * B : (step + 1) * B]
        ]
        if step == TIMED:
            engine.tokens = TokenCounter()
            rss_before = _rss_mb()
            peak_before = flops.matmul_peak(shapes=peak_shapes)  # right next to the timed step: same load
        if step == PROFILED:
            prof.enable()
        _phase_start()
        clock.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        trajectories_BG = do_group_rollouts(engine, builders, G, params)
        t1, c1 = _now()
        vision, prefill = clock.spent["vision"], clock.spent["prefill"]
        sample_peak = _phase_peak_mb()
        _phase_start()
        datums = []
        for group in trajectories_BG:
            adv_G = center([sum(tr.reward for tr in traj.transitions) for traj in group])
            datums += [trajectory_to_datum(traj, [float(a)]) for traj, a in zip(group, adv_G)]
        engine.forward_backward(datums, "importance_sampling")
        t2, c2 = _now()
        engine.optim_step(adam)
        t3, c3 = time.perf_counter(), time.process_time()
        if step == TIMED:
            timed = dict(step_s=t3 - t0, cpu_s=c3 - c0, sample_s=t1 - t0, forward_backward_s=t2 - t1, optim_s=t3 - t2)
            phase_s = {"vision": vision, "prefill": prefill,
                       "decode": [t1 - t0 - vision[0] - prefill[0], c1 - c0 - vision[1] - prefill[1]],
                       "train": [t2 - t1, c2 - c1], "optim": [t3 - t2, c3 - c2]}
            grids = [tuple(group[0].transitions[0].observation.images()[0].grid_thw) for group in trajectories_BG]
            phase_peaks = {"sample": sample_peak, "train": _phase_peak_mb()}
            ts = engine.token_stats()
            peak_after = flops.matmul_peak(shapes=peak_shapes)
    prof.disable()
    stats = pstats.Stats(prof)
    peak = {k: round((peak_before[k] + peak_after[k]) / 2, 1) for k in ("gflops", "gflops_cpu")}
    prompt_tokens = datums[0].model_input.length - MAX_TOKENS + 1
    step_flops = flops.grpo_step_flops(shapes, grids, prompt_tokens, G, MAX_TOKENS)
    res = {
        **{k: round(v, 3) for k, v in timed.items()}, "rollouts_per_s": round(B * G / timed["step_s"], 3),
        "rollouts_per_cpu_s": round(B * G / timed["cpu_s"], 3),
        "token_efficiency": round(ts["token_efficiency"], 4), "tokens": ts,
        "prompt_tokens": prompt_tokens, "minimal_gflop": round(step_flops["step"] / 1e9, 3),
        "fraction_of_peak": round(step_flops["step"] / 1e9 / timed["step_s"] / peak["gflops"], 3),
        "fraction_of_peak_cpu": round(step_flops["step"] / 1e9 / timed["cpu_s"] / peak["gflops_cpu"], 3),
        "phases": phase_table(step_flops, phase_s, peak),
        "peak": {**peak, "before": peak_before["by_shape"], "after": peak_after["by_shape"],
                 "before_cpu": peak_before["gflops_cpu"], "after_cpu": peak_after["gflops_cpu"],
                 "dtype": peak_before["dtype"], "threads": peak_before["threads"]},
        "rss_before_step_mb": round(rss_before, 1), "peak_rss_mb": round(_maxrss_mb(), 1),
        "phase_peak_rss_mb": phase_peaks,
        "image_cache": {"hits": engine.image_cache.hits, "misses": engine.image_cache.misses},
        "profiled_step": {"step_s": round(stats.total_tt, 3), **_model_parts_s(stats, engine.model)},
    }
    print("== ours: top functions by own time ==\n" + "\n".join(_top(stats, 15)), file=sys.stderr)
    out.put(("ours", res))


# -- TRL -----------------------------------------------------------------------------------------------


def run_trl(model_name: str, B: int, threads: int, out: mp.Queue) -> None:
    import torch

    torch.set_num_threads(threads)
    from _trl_processor import TRLQwenVLProcessor
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from geospot import prompts
    from geospot.engines.local import _lora_targets
    from geospot.models.load import load_model

    lm = load_model(model_name, dtype="float32", device="cpu")
    targets = _lora_targets(lm.model, "all-linear", False)
    processor = TRLQwenVLProcessor(lm.tokenizer, lm.image_processor, PX * PX)
    samples = _samples(B * STEPS)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": prompts.SINGLE_TURN_PROMPT}], "image": s.image,
                             "lat": float(s.lat), "lon": float(s.lon)} for s in samples])

    def geo_reward(completions, lat, lon, **_):
        return [
            _reward(c[0]["content"] if isinstance(c, list) else c, la, lo) for c, la, lo in zip(completions, lat, lon)
        ]

    class StepTimer(TrainerCallback):
        """Wall and CPU seconds of each optimizer step (generation included: GRPOTrainer generates
        inside training_step); cProfile on the PROFILED step."""

        def __init__(self):
            self.wall, self.cpu, self.prof, self.rss_before = [], [], cProfile.Profile(), None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == TIMED:
                self.rss_before = _rss_mb()
            if state.global_step == PROFILED:
                self.prof.enable()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            phase_peaks.setdefault(len(self.wall), {})["train"] = _phase_peak_mb()
            self.wall.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)
            if len(self.wall) == PROFILED + 1:
                self.prof.disable()

    timer = StepTimer()
    phase_peaks: dict[int, dict[str, float]] = {}

    def with_generation_peak(generate):
        def wrapped(*a, **kw):  # generation + rewards + advantages happen here, inside training_step
            _phase_start()
            out = generate(*a, **kw)
            phase_peaks.setdefault(len(timer.wall), {})["sample"] = _phase_peak_mb()
            _phase_start()
            return out
        return wrapped

    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(
            output_dir=tmp, per_device_train_batch_size=B * G, num_generations=G, max_completion_length=MAX_TOKENS,
            generation_kwargs={"min_new_tokens": MAX_TOKENS}, temperature=1.0, top_p=1.0, top_k=0,
            learning_rate=LR, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, lr_scheduler_type="constant",
            max_grad_norm=0.0, loss_type="dr_grpo", beta=0.0, scale_rewards="none",
            gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True, max_steps=STEPS,
            report_to="none", save_strategy="no", logging_steps=1, shuffle_dataset=False, remove_unused_columns=False,
            dataloader_num_workers=0, seed=0, disable_dropout=True, log_completions=False, disable_tqdm=True,
        )
        trainer = GRPOTrainer(
            model=lm.model,
            reward_funcs=geo_reward,
            args=cfg,
            train_dataset=ds,
            processing_class=processor,
            peft_config=LoraConfig(
                r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=targets, bias="none"
            ),
            callbacks=[timer],
        )
        trainer._generate_and_score_completions = with_generation_peak(trainer._generate_and_score_completions)
        trainer.train()
    step_s, cpu_s = timer.wall[TIMED], timer.cpu[TIMED]
    stats = pstats.Stats(timer.prof)
    # TRL's batches: every rollout carries its own copy of the P-token prompt (image included), in
    # generation prefill and again in the training forward; all completions are exactly 24 tokens.
    P = len(processor.apply_chat_template([{"role": "user", "content": [{"type": "image", "image": samples[0].image},
                                           {"type": "text", "text": prompts.SINGLE_TURN_PROMPT}]}],
                                          add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"][0])
    processed = {"prefill": B * G * P, "decode": B * G * MAX_TOKENS, "train": B * G * (P + MAX_TOKENS)}
    res = {
        "step_s": round(step_s, 3), "cpu_s": round(cpu_s, 3), "rollouts_per_s": round(B * G / step_s, 3),
        "rollouts_per_cpu_s": round(B * G / cpu_s, 3), "prompt_tokens": P,
        "tokens_processed": processed, "rss_before_step_mb": round(timer.rss_before or float("nan"), 1),
        "peak_rss_mb": round(_maxrss_mb(), 1), "phase_peak_rss_mb": phase_peaks.get(TIMED),
        "profiled_step": {"step_s": round(timer.wall[PROFILED], 3), **_model_parts_s(stats, trainer.model)},
    }
    print("== TRL: top functions by own time ==\n" + "\n".join(_top(stats, 15)), file=sys.stderr)
    out.put(("trl", res))


# -- driver --------------------------------------------------------------------------------------------


def _child_main(fn, *args) -> None:
    """Runs one side in the child: its stdout (trainer logs, progress bars) goes to stderr so the
    parent's stdout stays ONE JSON line."""
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fn(*args)


def _in_child(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_main, args=(fn, *args, q))
    p.start()
    while True:  # a child that dies without answering must not hang the benchmark
        try:
            name, res = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{fn.__name__} died with exit code {p.exitcode} (see stderr)") from None
    p.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2, help="B: images per step (G=8 rollouts each)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per side (1: on a shared 2-core box, 2 threads per op thrash)",
    )
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--skip-trl", action="store_true", help="only our side (for profiling)")
    args = ap.parse_args()
    B = args.images
    ours = _in_child(run_ours, args.model, B, args.threads)
    trl = None if args.skip_trl else _in_child(run_trl, args.model, B, args.threads)
    # minimal tokens for TRL's step, counted as ours counts them (identical prompts and lengths)
    needed = ours["tokens"]["tokens_needed"]
    row = {
        "benchmark": "grpo_step",
        "model": args.model,
        "images": B,
        "group_size": G,
        "completion_tokens": MAX_TOKENS,
        "image_px": PX,
        "lora_rank": LORA_RANK,
        "threads": args.threads,
        "device": "cpu",
        "peer": "trl.GRPOTrainer 1.16 (transformers generate, no vLLM), same model/data/LoRA/lr, same run",
        "memory": "peak_rss = whole-life peak RSS (ru_maxrss / VmHWM) of a fresh process per side "
        "(model load + 3 steps); phase_peak_rss = VmHWM per phase of the timed step "
        "(reset via /proc/self/clear_refs; sample = rollouts incl. rewards, train = loss fwd/bwd + optimizer); "
        "rss_before_step = VmRSS",
        "ours": {k: v for k, v in ours.items() if k != "tokens"},
        "ours_tokens": {k: ours["tokens"][k] for k in sorted(ours["tokens"]) if k.endswith(("_needed", "_processed"))},
    }
    if trl is not None:
        trl["token_efficiency"] = round(needed / sum(trl["tokens_processed"].values()), 4)
        row["trl"] = trl
        row["ratio_rollouts_per_s"] = round(ours["rollouts_per_s"] / trl["rollouts_per_s"], 3)
        row["ratio_rollouts_per_cpu_s"] = round(ours["rollouts_per_cpu_s"] / trl["rollouts_per_cpu_s"], 3)
        row["ratio_peak_rss"] = round(ours["peak_rss_mb"] / trl["peak_rss_mb"], 3)
        # TRL against the same minimal FLOPs and our process's peak: the useful work per second
        trl["fraction_of_peak"] = round(ours["minimal_gflop"] / trl["step_s"] / ours["peak"]["gflops"], 3)
        trl["fraction_of_peak_cpu"] = round(ours["minimal_gflop"] / trl["cpu_s"] / ours["peak"]["gflops_cpu"], 3)
    row["fraction_of_peak"] = ours["fraction_of_peak"]
    row["fraction_of_peak_cpu"] = ours["fraction_of_peak_cpu"]
    row["phases"] = ours["phases"]
    print(json.dumps(finite_json(row)))


if __name__ == "__main__":
    main()
