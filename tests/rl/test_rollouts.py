import numpy as np
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs.rewards import GeoScoreReward, KernelReward
from geospot.envs.single_turn import SingleTurnGroupBuilder
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.prompts import format_answer
from geospot.rl.rollouts import RolloutStats, do_group_rollouts
from geospot.rl.testing import ScriptedEngine

SAMPLES = [Sample(id=f"s{i}", image=Image.new("RGB", (8, 8)), lat=10.0 * i, lon=5.0) for i in range(2)]


def test_telescoping_rollouts_batch_all_groups_per_turn():
    # rollout g answers lat 10*g at every turn; rollout 2 of each image breaks format at turn 2
    def policy(prompt, i):
        if prompt.count("<a>") == 1:  # first turn: sample index = rollout index
            return format_answer(10.0 * i, 5.0)
        if "previous guess was (20.0, 5.0)" in prompt:
            return "???"
        return format_answer(float(prompt.split("previous guess was (")[-1].split(",")[0]), 5.0)

    eng = ScriptedEngine(policy)
    builders = [TelescopingGroupBuilder(s, eng.renderer, GeoScoreReward()) for s in SAMPLES]
    stats = RolloutStats()
    traj_BG = do_group_rollouts(eng, builders, 3, SampleParams(max_tokens=32, seed=1), stats)
    # one engine call per turn, holding every group: 2 prompts x 3 samples, then 6 x 1, 4 x 1
    assert eng.calls == [(2, 3), (6, 1), (4, 1)]
    assert [len(t.transitions) for g in traj_BG for t in g] == [3, 3, 2] * 2
    assert stats.turns == 3 and stats.sampled_tokens > 0
    for _b, group in enumerate(traj_BG):
        assert abs(group[2].total_reward - (-0.1)) < 1e-12  # format break: return = penalty
        for g, traj in enumerate(group[:2]):
            # each turn repeats lat 10*g -> the score never changes after turn 1
            assert abs(traj.total_reward - traj.transitions[0].reward) < 1e-12
            assert traj.transitions[-1].metrics["lat"] == 10.0 * g


def test_single_turn_rollouts_one_call():
    eng = ScriptedEngine(lambda p, i: format_answer(0.0, 5.0 + i))
    builders = [SingleTurnGroupBuilder(s, eng.renderer, KernelReward(500.0)) for s in SAMPLES]
    traj_BG = do_group_rollouts(eng, builders, 4, SampleParams())
    assert eng.calls == [(2, 4)]
    rewards = np.array([[t.total_reward for t in g] for g in traj_BG])
    assert rewards.shape == (2, 4)
    assert np.all(np.diff(rewards[0]) < 0)  # further east of (0, 5) = lower reward
