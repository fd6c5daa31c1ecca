import numpy as np
import pytest

from geospot.engines.types import ModelInput
from geospot.envs.types import Trajectory, Transition
from geospot.rl.advantages import CREDITS, PerTurnCredit, TrajectoryCredit, center, compute_advantages, returns_to_go


def traj(*rewards):
    return Trajectory(tuple(Transition(ModelInput(), (1,), (-0.1,), r) for r in rewards))


def test_returns_to_go_hand_worked():
    np.testing.assert_allclose(returns_to_go([0.2, 0.3, 0.1]), [0.6, 0.4, 0.1])
    np.testing.assert_allclose(returns_to_go([0.5]), [0.5])
    # gamma 0.5: G_3 = 0.1, G_2 = 0.3 + 0.05 = 0.35, G_1 = 0.2 + 0.175 = 0.375
    np.testing.assert_allclose(returns_to_go([0.2, 0.3, 0.1], gamma=0.5), [0.375, 0.35, 0.1])
    np.testing.assert_allclose(returns_to_go([0.2, 0.3, 0.1], gamma=0.0), [0.2, 0.3, 0.1])


def test_center_with_and_without_std():
    np.testing.assert_allclose(center([1.0, 3.0]), [-1.0, 1.0])
    np.testing.assert_allclose(center([1.0, 5.0]), [-2.0, 2.0])
    np.testing.assert_allclose(center([1.0, 5.0], scale_by_std=True), [-1.0, 1.0], atol=1e-5)  # std = 2


# Three telescoping rollouts of one image, per-turn rewards r_t:
#   A: [0.2, 0.3, 0.1] -> G_t = [0.6, 0.4, 0.1]
#   B: [0.4, 0.0, 0.2] -> G_t = [0.6, 0.2, 0.2]
#   C: [0.1, 0.2, 0.0] -> G_t = [0.3, 0.2, 0.0]
# turn means 0.5, 0.8/3, 0.1 -> per-turn advantages below.
GROUP = [traj(0.2, 0.3, 0.1), traj(0.4, 0.0, 0.2), traj(0.1, 0.2, 0.0)]


def test_per_turn_return_to_go_centred_at_each_turn():
    adv = compute_advantages([GROUP], PerTurnCredit()).advantages[0]
    np.testing.assert_allclose(adv[0], [0.1, 0.4 - 0.8 / 3, 0.0], atol=1e-12)
    np.testing.assert_allclose(adv[1], [0.1, 0.2 - 0.8 / 3, 0.1], atol=1e-12)
    np.testing.assert_allclose(adv[2], [-0.2, 0.2 - 0.8 / 3, -0.1], atol=1e-12)


def test_own_turn_credit_pays_each_turn_its_own_reward_centred_at_that_turn():
    # gamma 0: turn t gets r_t. Turn means (0.2+0.4+0.1)/3 = 0.7/3, 0.5/3, 0.1.
    adv = compute_advantages([GROUP], CREDITS["own_turn"]).advantages[0]
    np.testing.assert_allclose(adv[0], [0.2 - 0.7 / 3, 0.3 - 0.5 / 3, 0.0], atol=1e-12)
    np.testing.assert_allclose(adv[1], [0.4 - 0.7 / 3, 0.0 - 0.5 / 3, 0.1], atol=1e-12)
    np.testing.assert_allclose(adv[2], [0.1 - 0.7 / 3, 0.2 - 0.5 / 3, -0.1], atol=1e-12)
    # one turn: every credit is the centred reward
    one = [traj(0.2), traj(0.6)]
    for credit in CREDITS.values():
        np.testing.assert_allclose(np.concatenate(compute_advantages([one], credit).advantages[0]), [-0.2, 0.2])


def test_trajectory_credit_is_one_centred_total_for_all_turns():
    adv = compute_advantages([GROUP], TrajectoryCredit()).advantages[0]
    np.testing.assert_allclose(np.stack(adv), [[0.1] * 3, [0.1] * 3, [-0.2] * 3], atol=1e-12)


def test_per_turn_with_an_early_format_break():
    # A broke format at turn 2 after scoring 0.2: r = [0.2, -0.2 - 0.1] -> G = [-0.1, -0.3].
    group = [traj(0.2, -0.3), traj(0.4, 0.0, 0.2), traj(0.1, 0.2, 0.0)]
    adv = compute_advantages([group], PerTurnCredit()).advantages[0]
    m0, m1 = (-0.1 + 0.6 + 0.3) / 3, (-0.3 + 0.2 + 0.2) / 3
    np.testing.assert_allclose(adv[0], [-0.1 - m0, -0.3 - m1], atol=1e-12)
    np.testing.assert_allclose(adv[1], [0.6 - m0, 0.2 - m1, 0.1], atol=1e-12)  # turn 3: only B, C alive (mean 0.1)
    np.testing.assert_allclose(adv[2], [0.3 - m0, 0.2 - m1, -0.1], atol=1e-12)


@pytest.mark.parametrize("credit", [PerTurnCredit(), TrajectoryCredit()])
def test_constant_groups_are_dropped_and_counted(credit):
    const = [traj(0.5), traj(0.5), traj(0.5)]
    const3 = [traj(0.2, 0.1, 0.0), traj(0.2, 0.1, 0.0)]
    res = compute_advantages([const, GROUP, const3], credit)
    assert res.dropped == 2 and res.kept == [1]
    assert len(res.advantages) == 1


def test_std_scaling_per_turn():
    adv = compute_advantages([[traj(1.0), traj(5.0)]], PerTurnCredit(), scale_by_std=True).advantages[0]
    np.testing.assert_allclose([adv[0][0], adv[1][0]], [-1.0, 1.0], atol=1e-5)
