"""SFT learns on CPU: a tiny random Qwen2.5-VL (0.43M params) on the synthetic world goes
from random text to parseable coordinates that use the image.

The untrained model parses nothing (median distance = inf), so "halves the untrained
median" alone would be free. The margin that shows learning is against the best
image-blind answer: the single training location with the smallest held-out median
distance (what a model that learned the format and the prior, but not the image, can
at best say). The trained model must halve that too."""

import io
import time

import numpy as np
import pytest

from geospot.data import load_samples
from geospot.geo import haversine_km
from geospot.train.sft import SFTConfig, train

DATA = "synthetic:n=2000,size=112,seed=0"


def best_blind_median_km(held_out, train_samples) -> float:
    true_N2 = np.array([[s.lat, s.lon] for s in held_out])
    cand_M2 = np.array([[s.lat, s.lon] for s in train_samples])
    d_NM = haversine_km(true_N2[:, None, 0], true_N2[:, None, 1], cand_M2[None, :, 0], cand_M2[None, :, 1])
    return float(np.median(d_NM, axis=0).min())


@pytest.mark.slow
def test_sft_learns_coordinates_from_images(tmp_path):
    cfg = SFTConfig(
        model_name="tiny:qwen2_5_vl:tiny",
        lora_rank=0,  # a random tiny model: train everything, vision tower included
        train_vision=True,
        data=DATA,
        eval_n=64,
        prompt_style="single",
        answer_decimals=1,
        batch_size=16,  # on CPU, more small steps beat fewer big ones
        learning_rate=3e-3,
        lr_schedule="cosine",
        warmup_steps=5,
        max_steps=300,
        eval_every=0,
        save_every=0,
        eval_batch_size=64,
        eval_max_tokens=16,
        log_path=str(tmp_path / "run"),
        behavior_if_log_dir_exists="raise",
    )
    t0, cpu0 = time.time(), time.process_time()
    result = train(cfg, stderr=io.StringIO())
    seconds, cpu = time.time() - t0, time.process_time() - cpu0
    before, after = result.eval_history[0], result.eval_history[cfg.max_steps]
    blind = best_blind_median_km(
        load_samples(DATA, split="val", n=cfg.eval_n), load_samples(DATA, split="train", n=512)
    )
    print(
        f"\nSFT learning: held-out median {before['median_km']:.0f} -> {after['median_km']:.0f} km "
        f"(best image-blind {blind:.0f} km), parsed {before['parsed']:.0%} -> {after['parsed']:.0%}, "
        f"acc@2500km {after['acc_2500km']:.0%}, country {after['country_acc']:.0%}; "
        f"{seconds:.0f} s wall, {cpu:.0f} s CPU"
    )
    assert after["parsed"] >= 0.95
    assert after["median_km"] <= 0.5 * before["median_km"]
    assert after["median_km"] <= 0.5 * blind
