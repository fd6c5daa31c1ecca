import math

import numpy as np
import pytest
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import ImageChunk
from geospot.envs.rewards import GeoScoreReward, KernelReward
from geospot.envs.single_turn import SingleTurnEnv, SingleTurnGroupBuilder
from geospot.envs.telescoping import TelescopingEnv, TelescopingGroupBuilder, coarse_view, turn_images, turn_prompt
from geospot.geo import haversine_km
from geospot.prompts import TELESCOPING_PROMPTS, format_answer
from geospot.rl.testing import EOT, CharRenderer, text_of

SAMPLE = Sample(id="s0", image=Image.new("RGB", (8, 8)), lat=10.0, lon=20.0)
R = CharRenderer()


def toks(text):
    return [ord(c) for c in text] + [EOT]


def test_reward_objects_hand_worked():
    assert KernelReward(100.0)(100.0) == pytest.approx(math.exp(-1))
    assert KernelReward(25.0)(0.0) == 1.0
    assert GeoScoreReward()(1492.7) == pytest.approx(math.exp(-1), rel=1e-6)
    with pytest.raises(ValueError, match="tau_km"):
        KernelReward(0.0)


def test_single_turn_kernel_reward_and_format_penalty():
    env = SingleTurnEnv(SAMPLE, R, KernelReward(500.0))
    assert "#" in text_of(env.initial_observation())  # the image is in the prompt
    res = env.step(toks(format_answer(12.0, 21.0)))
    d = haversine_km(12.0, 21.0, 10.0, 20.0)
    assert res.done and res.next_observation is None
    assert res.reward == pytest.approx(math.exp(-d / 500.0))
    assert res.metrics["distance_km"] == pytest.approx(d)
    with pytest.raises(RuntimeError):
        env.step(toks("again"))
    bad = SingleTurnEnv(SAMPLE, R, KernelReward(500.0), format_penalty=-0.25)
    bad.initial_observation()
    res = bad.step(toks("somewhere nice"))
    assert res.done and res.reward == -0.25 and res.metrics["parsed"] == 0.0
    assert len(SingleTurnGroupBuilder(SAMPLE, R, KernelReward(1.0)).make_envs(4)) == 4


def test_telescoping_rewards_sum_to_final_score_and_prompts_show_rounded_guess():
    env = TelescopingEnv(SAMPLE, R, GeoScoreReward())
    obs0 = env.initial_observation()
    guesses = [(30.06, 40.04), (12.34, 22.35), (10.5, 20.5)]
    rewards, obs = [], obs0
    for t, (lat, lon) in enumerate(guesses):
        action = toks(format_answer(lat, lon))
        res = env.step(action)
        rewards.append(res.reward)
        if t < 2:
            # next observation = previous observation + sampled tokens + the new user turn
            nxt = text_of(res.next_observation)
            assert nxt.startswith(text_of(obs) + format_answer(lat, lon) + "|")
            obs = res.next_observation
    assert res.done and res.next_observation is None
    prompts = text_of(obs)
    assert "(30.1, 40.0)" in prompts  # turn 2 shows the coarse guess with 1 decimal
    assert "(12.34, 22.35)" in prompts  # turn 3 shows the refined guess with 2 decimals
    s = [GeoScoreReward()(haversine_km(a, b, 10.0, 20.0)) for a, b in guesses]
    np.testing.assert_allclose(rewards, [s[0], s[1] - s[0], s[2] - s[1]], atol=1e-12)
    assert sum(rewards) == pytest.approx(s[2])  # the return is the final score


def test_telescoping_format_break_ends_episode_with_penalty_as_return():
    env = TelescopingEnv(SAMPLE, R, KernelReward(1000.0), format_penalty=-0.1)
    env.initial_observation()
    r1 = env.step(toks(format_answer(11.0, 20.0))).reward
    res = env.step(toks("no idea"))
    assert res.done and res.metrics["parsed"] == 0.0
    assert r1 + res.reward == pytest.approx(-0.1)


def test_turn_prompt_and_group_builder():
    assert turn_prompt(TELESCOPING_PROMPTS, 0, None) == TELESCOPING_PROMPTS[0]
    assert "(1.2, 3.5)" in turn_prompt(TELESCOPING_PROMPTS, 1, (1.23, 3.456))
    envs = TelescopingGroupBuilder(SAMPLE, R, prompts=TELESCOPING_PROMPTS[:2]).make_envs(3)
    assert len(envs) == 3 and envs[0].num_turns == 2


def test_group_builders_render_the_image_once():
    class Counting(CharRenderer):
        calls = 0

        def generation_prompt(self, messages):
            Counting.calls += 1
            return super().generation_prompt(messages)

    r = Counting()
    for builder in (SingleTurnGroupBuilder(SAMPLE, r, KernelReward(1.0)), TelescopingGroupBuilder(SAMPLE, r)):
        Counting.calls = 0
        envs = builder.make_envs(8)
        obs = [e.initial_observation() for e in envs]
        assert Counting.calls == 1 and all(o is obs[0] for o in obs)


def test_coarse_view_is_a_box_thumbnail_hand_worked():
    # a 4x2 image whose 2x2 blocks average to 10 and 30 (red channel)
    img = Image.fromarray(np.array([[[0] * 3, [20] * 3, [20] * 3, [40] * 3],
                                    [[20] * 3, [0] * 3, [40] * 3, [20] * 3]], dtype=np.uint8))
    thumb = coarse_view(img, 2)
    assert thumb.size == (2, 1)
    assert np.asarray(thumb)[0, :, 0].tolist() == [10, 30]
    assert coarse_view(img, 1) is img
    # relative to what the model sees: a 1000x500 photo under a 20,000-pixel budget is seen at
    # 200x100, so its half-size thumbnail is 100x50 (not 500x250, which the budget would cut back)
    assert coarse_view(Image.new("RGB", (1000, 500)), 2, max_pixels=20_000).size == (100, 50)
    assert coarse_view(Image.new("RGB", (100, 50)), 2, max_pixels=20_000).size == (50, 25)
    assert turn_images(img, 1, 3) == [img, None, None]
    views = turn_images(img, 2, 3)
    assert views[0].size == (2, 1) and views[1] is img and views[2] is None


def _images(mi):
    return [c.image for c in mi.chunks if isinstance(c, ImageChunk)]


def test_zoom_shows_a_thumbnail_first_and_the_full_photo_on_turn_two():
    photo = Image.new("RGB", (8, 6))
    sample = Sample(id="z", image=photo, lat=10.0, lon=20.0)
    envs = TelescopingGroupBuilder(sample, R, zoom=2).make_envs(2)
    assert envs[0].views[0] is envs[1].views[0]  # the thumbnail is made once per group, not per rollout
    obs = envs[0].initial_observation()
    assert [im.size for im in _images(obs)] == [(4, 3)]  # the first look: half size
    obs = envs[0].step(toks(format_answer(11.0, 21.0))).next_observation
    assert [im.size for im in _images(obs)] == [(4, 3), (8, 6)]  # turn 2 brings the full photo
    obs = envs[0].step(toks(format_answer(10.5, 20.5))).next_observation
    assert [im.size for im in _images(obs)] == [(4, 3), (8, 6)]  # turn 3 refines with both in view
    plain = TelescopingEnv(sample, R)  # zoom 1: the original, one photo and text turns
    obs = plain.initial_observation()
    assert _images(obs) == [photo]
    assert _images(plain.step(toks(format_answer(11.0, 21.0))).next_observation) == [photo]
