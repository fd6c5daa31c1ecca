import math

import numpy as np
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs.rewards import GeoScoreReward
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.geo import haversine_km
from geospot.prompts import format_answer
from geospot.rl.metrics import image_records, rollout_metrics
from geospot.rl.rollouts import do_group_rollouts
from geospot.rl.testing import ScriptedEngine

SAMPLE = Sample(id="img-7", image=Image.new("RGB", (8, 8)), lat=0.0, lon=0.0, labels={"country": "X"})


def test_metrics_and_records_of_a_telescoping_group():
    # rollout 0: 10 -> 5 -> 1 degrees north; rollout 1 breaks format on turn 2
    def policy(prompt, i):
        turn = prompt.count("<a>") - 1
        if turn == 0:
            return format_answer(10.0, 0.0) if i == 0 else format_answer(20.0, 0.0)
        if "(20.0, 0.0)" in prompt:
            return "lost"
        return format_answer([10.0, 5.0, 1.0][turn], 0.0)

    eng = ScriptedEngine(policy)
    traj_BG = do_group_rollouts(
        eng, [TelescopingGroupBuilder(SAMPLE, eng.renderer, GeoScoreReward())], 2, SampleParams()
    )
    m = rollout_metrics([SAMPLE], traj_BG, coords_B=[(True,) * 3])
    d = [haversine_km(x, 0.0, 0.0, 0.0) for x in (10.0, 5.0, 1.0, 20.0)]
    assert m["format_rate"] == 0.5
    assert math.isclose(m["turn_1_median_km"], np.median([d[0], d[3]]))
    # rollout 1 broke format on turn 2: a miss there and on turn 3, as eval counts it (the median of
    # d and inf is inf), so the last turn's median is the final answers' median_km
    assert m["turn_2_median_km"] == m["turn_3_median_km"] == m["median_km"] == math.inf
    assert math.isclose(m["reward_mean"], (GeoScoreReward()(d[2]) - 0.1) / 2)
    assert m["acc_200km"] == 0.5  # 111 km hit; the broken rollout is a miss
    (rec,) = image_records([SAMPLE], traj_BG, eng.renderer)
    assert rec.image_id == "img-7" and rec.labels == {"country": "X"} and len(rec.rollouts) == 2
    r0, r1 = rec.rollouts
    assert r0.guesses == ((10.0, 0.0), (5.0, 0.0), (1.0, 0.0)) and math.isclose(r0.distance_km, d[2])
    assert r0.text.split("\n---\n")[2] == format_answer(1.0, 0.0)
    assert math.isclose(sum(r0.turn_rewards), r0.reward)
    assert r1.guesses == ((20.0, 0.0), None) and r1.distance_km is None and r1.turn_distances_km[1] is None


def test_turn_medians_leave_out_single_turn_groups_and_label_turns():
    """A mixed batch: a single-turn group (one of its rollouts unparsed) does not enter turn 2's
    median; a hierarchical group's label turns have no median, its coordinates turn does."""
    from geospot.envs.types import Trajectory, Transition

    def traj(*turns):  # each turn: a distance, None = unparsed, "label" = a label turn
        return Trajectory(tuple(Transition(None, (), (), 0.0, {"parsed": 1.0} if t == "label" else
                                           {"parsed": float(t is not None), "distance_km": math.nan if t is None else t,
                                            "lat": 0.0, "lon": 0.0}) for t in turns))

    single = [traj(100.0), traj(None)]
    tele = [traj(300.0, 200.0), traj(500.0, 400.0), traj(None)]
    m = rollout_metrics([SAMPLE, SAMPLE], [single, tele], coords_B=[(True,), (True, True)])
    assert m["turn_1_median_km"] == 500.0  # 100, 300, 500, inf, inf: every group plays turn 1
    assert m["turn_2_median_km"] == 400.0  # 200, 400, inf: the single-turn group stays out
    hier = [traj("label", 50.0), traj("label", 70.0), traj("label", None)]
    m = rollout_metrics([SAMPLE], [hier], coords_B=[(False, True)])
    assert "turn_1_median_km" not in m and m["turn_2_median_km"] == 70.0
    assert "turn_1_median_km" not in rollout_metrics([SAMPLE], [single], coords_B=[(True,)])  # single-turn: none
    # a coordinate turn no rollout reached (every one broke before it): all misses, as eval says
    assert rollout_metrics([SAMPLE], [[traj(None), traj(None)]], coords_B=[(True,) * 3])["turn_3_median_km"] == math.inf
