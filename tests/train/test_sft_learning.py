"""SFT learns on CPU: a tiny random Qwen2.5-VL on the synthetic world goes from random
text to parseable coordinates that are at least twice as close on held-out images."""

import io
import time

import pytest

from geospot.train.sft import SFTConfig, train


@pytest.mark.slow
def test_sft_halves_heldout_median_distance(tmp_path):
    cfg = SFTConfig(
        model_name="tiny:qwen2_5_vl:tiny",
        lora_rank=0,  # a random tiny model: train everything
        data="synthetic:n=2000,size=112,seed=0",
        eval_n=64,
        prompt_style="single",
        answer_decimals=1,
        batch_size=32,
        learning_rate=2e-3,
        lr_schedule="cosine",
        warmup_steps=5,
        max_steps=120,
        eval_every=0,
        save_every=0,
        eval_batch_size=64,
        eval_max_tokens=16,
        log_path=str(tmp_path / "run"),
        behavior_if_log_dir_exists="raise",
    )
    t0 = time.time()
    result = train(cfg, stderr=io.StringIO())
    seconds = time.time() - t0
    before, after = result.eval_history[0], result.eval_history[cfg.max_steps]
    print(f"\nSFT learning: median {before['median_km']:.0f} -> {after['median_km']:.0f} km, "
          f"parsed {before['parsed']:.2f} -> {after['parsed']:.2f}, {seconds:.0f} s")
    assert after["parsed"] >= 0.95
    assert after["median_km"] <= 0.5 * before["median_km"]
