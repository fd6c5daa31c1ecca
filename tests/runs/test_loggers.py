import json
import sys
import types

from geospot.runs.loggers import JsonlWriter, MultiWriter, WandbWriter, open_run_writer
from geospot.runs.store import RunReader
from geospot.runs.writer import ImageRecord, ListWriter, RolloutRecord


def test_jsonl_one_line_per_step(tmp_path):
    w = JsonlWriter(tmp_path)
    w.log_step(0, {"reward": 0.5})
    w.log_step(1, {"reward": float("nan")})
    w.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["reward"]) for x in lines] == [(0, 0.5), (1, None)]
    assert all("time" in x for x in lines)


class Broken:
    def __getattr__(self, name):
        def fail(*a, **k):
            raise OSError("disk full")
        return fail


def test_multiwriter_fans_out_and_survives_a_broken_writer():
    a, b = ListWriter(), ListWriter()
    m = MultiWriter(a, Broken(), b)
    m.log_config("sft", {"lr": 1.0})
    m.log_step(3, {"loss": 2.0})
    m.set_status("done")
    m.close()
    for w in (a, b):
        assert (w.kind, w.steps, w.status) == ("sft", [(3, {"loss": 2.0})], "done")
    assert m.failures == {"Broken": 4}


def test_wandb_writer_with_a_stand_in_module(monkeypatch):
    logged = []

    class Run:
        config = types.SimpleNamespace(update=lambda d, allow_val_change: logged.append(("config", d)))
        summary: dict = {}

        def log(self, d, step):
            logged.append((step, d))

        def finish(self):
            logged.append("finish")

    fake = types.SimpleNamespace(init=lambda **kw: Run(), Table=lambda columns, data: ("table", columns, data))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    w = WandbWriter("proj", name="r1")
    w.log_config("rl", {"lr": 1.0})
    w.log_step(2, {"reward": 0.5})
    ro = RolloutRecord(text="t", guesses=((1.0, 2.0),), distance_km=10.0, reward=0.5)
    w.log_images(2, [ImageRecord("i", 1.0, 2.0, (ro, ro))])
    w.close()
    assert logged[0] == ("config", {"kind": "rl", "lr": 1.0})
    assert logged[1] == (2, {"reward": 0.5})
    assert logged[2] == (2, {"train/images": ("table", ["image_id", "lat", "lon", "mean_km", "mean_reward"],
                                              [["i", 1.0, 2.0, 10.0, 0.5]])})
    assert logged[3] == "finish"


def test_open_run_writer_writes_store_and_jsonl(tmp_path):
    w = open_run_writer(tmp_path)
    w.log_config("rl", {"a": 1})
    w.log_step(0, {"reward": 0.1})
    w.close()
    assert RunReader(tmp_path).steps()[0]["metrics"] == {"reward": 0.1}
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_a_writer_failing_every_write_says_it_once_with_its_traceback_then_counts(caplog):
    """A full disk fails every metrics write: one traceback, then a line every 50th (a traceback per write
    buried the run's own output)."""
    import errno
    import logging

    from geospot.runs.loggers import MultiWriter

    class Full:
        def log_step(self, step, metrics):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer = MultiWriter(Full())
    with caplog.at_level(logging.WARNING, logger="geospot.runs.loggers"):
        for step in range(100):
            writer.log_step(step, {"loss": 1.0})
    said = [r for r in caplog.records if "Full.log_step failed" in r.getMessage()]
    assert [r.getMessage() for r in said] == [f"Full.log_step failed ({n} failures)" for n in (1, 50, 100)]
    assert [bool(r.exc_info) for r in said] == [True, False, False] and writer.failures == {"Full": 100}
