"""Per-prompt seeds (SampleParams.seeds, data-parallel RL): each row draws from its own prompt's
uniforms, picked by inverse CDF in one vectorised step (local_sampler.pick_by_uniform)."""

import pytest
import torch
from engine_helpers import random_image, tiny_engine

from geospot import prompts
from geospot.engines.local_sampler import pick_by_uniform
from geospot.engines.types import SampleParams


def test_inverse_cdf_pick_worked_by_hand():
    # cdf of [0, .25, 0, .75] is [0, .25, .25, 1]: u < .25 -> token 1, u >= .25 -> token 3;
    # the zero-probability tokens 0 and 2 are never taken, u = 0 included
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75]]).repeat(5, 1)
    u = torch.tensor([0.0, 0.1, 0.2499, 0.25, 0.9999999])
    assert pick_by_uniform(probs, u).tolist() == [1, 1, 1, 3, 3]
    # unnormalised rows (top-p zeroes a tail) scale u by the row's total: .4 of 2.0 = .8 -> token 1 (cdf 0.5, 1.5)
    assert pick_by_uniform(torch.tensor([[0.5, 1.0, 0.5, 0.0]]), torch.tensor([0.4])).tolist() == [1]
    # u x total rounding up to the total never steps past the last token with probability
    assert pick_by_uniform(torch.tensor([[0.3, 0.7, 0.0]]), torch.tensor([1.0])).tolist() == [1]


def test_a_prompts_rollouts_do_not_depend_on_the_batch_it_is_sampled_with():
    e = tiny_engine("qwen2_5_vl")

    def prompt(seed):
        return e.renderer.generation_prompt([prompts.user_message(random_image(seed), "Where?")])

    p0, p1 = prompt(0), prompt(1)
    together = e.sample([p0, p1], 3, SampleParams(max_tokens=6, seed=0, seeds=(11, 22)))
    alone = e.sample([p1], 3, SampleParams(max_tokens=6, seed=5, seeds=(22,)))
    # same seed, same tokens, whatever else was in the call; the logprobs equal to float rounding (a matmul over
    # 6 rows blocks its sums otherwise than over 3 on some CPUs: 1e-7 apart)
    assert [s.tokens for s in together[1]] == [s.tokens for s in alone[0]]
    for a, b in zip(together[1], alone[0]):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5) and a.stop_reason == b.stop_reason
    assert len({s.tokens for s in together[1]}) > 1  # the G rows of a prompt differ (temperature 1)
    assert e.sample([p1], 3, SampleParams(max_tokens=6, seeds=(23,)))[0] != alone[0]
