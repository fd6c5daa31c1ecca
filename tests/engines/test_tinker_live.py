"""Live test on the Tinker service: runs only when TINKER_API_KEY is set.

A 2-step SFT and a 1-step telescoping RL on the smallest vision model the service serves
(or GEOSPOT_TINKER_MODEL), through the same engine calls the training loops make. Costs a
few cents and a few minutes; CI without a key skips it and says why.

The bodies (`sft_two_steps`, `telescoping_rl_step`) take any Engine, so they read the same
for the local engine."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(
    not os.environ.get("TINKER_API_KEY"),
    reason="live Tinker test: set TINKER_API_KEY (and optionally GEOSPOT_TINKER_MODEL) to run it",
)


def street_photo(seed: int = 0, w: int = 320, h: int = 240) -> Image.Image:
    """A smooth sky/road-like gradient with some noise: a plausible, cheap image."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([120, 170, 230]) * (1 - y) + np.array([90, 90, 80]) * y
    img = sky + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def sft_two_steps(engine, lr: float = 2e-4) -> tuple[float, float]:
    """Two optimizer steps on one small batch; returns the summed answer NLL before each."""
    from geospot.engines.datums import make_datum
    from geospot.engines.types import AdamParams
    from geospot.prompts import SINGLE_TURN_PROMPT, assistant_message, format_answer, user_message

    coords = [(48.86, 2.35), (-33.87, 151.21)]
    datums = []
    for i, (lat, lon) in enumerate(coords):
        mi, w = engine.renderer.supervised_example(
            [user_message(street_photo(i), SINGLE_TURN_PROMPT), assistant_message(format_answer(lat, lon))]
        )
        datums.append(make_datum(mi, weights=w))
    losses = []
    for _ in range(2):
        res = engine.train_step(datums, "cross_entropy", AdamParams(learning_rate=lr))
        assert [len(lp) for lp in res.logprobs] == [d.model_input.length for d in datums]
        nll = -sum(float(np.dot(lp, d.loss_fn_inputs["weights"])) for lp, d in zip(res.logprobs, datums))
        assert np.isfinite(nll) and nll > 0
        losses.append(nll)
    return losses[0], losses[1]


def telescoping_rl_step(engine, group_size: int = 4) -> dict:
    """Roll out one image's group through the 3-turn env, build datums, one IS step."""
    from geospot.data.types import Sample
    from geospot.engines.types import AdamParams, SampleParams
    from geospot.envs.telescoping import TelescopingGroupBuilder
    from geospot.rl.advantages import PerTurnCredit, compute_advantages
    from geospot.rl.datums import build_datums, trajectory_to_datum

    sample = Sample(id="live-0", image=street_photo(7), lat=48.86, lon=2.35, source="live-test")
    builder = TelescopingGroupBuilder(sample, engine.renderer)
    from geospot.rl.rollouts import do_group_rollouts

    trajectories_BG = do_group_rollouts(
        engine, [builder], group_size, SampleParams(max_tokens=24, temperature=1.0, seed=0)
    )
    (group,) = trajectories_BG
    assert len(group) == group_size
    for traj in group:
        for tr in traj.transitions:
            assert len(tr.action_tokens) == len(tr.action_logprobs) > 0
            assert all(np.isfinite(tr.action_logprobs)) and max(tr.action_logprobs) <= 1e-3
    adv = compute_advantages(trajectories_BG, PerTurnCredit())
    datums = build_datums(trajectories_BG, adv)
    if not datums:  # every rollout scored the same (e.g. none parsed): still exercise the step
        datums = [trajectory_to_datum(t, [float(i) - 1.5] * len(t.transitions)) for i, t in enumerate(group)]
    # The trainer scores the sampled tokens as the sampler did (same weights, same sequence).
    sampled_T = [d.loss_fn_inputs["advantages"] != 0 for d in datums]
    before = engine.forward(datums)
    gaps = [np.abs(lp[m] - d.loss_fn_inputs["logprobs"][m]).mean() for lp, d, m in zip(before, datums, sampled_T)]
    res = engine.train_step(datums, "importance_sampling", AdamParams(learning_rate=1e-5))
    assert len(res.logprobs) == len(datums)
    return {
        "turns": [len(t.transitions) for t in group],
        "datums": len(datums),
        "sampler_trainer_gap": float(np.mean(gaps)),
    }


@pytest.fixture(scope="module")
def engine():
    from geospot.engines import make_engine
    from geospot.engines.config import EngineConfig
    from geospot.engines.tinker_engine import fetch_capabilities
    from geospot.engines.tinker_service import served_vision_models

    base = EngineConfig(engine="tinker", lora_rank=8, max_pixels=256 * 256)
    model = os.environ.get("GEOSPOT_TINKER_MODEL")
    if not model:
        vision = served_vision_models(fetch_capabilities(base))
        assert vision, "the Tinker service serves no vision model"
        model = vision[0]
    from dataclasses import replace

    return make_engine(replace(base, model_name=model))


def test_live_sft_two_steps(engine):
    first, second = sft_two_steps(engine)
    assert second < first, f"answer NLL did not drop after one step: {first:.3f} -> {second:.3f}"
    # Sampling after training uses the new weights, and stops on <|im_end|> (kept in the tokens).
    from geospot.engines.types import SampleParams
    from geospot.prompts import SINGLE_TURN_PROMPT, user_message

    prompt = engine.renderer.generation_prompt([user_message(street_photo(0), SINGLE_TURN_PROMPT)])
    (seqs,) = engine.sample([prompt], 2, SampleParams(max_tokens=32, temperature=1.0, seed=1))
    for s in seqs:
        assert len(s.tokens) == len(s.logprobs) > 0
        if s.stop_reason == "stop":
            assert s.tokens[-1] in engine.renderer.stop_token_ids


def test_live_telescoping_rl_and_checkpoint(engine, tmp_path):
    out = telescoping_rl_step(engine)
    assert out["datums"] >= 1 and all(1 <= n <= 3 for n in out["turns"])
    assert out["sampler_trainer_gap"] < 0.1, out  # bf16 on the service: close, not bit-equal

    uri = engine.save_state(str(tmp_path / "checkpoints" / "1" / "engine"))
    assert uri.startswith("tinker://")
    assert (tmp_path / "checkpoints" / "1" / "engine" / "tinker.json").exists()
    engine.load_state(str(tmp_path / "checkpoints" / "1" / "engine"), with_optimizer=True)
    from geospot.engines.types import SampleParams
    from geospot.prompts import SINGLE_TURN_PROMPT, user_message

    prompt = engine.renderer.generation_prompt([user_message(street_photo(3), SINGLE_TURN_PROMPT)])
    (seqs,) = engine.sample([prompt], 1, SampleParams(max_tokens=16))
    assert len(seqs) == 1
