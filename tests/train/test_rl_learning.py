"""GRPO learns on CPU, starting from a short SFT checkpoint made here with the SFT API
(tiny random Qwen2.5-VL, synthetic world, full fine-tuning).

- single-turn GRPO raises the held-out greedy mean GeoScore by a clear margin;
- telescoping GRPO: on held-out images the final turn's median distance is below the first's."""

import io
import math
import time

import numpy as np
import pytest

from geospot.train.common import read_jsonl

DATA = "synthetic:n=2000,size=56,seed=0"


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from geospot.train.sft import SFTConfig, train

    log = tmp_path_factory.mktemp("sft") / "run"
    t0 = time.time()
    train(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, data=DATA, eval_n=0, prompt_style="both",
                    answer_decimals=1, batch_size=32, learning_rate=3e-3, lr_schedule="cosine", warmup_steps=5,
                    max_steps=SFT_STEPS, save_every=0, log_path=str(log), behavior_if_log_dir_exists="raise"),
          stderr=io.StringIO())
    print(f"\nSFT warm start: {SFT_STEPS} steps, {time.time() - t0:.0f} s")
    return log


SFT_STEPS = 120


def rl(tmp_path, sft_run, **kw):
    from geospot.train.rl import RLConfig, run

    cfg = RLConfig(load_checkpoint_path=str(sft_run), data=DATA, eval_n=64, log_images_every=0,
                   log_path=str(tmp_path / "rl"), behavior_if_log_dir_exists="raise", **kw)
    t0 = time.time()
    run(cfg)
    rows = read_jsonl(tmp_path / "rl" / "metrics.jsonl")
    evals = {r["step"]: r for r in rows if "eval/geoscore" in r}
    return evals, time.time() - t0


@pytest.mark.slow
def test_single_turn_grpo_raises_heldout_geoscore(tmp_path, sft_run):
    evals, seconds = rl(tmp_path, sft_run, env_type="single", batch_size=8, group_size=8, max_steps=STEPS,
                        learning_rate=2e-5, tau_schedule="follow_error", eval_every=STEPS, max_tokens=16)
    before, after = evals[0], evals[STEPS]
    print(f"\nsingle-turn GRPO: geoscore {before['eval/geoscore']:.4f} -> {after['eval/geoscore']:.4f}, "
          f"median {before['eval/median_km']:.0f} -> {after['eval/median_km']:.0f} km, {seconds:.0f} s")
    assert after["eval/parsed"] >= 0.9
    assert after["eval/geoscore"] >= before["eval/geoscore"] + MARGIN


STEPS, MARGIN = 20, 0.02


@pytest.mark.slow
def test_telescoping_final_turn_beats_first_turn_on_heldout(tmp_path, sft_run):
    from geospot.data import load_samples
    from geospot.engines import EngineConfig, make_engine
    from geospot.eval import evaluate
    from geospot.geo import haversine_km
    from geospot.train.checkpoint import latest_checkpoint, read_checkpoint

    evals, seconds = rl(tmp_path, sft_run, env_type="telescoping", batch_size=8, group_size=8, max_steps=10,
                        learning_rate=2e-5, eval_every=10, eval_at_start=False, max_tokens=16)
    engine = make_engine(EngineConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, device="cpu"))
    engine.load_state(read_checkpoint(latest_checkpoint(tmp_path / "rl")).engine_path, with_optimizer=False)
    held = load_samples(DATA, split="val", n=64)
    preds = evaluate(engine, held, prompt_style="telescoping", max_tokens=16).predictions

    def turn_median(t):
        d = [haversine_km(p.turn_guesses[t][0], p.turn_guesses[t][1], p.true_latitude, p.true_longitude)
             if len(p.turn_guesses) > t and p.turn_guesses[t] is not None else math.inf for p in preds]
        return float(np.median(d))

    first, final = turn_median(0), turn_median(2)
    print(f"\ntelescoping GRPO: held-out median turn 1 {first:.0f} km -> turn 3 {final:.0f} km, "
          f"geoscore {evals[10]['eval/geoscore']:.4f}, {seconds:.0f} s")
    assert math.isfinite(final) and final < first
