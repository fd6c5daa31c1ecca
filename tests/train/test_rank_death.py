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
