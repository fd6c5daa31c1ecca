import numpy as np
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.datums import all_tokens
from geospot.engines.types import SampleParams
from geospot.envs.rewards import GeoScoreReward
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.prompts import format_answer
from geospot.rl.advantages import PerTurnCredit, compute_advantages
from geospot.rl.datums import build_datums, trajectory_arrays, trajectory_to_datum
from geospot.rl.testing import ScriptedEngine

SAMPLE = Sample(id="s", image=Image.new("RGB", (8, 8)), lat=0.0, lon=0.0)


def rollouts():
    # rollout i answers (3*i, 0) on turn 1, then moves 1 degree closer each turn
    def policy(prompt, i):
        if prompt.count("<a>") == 1:
            return format_answer(3.0 * i, 0.0)
        prev = float(prompt.split("previous guess was (")[-1].split(",")[0])
        return format_answer(max(prev - 1.0, 0.0), 0.0)

    eng = ScriptedEngine(policy, logprob=-0.25)
    return eng, do(eng)


def do(eng):
    from geospot.rl.rollouts import do_group_rollouts

    return do_group_rollouts(eng, [TelescopingGroupBuilder(SAMPLE, eng.renderer, GeoScoreReward())], 3, SampleParams())


def test_one_datum_per_trajectory_with_values_only_on_sampled_tokens():
    eng, traj_BG = rollouts()
    traj = traj_BG[0][1]
    adv_turns = [0.5, -0.25, 2.0]
    full, logprobs_T, adv_T = trajectory_arrays(traj, adv_turns)
    tokens = all_tokens(full)
    for tr, a in zip(traj.transitions, adv_turns):
        s, n = tr.observation.length, len(tr.action_tokens)
        assert list(tokens[s:s + n]) == list(tr.action_tokens)  # the sampled tokens sit verbatim in the sequence
        assert np.all(adv_T[s:s + n] == a) and np.all(logprobs_T[s:s + n] == -0.25)
    n_sampled = sum(len(tr.action_tokens) for tr in traj.transitions)
    assert np.count_nonzero(adv_T) == n_sampled  # zero on prompt, image and user turns
    d = trajectory_to_datum(traj, adv_turns)
    # shifted once: position i predicts token i+1 and carries token i+1's advantage
    assert d.model_input.length == full.length - 1
    np.testing.assert_array_equal(d.loss_fn_inputs["target_tokens"], tokens[1:])
    np.testing.assert_array_equal(d.loss_fn_inputs["advantages"], adv_T[1:])
    np.testing.assert_array_equal(d.loss_fn_inputs["logprobs"], logprobs_T[1:])


def test_build_datums_skips_dropped_groups():
    eng, traj_BG = rollouts()
    const = do(ScriptedEngine(lambda p, i: format_answer(1.0, 1.0)))
    both = [traj_BG[0], const[0]]
    adv = compute_advantages(both, PerTurnCredit())
    assert adv.dropped == 1
    datums = build_datums(both, adv)
    assert 1 <= len(datums) <= 3


def test_build_datums_tags_each_datum_with_its_group():
    _, a = rollouts()
    _, b = rollouts()
    both = [a[0], b[0]]
    adv = compute_advantages(both, PerTurnCredit())
    datums = build_datums(both, adv)
    assert {d.group for d in datums} == {0, 1}  # batch index of the group: the engine packs by it
    assert [d.group for d in datums] == sorted(d.group for d in datums)
