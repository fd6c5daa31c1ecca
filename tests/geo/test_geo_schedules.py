"""τ schedules: end points, midpoints, clipping."""

import dataclasses
import math

import numpy as np
import pytest

from geospot.geo import ConstantTau, CosineTau, FollowErrorTau, GeometricTau, LinearTau, make_tau_schedule


@pytest.mark.parametrize("cls", [LinearTau, GeometricTau, CosineTau])
def test_end_points(cls):
    s = cls(2000.0, 25.0, 100)
    assert s.tau(0) == pytest.approx(2000.0)
    assert s.tau(100) == pytest.approx(25.0)
    assert s.tau(1000) == pytest.approx(25.0)  # past the end: hold
    assert s.tau(-5) == pytest.approx(2000.0)


def test_midpoints():
    assert GeometricTau(2000.0, 25.0, 100).tau(50) == pytest.approx(math.sqrt(2000 * 25))  # 223.607
    assert GeometricTau(2000.0, 25.0, 100).tau(50) == pytest.approx(223.607, abs=1e-3)
    assert LinearTau(2000.0, 25.0, 100).tau(50) == pytest.approx(1012.5)
    assert CosineTau(2000.0, 25.0, 100).tau(50) == pytest.approx(1012.5)  # cos(π/2) = 0
    # cosine at 1/4: 25 + 1975·(1 + cos(π/4))/2 = 1710.74
    assert CosineTau(2000.0, 25.0, 100).tau(25) == pytest.approx(25 + 1975 * (1 + math.sqrt(0.5)) / 2)
    # geometric: equal ratios per step: τ(25)/τ(0) = (25/2000)^(1/4) = 0.33437
    g = GeometricTau(2000.0, 25.0, 100)
    assert g.tau(25) / g.tau(0) == pytest.approx(g.tau(75) / g.tau(50))


def test_constant_and_factory():
    assert ConstantTau(500.0).tau(12345) == 500.0
    assert make_tau_schedule("constant", 700.0).tau(3) == 700.0
    assert make_tau_schedule("geometric", 2000.0, 25.0, 10) == GeometricTau(2000.0, 25.0, 10)
    assert isinstance(make_tau_schedule("cosine", 2000, 25, 10), CosineTau)
    assert isinstance(make_tau_schedule("linear", 2000, 25, 10), LinearTau)
    assert isinstance(make_tau_schedule("follow_error", 2000, 25, 10, window=3), FollowErrorTau)
    with pytest.raises(ValueError, match="geometric"):
        make_tau_schedule("exponential")
    with pytest.raises(ValueError, match="> 0"):
        GeometricTau(2000.0, 0.0, 10)


def test_schedules_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GeometricTau().start_km = 5.0


def test_follow_error():
    s = FollowErrorTau(GeometricTau(2000.0, 25.0, 100), window=2)
    assert s.tau(50) == pytest.approx(2000.0)  # nothing parsed yet: an infinite error, clipped to the ceiling
    s.observe([np.inf, np.nan])
    assert s.tau(99) == pytest.approx(2000.0)
    s.observe([100.0, 300.0, np.nan, np.inf])  # unparsed answers are ignored
    assert s.tau(0) == pytest.approx(200.0)  # median of 100, 300
    s.observe([5000.0, 6000.0, 7000.0])
    assert s.tau(0) == pytest.approx(2000.0)  # median of {100, 300, 5000, 6000, 7000} = 5000 -> clipped to start
    s.observe([400.0, 500.0, 600.0, 700.0])  # window 2 drops the first batch
    assert s.tau(0) == pytest.approx(700.0)  # median of {400, 500, 600, 700, 5000, 6000, 7000}
    s.observe([1.0])
    assert s.tau(0) == pytest.approx(500.0)  # median of {400, 500, 600, 700, 1}
    s.observe([1.0, 2.0, 3.0])
    assert s.tau(0) == pytest.approx(25.0)  # median of {1, 1, 2, 3} = 1.5 -> clipped to end


def test_tau_schedules_share_one_protocol_and_follow_error_state_round_trips():
    """Every schedule observes and has a state (no hasattr in the loop); FollowErrorTau's history is
    its state: a fresh schedule loaded from it gives the same tau as the one that observed."""
    from geospot.geo.schedules import make_tau_schedule

    for name in ("constant", "linear", "geometric", "cosine"):
        s = make_tau_schedule(name, 2000.0, 25.0, 10)
        before = s.tau(3)
        s.observe([100.0, 200.0])
        assert s.tau(3) == before and s.state_dict() == {}
    a = make_tau_schedule("follow_error", 2000.0, 25.0, 10, window=2)
    for batch in ([900.0, 1100.0], [float("nan"), 300.0], [500.0, 700.0]):
        a.observe(batch)
    assert a.state_dict() == {"recent_km": [[300.0], [500.0, 700.0]]}  # the window keeps 2 batches, finite only
    b = make_tau_schedule("follow_error", 2000.0, 25.0, 10, window=2)
    b.load_state_dict(a.state_dict())
    assert b.tau(5) == a.tau(5) == 500.0  # median of 300, 500, 700
