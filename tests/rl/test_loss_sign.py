"""The importance-sampling loss pushes sampled tokens' logprobs in the direction of their
advantage: d loss / d logp_t = -A_t * exp(logp_t - q_t). Hand-worked, then through a datum."""

import numpy as np
import torch

from geospot.engines.losses import compute_loss


def grad_of(loss_fn, lp, q, adv, config=None):
    lp = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    inputs = {"logprobs": torch.tensor(q, dtype=torch.float64), "advantages": torch.tensor(adv, dtype=torch.float64)}
    compute_loss(loss_fn, lp, inputs, config).backward()
    return lp.grad.numpy()


def test_is_gradient_sign_on_policy():
    # on policy (lp == q, ratio 1): gradient = -A
    g = grad_of("importance_sampling", [-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5], [0.5, -0.25, 0.0])
    np.testing.assert_allclose(g, [-0.5, 0.25, 0.0])
    # a descent step raises the positive-advantage token's logprob and lowers the negative one's
    assert -g[0] > 0 and -g[1] < 0


def test_is_gradient_scales_with_ratio_and_ppo_clips():
    lp, q = [np.log(2.0) - 1.0, -1.0], [-1.0, -1.0]  # ratio 2 on token 0, 1 on token 1
    np.testing.assert_allclose(grad_of("importance_sampling", lp, q, [1.0, 1.0]), [-2.0, -1.0])
    # ppo with clip 0.2: ratio 2 > 1.2 with A > 0 -> clipped, no gradient
    g = grad_of("ppo", lp, q, [1.0, 1.0], {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2})
    np.testing.assert_allclose(g, [0.0, -1.0])
