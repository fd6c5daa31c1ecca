"""The demo's recipe: the world it trains in, its presets, and what each stage runs (`DemoConfig` ->
the SFT and GRPO configs), with the measurement behind every choice beside it. demo.py runs the
stages; demo_report.py judges them. The measurements: docs/rl_vs_sft.md ("The demo's recipe")."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

# The world of the demo: 8 countries (4 regions each) on 6 continents, cues kept clear
# (difficulty 0.1) so a 0.43 M-parameter model can learn a real map of it in minutes, and two pairs
# of look-alike countries >= 5,000 km apart (ambiguity 0.5: half the images could be either twin).
# Why the look-alikes: there the token loss and the distance disagree. SFT learns the digits of both
# twins and greedy decoding strings digits of each together into an answer in neither country (on
# the look-alike images 36-61 of 93 of SFT's greedy answers: the 4th pass's runs, 202 val images); a
# distance reward pays for one coherent place. That is where RL earns its place for a reason a user
# can see — and, measured, the only world tried where GRPO improved greedy beyond noise on every seed
# (docs/rl_vs_sft.md).
DEMO_DATA = "synthetic:n=4000,size=112,seed=0,regions=8,difficulty=0.1,ambiguity=0.5"


@dataclass(frozen=True)
class Preset:
    sft_steps: int
    rl_single_steps: int
    rl_steps: int  # telescoping-only GRPO steps after the mixed stage (0 = none; quick keeps a few to test it)
    eval_n: int
    tau_steps: int = 0  # > 0: also run the τ study with this many GRPO steps per arm


# `default` fits the 5-minute budget on 2 quiet cores: 213-216 CPU s (SFT 46-50, mixed GRPO 138-145,
# evals 23-24; one torch thread), 3 min 28 s wall at load 1.1. SFT stops at 300 steps, while its map
# is still rough, so GRPO has room (from a converged 450-step SFT, 400 GRPO steps moved greedy by
# +3 / -41 in the world without look-alikes). No telescoping-only stage: with 24 (or 72)
# telescoping-only steps after single-turn GRPO the final turn was never closer than the first,
# for about the same CPU per telescoping group as the mixed groups. 431 held-out images: all of the
# world's val and test ids (5 % + 5 % of its 4,000, by hash; training reads neither). The greedy band
# (paired bootstrap, 95 %) is about ±80-130 GeoScore there, against ±120-190 on the 202 val images
# alone, where a +94 gain could not be told from noise (docs/rl_vs_sft.md, 8th pass).
# `quick` is the test's size; `long` adds the τ study and more steps.
PRESETS = {
    "quick": Preset(sft_steps=200, rl_single_steps=60, rl_steps=4, eval_n=48),
    "default": Preset(sft_steps=300, rl_single_steps=300, rl_steps=0, eval_n=431),
    "long": Preset(sft_steps=600, rl_single_steps=600, rl_steps=0, eval_n=431, tau_steps=150),
}


@dataclass(frozen=True)
class DemoConfig:
    model_name: str = "tiny:qwen2_5_vl:tiny"
    data: str = DEMO_DATA
    sft_steps: int = PRESETS["default"].sft_steps
    rl_single_steps: int = PRESETS["default"].rl_single_steps
    rl_steps: int = PRESETS["default"].rl_steps
    eval_n: int = PRESETS["default"].eval_n
    tau_steps: int = 0
    out: str = "runs/demo"
    seed: int = 0
    # SFT: full fine-tuning of a random tiny model (LoRA on random weights learns little),
    # small batches and a high lr — many cheap steps is what works on a CPU. `both` prompt
    # styles (each image draws single or telescoping): the GRPO stages use both prompts, and
    # SFT must have seen the prompt it is judged on, else GRPO's gain is partly learning a new
    # prompt (measured: SFT on telescoping only scores 1,082 greedy on the single prompt).
    # Earlier turns' guesses are shown with realistic noise so the later turns learn to refine
    # rather than copy (geospot.envs.examples.telescoping_messages).
    sft_batch_size: int = 16
    sft_lr: float = 3e-3
    sft_prompt_style: str = "both"
    answer_decimals: int = 1
    telescoping_noise_km: tuple[float, float] = (2000.0, 1000.0)
    # `zoom` (envs/telescoping.py): the first telescoping turn sees a 4x smaller thumbnail (28 px, one
    # vision token), the second brings the full photo; the single-turn prompt always sees the full
    # photo. Why: a refine turn that sees nothing new can repair a weak first guess but not see
    # sharper, and this model's third turn copies digits unreliably. With zoom 1 the first turn is
    # already as good as the model gets on seed 0, so the final turn ended farther beyond noise
    # (+465 km on 202 images, +719 on 431, on this machine); with zoom 4 the coarse look is a glance,
    # and the turn with the full photo is where the refinement comes from: final closer than first
    # beyond noise on seeds 0-3, GRPO's greedy gain beyond noise on all four (on 431 images);
    # 213-216 CPU s per demo against 171-223. The final turn is still farther than the second on 2
    # seeds of 4 (docs/rl_vs_sft.md, 5th-8th passes).
    zoom: int = 4
    # GRPO, stage 1: single-turn groups. One turn costs ~1/6 of a telescoping step, so it gets ~6x
    # more updates in the same seconds; kernel reward exp(-d/τ) with τ following the policy's
    # median error (RLConfig default), lr 8e-5 (docs/rl_vs_sft.md: 2e-5..4e-5 moved less,
    # 1.6e-4 lost greedy score). 8 images x 8 rollouts per step.
    rl_single_lr: float = 8e-5
    # ... and a quarter of each batch (2 of 8 images) played as telescoping groups, GeoScore reward
    # per turn r_t = S(d_t) - S(d_{t-1}) (it telescopes to the final score, so a refine turn pays
    # only if it lands closer). Why: SFT's refine turns copy the previous guess digit by digit and
    # drop or repeat digits ("68.60" -> "6.6": cheap for the token loss, thousands of km for the
    # distance), and single-turn GRPO alone made the final turn worse still (5,227 km after 450
    # steps). A larger share costs more CPU (0.25 already doubles a step's: ~0.5 vs 0.25 s).
    # Written as a telescoping run with single-turn groups mixed in (3/4 of the images): the same
    # batches, and the run folder says "telescoping", so `geospot predict model=runs/demo/rl` asks
    # with the telescoping turns, as it did when the last stage was telescoping-only.
    rl_env: str = "telescoping"
    rl_mix_env: str | None = "single"
    rl_mix_share: float = 0.75
    # Credit of the telescoping turns: each turn its own reward, centred across the group (`own_turn`):
    # the coarse turn is paid for its own distance, a refine turn for how much closer it lands than
    # the turn before. With the return-to-go (`per_turn`, RLConfig's default) the coarse turn's
    # credit is the final score alone, and GRPO turned it into a stub — an integer with a digit left
    # off — that the later turns complete: "final closer than first" then held only because the first
    # turn was broken, and on 2 of 3 fresh seeds not even that. With own_turn, seeds 0-3: the first
    # turn is a real guess; the final turn is closer on 3 and within noise on 1 (seed 0, where the first
    # turn is already as good as the single-turn answer), never farther beyond noise (docs/rl_vs_sft.md, 4th pass;
    # zoom 1, 202 images). At zoom 4 on 431 images: closer beyond noise on seeds 0-3 (8th pass).
    rl_credit: str = "own_turn"
    # GRPO, stage 2 (rl_steps > 0 only): telescoping-only steps after the mixed stage.
    rl_lr: float = 4e-5
    rl_batch_size: int = 8
    rl_group_size: int = 8
    max_tokens: int = 16
    # Eval: greedy (what a user of the model sees) AND seeded samples at temperature 1 (the
    # policy GRPO trains), one per image per seed, averaged over the seeds; same held-out
    # images for every stage, so each change is judged by a paired bootstrap over them. Two
    # sampling seeds: the sampled change (+400-500) is far outside its band; the greedy one
    # (+127-456) needs the images (eval_n).
    eval_style: str = "single"
    eval_split: str = "heldout"  # val + test: ids no training stage reads (data/stream.py SPLITS)
    eval_sample_seeds: tuple[int, ...] = (5, 6)
    # τ study: an early warm start — the SFT run's checkpoint at this step (in the default 300-step
    # run, seed 0: 100 % parsed, 7,058 km greedy median on the 431 held-out ids: format, no map yet)
    # where a fixed τ = 25 km gives every rollout ≈ 0 reward — then single-turn
    # GRPO with τ following the error vs a fixed τ of `tau_fixed_km`, the same steps and seed.
    tau_format_steps: int = 150
    tau_fixed_km: float = 25.0
    rl_extra: dict = field(default_factory=dict)  # any other RLConfig key of the final stage (tests, experiments)


def stage_configs(cfg: DemoConfig):
    """(sft, rl_single, rl) configs; each GRPO stage starts from the one before it."""
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    out = Path(cfg.out)
    sft = SFTConfig(
        model_name=cfg.model_name, lora_rank=0, train_vision=True, data=cfg.data, eval_n=0,
        prompt_style=cfg.sft_prompt_style, answer_decimals=cfg.answer_decimals, telescoping_decimals=(0, 1),
        telescoping_noise_km=cfg.telescoping_noise_km, zoom=cfg.zoom,
        batch_size=cfg.sft_batch_size, learning_rate=cfg.sft_lr, lr_schedule="cosine", warmup_steps=5,
        eval_split=cfg.eval_split,  # the demo's own eval is written into the run as its loop's would be
        max_steps=cfg.sft_steps, eval_every=0, eval_at_start=False, log_every=50,
        # the τ study starts from the checkpoint at tau_format_steps: keep it (and every other)
        save_every=cfg.tau_format_steps if cfg.tau_steps else 0, keep_checkpoints=0,
        log_path=str(out / "sft"), behavior_if_log_dir_exists="raise", seed=cfg.seed,
    )
    # The engine keys are passed explicitly: a GRPO run's config records None for what it inherited
    # from the SFT run, so the telescoping stage (started from the single-turn run) would not find them.
    engine = {k: getattr(sft, k, None) for k in ("model_name", "lora_rank", "train_vision", "max_pixels")}
    common = {
        **{k: v for k, v in engine.items() if v is not None},
        "data": cfg.data,
        "eval_n": 0,
        "eval_split": cfg.eval_split,
        "batch_size": cfg.rl_batch_size,
        "group_size": cfg.rl_group_size,
        "max_tokens": cfg.max_tokens,
        "eval_every": 0,
        "eval_at_start": False,
        "log_every": 50,  # as SFT: a progress line every 50 steps, not 300 lines per stage
        "behavior_if_log_dir_exists": "raise",
        "seed": cfg.seed,
        "advantage": cfg.rl_credit,
        "zoom": cfg.zoom,
    }
    single = RLConfig(env_type=cfg.rl_env, load_checkpoint_path=str(out / "sft"), max_steps=max(cfg.rl_single_steps, 1),
                      learning_rate=cfg.rl_single_lr, save_every=max(cfg.rl_single_steps, 1), log_images_every=10,
                      mix_env_type=cfg.rl_mix_env, mix_share=cfg.rl_mix_share,
                      # the last GRPO stage writes `rl`: the folder `geospot predict model=runs/demo/rl` names
                      log_path=str(out / ("rl-single" if cfg.rl_steps else "rl")), **common)
    start = single.log_path if cfg.rl_single_steps else str(out / "sft")
    rl = RLConfig(
        **{
            **common,
            "env_type": "telescoping",
            "load_checkpoint_path": start,
            "max_steps": max(cfg.rl_steps, 1),
            "learning_rate": cfg.rl_lr,
            "save_every": max(cfg.rl_steps, 1),
            "log_path": str(out / "rl"),
            **cfg.rl_extra,
        }
    )
    return sft, single, rl


def tau_configs(cfg: DemoConfig):
    """(the format-only checkpoint, GRPO with τ following the error, GRPO with fixed τ): same seed, steps, data."""
    from geospot.train.rl import RLConfig

    sft, single, _ = stage_configs(cfg)
    out = Path(cfg.out) / "tau"
    fmt = str(Path(sft.log_path) / "checkpoints" / str(cfg.tau_format_steps))
    # single-turn only (no telescoping mix): the study is about τ, which the telescoping GeoScore reward does not use
    arm = {"load_checkpoint_path": fmt, "max_steps": cfg.tau_steps, "save_every": cfg.tau_steps, "log_images_every": 0,
           "env_type": "single", "mix_env_type": None, "mix_share": RLConfig().mix_share, "zoom": 1}
    # follow_error clips τ to [tau_end_km, tau_start_km]: the cap is raised above a format-only
    # policy's ~7,000 km error, else τ would sit at the 2,000 km cap instead of following it.
    follow = replace(
        single, **arm, tau_schedule="follow_error", tau_start_km=10000.0, log_path=str(out / "follow-error")
    )
    fixed = replace(single, **arm, tau_schedule="constant", tau_start_km=cfg.tau_fixed_km, log_path=str(out / "fixed"))
    return fmt, follow, fixed
