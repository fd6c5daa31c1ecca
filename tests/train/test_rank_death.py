"""Which peers rank 0 calls dead: read off the process table and the stopped ranks' markers."""

from geospot.train import rank_death


def test_a_rank_stopped_between_the_two_reads_is_not_called_dead(monkeypatch, tmp_path):
    """rank 1 is alive when rank 0 starts looking, then torchrun's SIGTERM stops it: it writes its
    marker and exits while rank 0 is still reading. It was stopped, not killed."""
    monkeypatch.setattr(rank_death.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(rank_death, "_WATCH", {"rank": 0, "peers": [("h", 100), ("h", 101), ("h", 102)]})
    monkeypatch.setattr(rank_death.socket, "gethostname", lambda: "h")
    gone: set[int] = set()

    def alive(pid: int) -> bool:
        if pid == 101:  # rank 1 stops right now: marker first, then it exits
            rank_death._stopped_marker(pid).touch()
            gone.add(pid)
        return pid not in gone and pid != 102  # rank 2 was SIGKILLed before: gone, no marker

    monkeypatch.setattr(rank_death, "_alive", alive)
    assert rank_death.dead_ranks() == [2]
    assert rank_death.stopped_ranks() == [1]


def test_a_stopped_job_on_one_machine_is_not_blamed_on_another():
    """`timeout torchrun …` on one machine: every rank is there and none died; on several machines
    a rank elsewhere may have died, and the sentence says either."""
    one = rank_death.message([], "", "CMD", signalled=True, one_machine=True)
    assert one.startswith("torchrun stopped the job (it was interrupted: `timeout`, a scheduler or kill)")
    assert "another machine" not in one
    many = rank_death.message([], "", "CMD", signalled=True)
    assert "a rank on another machine died, or the job was interrupted" in many
    assert rank_death.message([1], "", "CMD", signalled=True, one_machine=True).startswith("rank 1 died")


def test_the_lowest_live_rank_speaks_when_rank_0_died():
    """rank 0 always speaks while it lives; killed, its sentence comes from this machine's lowest
    live rank, and from no other."""
    assert rank_death.speaker(0, [], [1, 2, 3])
    assert not rank_death.speaker(1, [], [0, 2, 3]) and not rank_death.speaker(1, [2], [0, 2, 3])
    assert rank_death.speaker(1, [0], [0, 2, 3]) and not rank_death.speaker(2, [0], [0, 1, 3])
    assert rank_death.speaker(2, [0, 1], [0, 1, 3])  # 0 and 1 gone: 2 is the lowest alive
    assert rank_death.speaker(5, [0], [0, 4, 6]) is False and rank_death.speaker(4, [0], [0, 5, 6])

