"""FSDP2 resharding's lockstep (engines/parallel.py): inside a region every real forward announces
itself, and a rank with fewer forwards runs fillers until the other rank is done. Simulated here
with a scripted peer: the k-th all-reduce of a region meets the peer's k-th announcement."""

from types import SimpleNamespace

import pytest
import torch

from geospot.engines import parallel


class ScriptedPeer:
    """`Dist.max` against one other rank that makes `theirs` forwards in the region."""

    def __init__(self, theirs: int):
        self.theirs, self.calls = theirs, 0

    def max(self, mine: float) -> float:
        self.calls += 1
        return max(mine, 1.0 if self.calls <= self.theirs else 0.0)


@pytest.mark.parametrize("mine,theirs,fillers", [(2, 3, 1), (3, 1, 0), (0, 2, 2), (0, 0, 0)])
def test_a_rank_with_fewer_forwards_runs_fillers_until_the_peer_is_done(monkeypatch, mine, theirs, fillers):
    ran = []
    monkeypatch.setattr(parallel, "_zero_loss_pass", lambda core, module, grad=True: ran.append(grad))
    model = torch.nn.Linear(2, 2)
    peer = ScriptedPeer(theirs)
    lock = parallel.Lockstep(SimpleNamespace(model=model), peer)
    with lock.region(grad=True):
        for _ in range(mine):
            model(torch.zeros(1, 2))
    assert ran == [True] * fillers and lock.fillers == fillers
    # one all-reduce per forward (real or filler) plus the one that finds everyone done
    assert peer.calls == max(mine, theirs) + 1
    model(torch.zeros(1, 2))  # outside a region a forward announces nothing
    assert peer.calls == max(mine, theirs) + 1


def test_any_rank_is_true_while_either_rank_says_so():
    peer = ScriptedPeer(theirs=1)  # the peer says yes once, then no
    lock = parallel.Lockstep(SimpleNamespace(model=torch.nn.Linear(2, 2)), peer)
    assert [lock.any_rank(False), lock.any_rank(False), lock.any_rank(True)] == [True, False, True]


def test_every_engine_and_sampler_says_whether_it_is_in_lockstep():
    """The Engine / Sampler protocols' `lockstep` (callers read it, never probe for it): None off
    FSDP2 resharding; a snapshot of a local engine samples through the engine, so it is the engine's."""
    from geospot.engines.snapshot import PinnedSampler, SnapshotSampler
    from geospot.engines.tinker_engine import TinkerEngine
    from geospot.rl.testing import ScriptedEngine, VersionedScriptedEngine

    assert TinkerEngine.lockstep is None and PinnedSampler(lambda *a: [], None).lockstep is None
    assert ScriptedEngine(lambda text, i: "").lockstep is None
    assert VersionedScriptedEngine(lambda text, i, v: "").snapshot_sampler().lockstep is None
    lock = object()
    assert SnapshotSampler(SimpleNamespace(lockstep=lock), {}, ()).lockstep is lock
