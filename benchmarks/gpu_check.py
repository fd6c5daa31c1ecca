"""The real-size paths on one GPU: a Qwen2.5-VL-3B-shaped model, bf16, SFT and GRPO, torch and
vLLM samplers, TRL's GRPOTrainer in the same run. One command, <= 8 minutes on an H100/H200:

    python benchmarks/gpu_check.py [--json-out FILE] [--budget-s 450]   # a CUDA GPU; writes results.json
    python benchmarks/gpu_check.py --dry-run                             # the same phases on CPU, tiny shape
    python benchmarks/gpu_check.py --merge FILE                          # put a saved run into results.json

The model. No hub: random weights in Qwen2.5-VL-3B-Instruct's published shape (config.json of
that repo): text hidden 2048, 36 layers, 16 heads, 2 KV heads (head dim 128), intermediate 11008,
vocab 151936, tied embeddings, mrope sections [16, 24, 24], rope theta 1e6, 128k positions;
vision depth 32, hidden 1280, 16 heads, intermediate 3420, out 2048, patch 14, merge 2, window
112, full attention in blocks 7/15/23/31. What differs from the real model: the weights are
random (transformers' init, std 0.02), so rewards are all the unparseable -0.1 and advantages 0
(the step's cost does not depend on them); the tokenizer is geospot's tiny offline BPE (~480 real
tokens, the special tokens at ids 0-13 instead of 151643+) padded with filler entries to the
151936-row vocabulary, so every sampled id decodes; the prompt's text tokens differ a little from
Qwen's (the 256 image tokens of a 448 px image dominate anyway) and the chat template is the tiny
models' (no default system prompt, ~20 tokens fewer). Matrix shapes, parameter count (3.75 B),
KV size and logits size are the real model's.

Phases, in order (cheap and most wanted first); each runs in its own process, so a crash, an
OOM or the time guard killing one is recorded in its entry and the rest still run; the JSON is
rewritten after every phase, so a killed run keeps what finished:
  build       the model folder (cached under $GEOSPOT_CACHE by a hash of its recipe)
  sft_lora    one bf16 SFT step, LoRA (EngineConfig defaults: rank 32, all language linears)
  sft_full    the same, full fine-tuning (lora_rank=0, vision frozen)
  grpo_torch  one GRPO step, 8 images x 8 rollouts x 24 tokens, 448 px, sampler=torch, LoRA as
              benchmarks/grpo_step.py (rank 8); the sampler-vs-trainer logprob gap on the step's
              own rollouts
  kv_reuse    3 telescoping turns x 8 rollouts with the KV kept across turns vs not
              (benchmarks/engine.py's telescoping())
  trl         TRL's GRPOTrainer on the same model folder, data, LoRA and lr (transformers generate)
  grpo_vllm   the GRPO step with sampler=vllm (skipped when vllm does not import)
  trl_vllm    TRL's GRPOTrainer with its colocated vLLM (skipped when vllm does not import)
A step is timed after one untimed warm-up step on other images. Memory: peak
torch.cuda.max_memory_allocated per phase and per part of the step (reset before each), and the
device's used memory (mem_get_info, includes vLLM's separate process); on CPU, peak RSS.
Prints ONE JSON line; `ratio_rollouts_per_s` = ours / TRL's, same run, same card.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE):  # this checkout's geospot, and grpo_step, engine, _trl_processor by name
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
from _device_memory import is_cuda, memory, peak_gb, reset_peak, sync  # noqa: E402  (found through the line above)
from _shaped_model import build_model  # noqa: E402

from geospot.jsonutil import finite_json  # noqa: E402

PHASES = ("build", "sft_lora", "sft_full", "grpo_torch", "kv_reuse", "trl", "grpo_vllm", "trl_vllm")
SFT_LR, FULL_LR = 2e-4, 1e-5
TRL_MICRO_BATCH = 16  # rollouts per TRL training forward (see _trl)


@dataclass(frozen=True)
class Plan:
    shape: str = "qwen2.5-vl-3b"
    device: str = "cuda"
    dtype: str = "bfloat16"
    images: int = 8
    group: int = 8
    tokens: int = 24
    px: int = 448
    budget_s: float = 450.0  # the whole run; the device lease is 8 minutes, this leaves the start-up
    folder: str = ""  # filled in by the build phase


DRY = dict(shape="tiny", device="cpu", dtype="float32", images=2, group=4, tokens=24, px=448, budget_s=240.0)


def _samples(plan: Plan, n: int):
    from grpo_step import _samples as grpo_samples

    return grpo_samples(n)  # the grpo_step benchmark's 448 px synthetic images; the engine resizes to plan.px


def _engine(plan: Plan, **overrides):
    from geospot.engines import EngineConfig, make_engine

    cfg = EngineConfig(model_name=plan.folder, device=plan.device, dtype=plan.dtype, max_pixels=plan.px * plan.px,
                       seed=0, **overrides)
    return make_engine(cfg)


# -- phases (each runs in its own process) --------------------------------------------------------


def phase_build(plan: Plan) -> dict:
    return build_model(plan.shape, plan.device, plan.dtype)


def _moved_share(named, before) -> float:
    return sum(int((p.detach() != b).sum()) for (_, p), b in zip(named, before)) / sum(b.numel() for b in before)


def _sft(plan: Plan, lora_rank: int, lr: float) -> dict:
    import torch

    from geospot import prompts
    from geospot.engines.datums import make_datum
    from geospot.engines.types import AdamParams

    t0 = time.perf_counter()
    engine = _engine(plan, lora_rank=lora_rank)
    load_s = time.perf_counter() - t0
    r = engine.renderer
    examples = [r.supervised_example([prompts.user_message(s.image, prompts.SINGLE_TURN_PROMPT),
                                      prompts.assistant_message(prompts.format_answer(s.lat, s.lon))])
                for s in _samples(plan, plan.images)]
    n_targets = sum(float(w.sum()) for _, w in examples)  # as SFT: the mean over the batch's answer tokens
    datums = [make_datum(full, weights=w / n_targets) for full, w in examples]
    adam = AdamParams(learning_rate=lr)
    warm = engine.train_step(datums, "cross_entropy", adam)  # warm-up: kernels, allocator, optimizer state
    # the optimizer's weights (fp32 master copies of bf16 ones) and the model's, first and last 3
    optimized, model = (lst[:3] + lst[-3:] for lst in (engine.trainer.master_values(), engine.trainable))
    before = [p.detach().clone() for _, p in optimized]
    before_model = [p.detach().clone() for _, p in model]
    reset_peak(plan)
    t1 = time.perf_counter()
    res = engine.train_step(datums, "cross_entropy", adam)
    sync(plan)
    step_s = time.perf_counter() - t1
    changed = max(float((p.detach() - b).abs().max()) for (_, p), b in zip(optimized, before))
    # the share of watched elements the step moved: in the optimizer's weights it says how much of
    # the step was kept (fp32 masters: ~1); in bf16 model weights a step of lr 1e-5 on |w| ~ 0.02 is
    # below the rounding step, so they move once the masters' changes add up (docs/gpu.md)
    moved_share = _moved_share(optimized, before)
    model_moved_share = _moved_share(model, before_model)
    n_trainable = sum(p.numel() for _, p in engine.trainable)
    tokens = sum(d.model_input.length for d in datums)
    loss0, loss1 = warm.metrics["loss:sum"], res.metrics["loss:sum"]
    return {"load_s": round(load_s, 1), "step_s": round(step_s, 3), "tokens": tokens,
            "tokens_per_s": round(tokens / step_s, 1), "trainable_params": n_trainable,
            "dtype": str(engine.dtype).removeprefix("torch."), "loss_warmup_step": round(loss0, 4),
            "loss_timed_step": round(loss1, 4), "max_param_change": changed,
            "moved_share": round(moved_share, 4), "model_moved_share": round(model_moved_share, 4),
            "master_copies": engine.trainer.master.copied, "step_peak_gb": peak_gb(plan),
            "ok": bool(changed > 0 and torch.isfinite(torch.tensor([loss0, loss1])).all()), **memory(plan)}


def phase_sft_lora(plan: Plan) -> dict:
    return _sft(plan, lora_rank=32, lr=SFT_LR)


def phase_sft_full(plan: Plan) -> dict:
    return _sft(plan, lora_rank=0, lr=FULL_LR)


def _grpo(plan: Plan, sampler: str) -> dict:
    """grpo_step's step (do_group_rollouts -> centred advantages -> importance_sampling
    forward_backward -> optim_step), warm-up then timed, with the logprob gap of the timed step."""
    import numpy as np
    from grpo_step import LORA_ALPHA, LORA_RANK, LR, TAU_KM

    from geospot.engines.types import AdamParams, SampleParams
    from geospot.envs.rewards import KernelReward
    from geospot.envs.single_turn import SingleTurnGroupBuilder
    from geospot.rl.advantages import center
    from geospot.rl.datums import trajectory_to_datum
    from geospot.rl.rollouts import do_group_rollouts

    t0 = time.perf_counter()
    engine = _engine(plan, lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA, sampler=sampler)
    load_s = time.perf_counter() - t0
    samples = _samples(plan, 2 * plan.images)
    adam = AdamParams(learning_rate=LR, beta1=0.9, beta2=0.95)
    for step in range(2):  # 0: warm-up (kernels, vLLM's first adapter), 1: timed
        builders = [SingleTurnGroupBuilder(s, engine.renderer, KernelReward(TAU_KM))
                    for s in samples[step * plan.images:(step + 1) * plan.images]]
        params = SampleParams(max_tokens=plan.tokens, stop=(-1,), seed=step)  # exactly `tokens` each, like TRL
        reset_peak(plan)
        t0 = time.perf_counter()
        trajectories_BG = do_group_rollouts(engine, builders, plan.group, params)
        sync(plan)
        t1 = time.perf_counter()
        sample_peak = peak_gb(plan)
        datums, trajs = [], []
        for group in trajectories_BG:
            adv_G = center([sum(tr.reward for tr in traj.transitions) for traj in group])
            datums += [trajectory_to_datum(traj, [float(a)]) for traj, a in zip(group, adv_G)]
            trajs += group
        reset_peak(plan)
        t2 = time.perf_counter()
        fb = engine.forward_backward(datums, "importance_sampling")
        sync(plan)
        t3 = time.perf_counter()
        engine.optim_step(adam)
        sync(plan)
        t4 = time.perf_counter()
    gaps = []  # sampler's logprob of each sampled token vs the trainer's, same weights
    for traj, lp in zip(trajs, fb.logprobs):
        q = np.asarray(traj.transitions[0].action_logprobs, np.float64)
        gaps.append(np.abs(np.asarray(lp, np.float64)[len(lp) - len(q):] - q))
    gap = np.concatenate(gaps)
    rollouts = plan.images * plan.group
    out = {"sampler": sampler, "load_s": round(load_s, 1), "step_s": round(t4 - t0, 3), "sample_s": round(t1 - t0, 3),
           "forward_backward_s": round(t3 - t2, 3), "optim_s": round(t4 - t3, 3),
           "rollouts": rollouts, "rollouts_per_s": round(rollouts / (t4 - t0), 3),
           "sample_rollouts_per_s": round(rollouts / (t1 - t0), 3),
           "logprob_gap_mean": float(gap.mean()), "logprob_gap_max": float(gap.max()), "gap_tokens": int(gap.size),
           "prompt_tokens": datums[0].model_input.length - plan.tokens + 1,
           "sample_peak_gb": sample_peak, "train_peak_gb": peak_gb(plan), **memory(plan)}
    if hasattr(engine, "close"):
        engine.close()
    return out


def phase_grpo_torch(plan: Plan) -> dict:
    return _grpo(plan, "torch")


def phase_grpo_vllm(plan: Plan) -> dict:
    from geospot.engines.vllm_sampler import vllm_installed

    if not vllm_installed():
        return {"skipped": "vllm does not import here"}
    return _grpo(plan, "vllm")


def phase_kv_reuse(plan: Plan) -> dict:
    from engine import MAX_TOKENS, G, telescoping
    from grpo_step import LORA_RANK
    from PIL import Image

    from geospot import prompts

    engine = _engine(plan, lora_rank=LORA_RANK)
    image = _samples(plan, 1)[0].image.resize((plan.px, plan.px), Image.BILINEAR)
    prompt = engine.renderer.generation_prompt([prompts.user_message(image, prompts.TELESCOPING_PROMPTS[0])])
    reset_peak(plan)
    r = telescoping(engine, prompt, repeats=1)
    on, off = r["telescoping_prefill_processed_on"], r["telescoping_prefill_processed_off"]
    return {"rollouts": G, "max_tokens": MAX_TOKENS, "turns": 3, **r, "prefill_ratio_off_over_on": round(off / on, 3),
            "ok": bool(on < off), "peak_gb": peak_gb(plan), **memory(plan)}


def _trl(plan: Plan, use_vllm: bool) -> dict:
    """grpo_step's TRL side (same LoRA, lr, loss, data, reward), on this plan's device and dtype."""
    from _trl_processor import TRLQwenVLProcessor
    from datasets import Dataset
    from grpo_step import LORA_ALPHA, LORA_RANK, LR, _reward
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from geospot import prompts
    from geospot.engines.local import _lora_targets
    from geospot.models.load import load_model

    t0 = time.perf_counter()
    lm = load_model(plan.folder, dtype=plan.dtype, device=plan.device)
    load_s = time.perf_counter() - t0
    B, G = plan.images, plan.group
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": prompts.SINGLE_TURN_PROMPT}], "image": s.image,
                             "lat": float(s.lat), "lon": float(s.lon)} for s in _samples(plan, 2 * B)])

    def geo_reward(completions, lat, lon, **_):
        return [_reward(c[0]["content"] if isinstance(c, list) else c, la, lo)
                for c, la, lo in zip(completions, lat, lon)]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.wall, self.peak = [], []

        def on_step_begin(self, args, state, control, **kw):
            reset_peak(plan)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(plan)
            self.wall.append(time.perf_counter() - self.t0)
            self.peak.append(peak_gb(plan))

    timer = StepTimer()
    # 64 rollouts in one training forward would hold ~65 GB of activations at 3B size: like a TRL
    # user on one GPU, train in micro-batches of 2 images' rollouts (one optimizer step, all 64
    # generated at once: steps_per_generation = gradient_accumulation_steps)
    micro = TRL_MICRO_BATCH if (B * G) % TRL_MICRO_BATCH == 0 else B * G
    vllm_args = dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3,
                     generation_kwargs={"min_tokens": plan.tokens}) if use_vllm else dict(
                     generation_kwargs={"min_new_tokens": plan.tokens})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(
            output_dir=tmp, per_device_train_batch_size=micro, gradient_accumulation_steps=B * G // micro,
            num_generations=G, max_completion_length=plan.tokens,
            temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR, adam_beta1=0.9, adam_beta2=0.95,
            weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=0.0, loss_type="dr_grpo", beta=0.0,
            scale_rewards="none", gradient_checkpointing=False, bf16=plan.dtype == "bfloat16", fp16=False,
            use_cpu=not is_cuda(plan), max_steps=2, report_to="none", save_strategy="no", logging_steps=1,
            shuffle_dataset=False, remove_unused_columns=False, dataloader_num_workers=0, seed=0,
            disable_dropout=True, log_completions=False, disable_tqdm=True, **vllm_args)
        trainer = GRPOTrainer(
            model=lm.model, reward_funcs=geo_reward, args=cfg, train_dataset=ds,
            processing_class=TRLQwenVLProcessor(lm.tokenizer, lm.image_processor, plan.px * plan.px),
            peft_config=LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                                   target_modules=_lora_targets(lm.model, "all-linear", False)),
            callbacks=[timer])
        trainer.train()
    step_s = timer.wall[-1]
    return {"vllm": use_vllm, "load_s": round(load_s, 1), "step_s": round(step_s, 3), "rollouts": B * G,
            "micro_batch": micro, "grad_accum": B * G // micro,
            "rollouts_per_s": round(B * G / step_s, 3), "warmup_step_s": round(timer.wall[0], 3),
            "step_peak_gb": timer.peak[-1], **memory(plan)}


def phase_trl(plan: Plan) -> dict:
    return _trl(plan, use_vllm=False)


def phase_trl_vllm(plan: Plan) -> dict:
    from geospot.engines.vllm_sampler import vllm_installed

    if not vllm_installed():
        return {"skipped": "vllm does not import here"}
    return _trl(plan, use_vllm=True)


# -- the driver -------------------------------------------------------------------------------------


def _child(name: str, plan_d: dict, result_path: str) -> None:
    """One phase in its own process; its stdout goes to stderr (the parent's stdout is one JSON line)."""
    os.setpgrp()  # its own process group: the time guard kills vLLM's engine processes with it
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    plan = Plan(**plan_d)
    t0 = time.perf_counter()
    try:
        out = globals()[f"phase_{name}"](plan)
        if is_cuda(plan):
            import torch

            out.setdefault("device", torch.cuda.get_device_name(0))
    except Exception as e:  # recorded, never raised: the next phase still runs
        import traceback

        traceback.print_exc()
        out = {"error": f"{type(e).__name__}: {str(e)[:600]}"}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(result_path).write_text(json.dumps(out, default=str))


def run_phase(ctx, name: str, plan: Plan, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        p = ctx.Process(target=_child, args=(name, asdict(plan), path))  # not daemonic: vLLM starts processes
        p.start()
        p.join(timeout_s)
        timed_out = p.is_alive()
        try:  # the phase and anything it started (vLLM's engine core holds GPU memory)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.is_alive():  # killed before it made its own process group
            p.kill()
        p.join()
        if timed_out:
            return {"error": f"killed by the time guard after {timeout_s:.0f} s"}
        if not os.path.exists(path):
            return {"error": f"the phase's process died with exit code {p.exitcode} (see stderr)"}
        return json.loads(Path(path).read_text())


def summarise(doc: dict) -> dict:
    ph = doc["phases"]

    def rate(name):
        return (ph.get(name) or {}).get("rollouts_per_s")

    for ours, peer, key in (("grpo_torch", "trl", "ratio_rollouts_per_s"),
                            ("grpo_vllm", "trl_vllm", "ratio_vllm_rollouts_per_s")):
        if rate(ours) and rate(peer):
            doc[key] = round(rate(ours) / rate(peer), 3)
    done = [n for n in PHASES if n in ph and "error" not in ph[n] and "skipped" not in ph[n]]
    doc["phases_ok"], doc["phases_failed"] = done, [n for n in PHASES if n in ph and "error" in ph[n]]
    return doc


def write_results(doc: dict, results: Path) -> None:
    data = json.loads(results.read_text()) if results.exists() else {"results": {}}
    data.setdefault("results", {})["gpu_check"] = doc
    results.write_text(json.dumps(finite_json(data), indent=1) + "\n")


def _versions() -> dict:
    """Installed versions of what the phases use (None = missing), read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "vllm", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="the same phases on CPU with the tiny shape (<= 2 min); no results.json unless --results")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-clock budget of the whole run (default 450; dry run 240, a guard against hangs)")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                    help="override the dtype (default bfloat16; dry run float32: --dry-run --dtype bfloat16 runs "
                         "the GPU's dtype on CPU)")
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset (build always runs)")
    ap.add_argument("--results", default=None,
                    help="results.json to put the run into (default benchmarks/results.json; none for a dry run)")
    ap.add_argument("--json-out", default=None,
                    help="also write the run's JSON here (e.g. $OUT/gpu_check.json on a lent machine)")
    ap.add_argument("--merge", default=None, help="only put this saved run's JSON into --results, then exit")
    args = ap.parse_args(argv)
    results = Path(args.results) if args.results else (None if args.dry_run else HERE / "results.json")
    if args.merge:
        try:
            doc = json.loads(Path(args.merge).read_text())
        except (OSError, ValueError) as e:
            ap.error(f"--merge {args.merge}: cannot read it as a gpu_check run's JSON ({e})")
        if not isinstance(doc, dict) or doc.get("benchmark") != "gpu_check":
            ap.error(f"--merge {args.merge}: not a gpu_check run's JSON (its --json-out file)")
        if doc.get("dry_run") and not args.results:  # a CPU rehearsal is not the GPU's record
            ap.error(f"--merge {args.merge}: a --dry-run's JSON; give --results to put it anywhere")
        write_results(doc, results or HERE / "results.json")
        return 0
    plan = Plan(**DRY) if args.dry_run else Plan()
    if args.budget_s is not None:
        plan = replace(plan, budget_s=args.budget_s)
    if args.dtype is not None:
        plan = replace(plan, dtype=args.dtype)
    wanted = [n for n in args.phases.split(",") if n]
    unknown = sorted(set(wanted) - set(PHASES))
    if unknown:
        ap.error(f"unknown phase(s) {unknown}; choose from {', '.join(PHASES)}")
    if plan.budget_s <= 0:
        ap.error(f"--budget-s={plan.budget_s} must be > 0")
    import torch  # children fork from a fork server started clean, so probing CUDA here is harmless

    if is_cuda(plan) and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: run it on a GPU machine, or with --dry-run to check the script on this CPU")
    t_start = time.perf_counter()
    deadline = t_start + plan.budget_s

    ctx = mp.get_context("forkserver")
    # imported once in the fork server instead of once per phase (~10 s each on a busy CPU)
    ctx.set_forkserver_preload(["torch", "transformers", "peft", "geospot.engines.local", "geospot.rl.rollouts",
                                "grpo_step"])
    doc = {"benchmark": "gpu_check", "dry_run": args.dry_run, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
           "plan": asdict(plan), "torch": torch.__version__, "versions": _versions(), "device": "cpu", "phases": {},
           "peer": "trl.GRPOTrainer (transformers generate; then colocated vLLM), same model folder, data, LoRA, lr; "
                   "same run"}
    for name in PHASES:
        if name != "build" and name not in wanted:
            continue
        left = deadline - time.perf_counter()
        if name != "build" and not plan.folder:
            doc["phases"][name] = {"skipped": "no model folder (the build phase failed)"}
        elif left < 5:
            doc["phases"][name] = {"skipped": f"time guard: {left:.0f} s of the {plan.budget_s:.0f} s budget left"}
        else:
            print(f"[gpu_check] {name} ({left:.0f} s left) ...", file=sys.stderr, flush=True)
            res = run_phase(ctx, name, plan, left)
            doc["phases"][name] = res
            if name == "build" and "folder" in res:
                plan = replace(plan, folder=res["folder"])
            if res.get("device"):
                doc["device"] = res["device"]
        doc["wall_s"] = round(time.perf_counter() - t_start, 1)
        summarise(doc)
        for path in filter(None, (results, args.json_out and Path(args.json_out))):
            (write_results(doc, path) if path == results else path.write_text(json.dumps(finite_json(doc)) + "\n"))
    print(json.dumps(finite_json(doc)))
    return 0 if not doc["phases_failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
