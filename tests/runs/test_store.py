import math
import sqlite3
import threading

import pytest
from PIL import Image

from geospot.runs.store import SCHEMA_VERSION, RunReader, RunStore, thumb_name
from geospot.runs.writer import ImageRecord, RolloutRecord


def record(image_id="img-1", lat=48.86, lon=2.35, G=8, turns=3, image=True, text="Latitude: 1\nLongitude: 2"):
    rollouts = tuple(
        RolloutRecord(text=f"{text} #{g}", guesses=tuple((lat + g + t, lon - g) for t in range(turns)),
                      distance_km=100.0 * g, reward=1.0 / (1 + g),
                      turn_distances_km=tuple(300.0 - 100 * t for t in range(turns)),
                      turn_rewards=tuple(0.1 * t for t in range(turns)))
        for g in range(G))
    img = Image.new("RGB", (640, 480), (200, 30, 30)) if image else None
    return ImageRecord(image_id=image_id, lat=lat, lon=lon, rollouts=rollouts, image=img, labels={"country": "FR"})


def test_round_trip(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.log_config("rl", {"lr": 1e-5, "group_size": 8})
        store.set_status("running")
        store.log_step(0, {"reward": 0.25, "median_km": 900.0})
        store.log_step(0, {"eval/median_km": 800.0})  # same step: merged, not replaced
        store.log_step(1, {"reward": float("nan"), "tau_km": float("inf")})  # no NaN in JSON
        store.log_images(1, [record("a"), record("b", lat=-33.9, lon=151.2, image=False)])
        store.set_status("done")
    r = RunReader(tmp_path / "run")
    assert r.config() == ("rl", {"lr": 1e-5, "group_size": 8})
    assert r.status()["status"] == "done"
    steps = r.steps()
    assert [s["step"] for s in steps] == [0, 1]
    assert steps[0]["metrics"] == {"reward": 0.25, "median_km": 900.0, "eval/median_km": 800.0}
    assert steps[1]["metrics"] == {"reward": None, "tau_km": None}
    assert r.image_steps() == [{"step": 1, "split": "train", "n": 2, "seq": r.image_steps()[0]["seq"]}]
    a, b = r.images(1)
    got = (a["image_id"], a["lat"], a["lon"], a["labels"], a["has_thumb"])
    assert got == ("a", 48.86, 2.35, {"country": "FR"}, True)
    assert b["has_thumb"] is False
    assert len(a["rollouts"]) == 8
    ro = a["rollouts"][3]
    assert ro["guesses"] == [[48.86 + 3 + t, 2.35 - 3] for t in range(3)]
    assert (ro["distance_km"], ro["reward"], ro["turn_distances_km"]) == (300.0, 0.25, [300.0, 200.0, 100.0])
    assert ro["text"] == "Latitude: 1\nLongitude: 2 #3"
    thumb = r.thumb_path("a")
    assert thumb is not None and thumb.name == thumb_name("a")
    with Image.open(thumb) as im:
        assert max(im.size) == 256  # thumbnail, not the full photo
    assert r.thumb_path("b") is None and r.thumb_path("nope") is None
    meta = r.meta()
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert (meta["failed_writes"], meta["dropped_writes"]) == ("0", "0")


def test_wal_mode_and_readonly_reader(tmp_path):
    store = RunStore(tmp_path)
    store.log_step(0, {"x": 1.0})
    assert store.flush()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    reader = RunReader(tmp_path)
    with pytest.raises(sqlite3.OperationalError):  # read-only by construction
        reader.connect().execute("INSERT INTO steps VALUES (5, 0, '{}', 0)")
    store.close()
    assert [s["step"] for s in RunReader(tmp_path).steps()] == [0]  # also after the writer is gone


def test_thumbnail_saved_once_per_image_id(tmp_path):
    with RunStore(tmp_path) as store:
        store.log_images(0, [record("a")])
        store.flush()
        path = tmp_path / "thumbs" / thumb_name("a")
        first = path.stat().st_mtime_ns
        store.log_images(1, [record("a"), record("a2")])
    assert path.stat().st_mtime_ns == first
    assert sorted(p.name for p in (tmp_path / "thumbs").iterdir()) == sorted([thumb_name("a"), thumb_name("a2")])
    # a re-opened store remembers which thumbnails exist
    with RunStore(tmp_path) as store:
        assert "a" in store._thumbs_done


def test_concurrent_reader_sees_consistent_prefixes(tmp_path):
    store = RunStore(tmp_path)
    reader = RunReader(tmp_path)
    n, seen, errors = 300, [], []
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                steps = [s["step"] for s in reader.steps()]
                assert steps == list(range(len(steps))), "a reader saw a gap"
                seen.append(len(steps))
            except Exception as e:  # pragma: no cover - the assertion is below
                errors.append(e)

    t = threading.Thread(target=read)
    t.start()
    for i in range(n):
        store.log_step(i, {"reward": i / n})
        if i % 50 == 0:
            store.log_images(i, [record(f"im{i}", image=False)])
    store.close()
    done.set()
    t.join()
    assert not errors
    assert seen == sorted(seen)  # never goes backwards
    assert len(reader.steps()) == n
    events = reader.events_since(0)
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})  # unique, ordered
    assert sum(e["type"] == "step" for e in events) == n


def test_events_since_resumes_exactly(tmp_path):
    with RunStore(tmp_path) as store:
        for i in range(5):
            store.log_step(i, {"r": float(i)})
    r = RunReader(tmp_path)
    all_events = r.events_since(0)
    cut = all_events[2]["seq"]
    assert r.events_since(cut) == all_events[3:]
    assert r.events_since(r.seq()) == []


def test_failed_write_is_counted_not_raised(tmp_path):
    store = RunStore(tmp_path)
    store.log_step(0, {"r": 0.0})
    store.flush()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    con.execute("DROP TABLE steps")  # sabotage: every later log_step fails inside SQLite
    con.commit()
    con.close()
    store.log_step(1, {"r": 1.0})
    store.log_step(2, {"r": 2.0})
    store.set_status("still works")  # other tables keep working after failures
    bad = ImageRecord(image_id="x", lat="not a number", lon=0.0, rollouts=())  # type: ignore[arg-type]
    store.log_images(3, [bad])  # a malformed record is counted, not raised
    store.close()
    assert store.failed_writes == 3
    assert RunReader(tmp_path).status()["status"] == "still works"
    assert RunReader(tmp_path).meta()["failed_writes"] == "3"
    store.log_step(9, {})  # after close: counted, no exception
    assert store.failed_writes == 4


def test_full_queue_drops_instead_of_blocking(tmp_path):
    store = RunStore(tmp_path, queue_size=4)
    store.log_step(0, {})
    store.flush()
    lock = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the disk is "stuck": the writer thread waits on this lock
    for i in range(1, 51):
        store.log_step(i, {"r": float(i)})  # must return although nothing can be written
    lock.execute("COMMIT")
    lock.close()
    store.close()
    written = len(RunReader(tmp_path).steps()) - 1
    assert store.dropped_writes > 0
    assert written + store.dropped_writes == 50


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    RunStore(tmp_path).close()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="schema 999.*fresh run folder"):
        RunStore(tmp_path)


def test_reader_on_missing_store_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run store"):
        RunReader(tmp_path / "nothing")


def test_summary_best_metrics(tmp_path):
    with RunStore(tmp_path) as store:
        store.log_config("rl", {})
        for i, (r, km) in enumerate([(0.1, 900.0), (0.5, 300.0), (0.3, 500.0)]):
            store.log_step(i, {"reward": r, "median_km": km, "note": "text"})
    s = RunReader(tmp_path).summary()
    assert (s["kind"], s["steps"], s["last_step"]) == ("rl", 3, 2)
    assert s["best"] == {"reward": 0.5, "median_km": 300.0}
    assert math.isclose(s["last"]["reward"], 0.3)


def test_records_queued_before_exit_are_written_without_close(tmp_path):
    import subprocess
    import sys

    code = ("from geospot.runs.store import RunStore\n"
            f"s = RunStore({str(tmp_path)!r})\n"
            "for i in range(200): s.log_step(i, {'x': 1.0})\n")  # no close(): the interpreter just exits
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert len(RunReader(tmp_path).steps()) == 200


def test_weights_version_round_trips_and_an_older_store_gains_the_column(tmp_path):
    from dataclasses import replace

    rec = record("a", G=2, turns=1)
    rec = replace(rec, rollouts=tuple(replace(r, weights_version=v) for r, v in zip(rec.rollouts, (3, None))))
    with RunStore(tmp_path / "run") as store:
        store.log_images(4, [rec])
    assert [r["weights_version"] for r in RunReader(tmp_path / "run").images(4)[0]["rollouts"]] == [3, None]

    old = tmp_path / "old"  # a store written before async GRPO: no weights_version column
    with RunStore(old) as store:
        store.log_images(1, [record("b", G=1, turns=1)])
    con = sqlite3.connect(old / "store.sqlite")
    con.execute("ALTER TABLE rollouts DROP COLUMN weights_version")
    con.commit()
    con.close()
    assert RunReader(old).images(1)[0]["rollouts"][0]["weights_version"] is None  # read as is
    with RunStore(old) as store:  # appending (a resumed run) adds the column
        store.log_images(2, [rec])
    assert [r["weights_version"] for r in RunReader(old).images(2)[0]["rollouts"]] == [3, None]


def test_summary_counts_training_steps_not_the_eval_before_training(tmp_path):
    """sft/rl log the held-out eval before training as step 0 (eval/ keys only): a 2-step run
    with it is 2 steps, not 3."""
    with RunStore(tmp_path) as store:
        store.log_config("sft", {})
        store.log_step(0, {"eval/geoscore": 0.0})
        store.log_step(1, {"loss": 2.0})
        store.log_step(2, {"loss": 1.5, "eval/geoscore": 10.0})
    s = RunReader(tmp_path).summary()
    assert (s["steps"], s["last_step"]) == (2, 2)


def test_a_rollout_without_a_reward_reads_back_as_null(tmp_path):
    """Held-out eval records carry no reward (NaN): stored null, so the dashboard shows their distance only."""
    r = record("e", G=1)
    ro = r.rollouts[0]
    unpaid = RolloutRecord(text=ro.text, guesses=ro.guesses, distance_km=ro.distance_km, reward=math.nan,
                           turn_distances_km=ro.turn_distances_km)
    with RunStore(tmp_path / "run") as store:
        store.log_images(3, [ImageRecord(r.image_id, r.lat, r.lon, (unpaid,), None, {})], split="eval")
    (img,) = RunReader(tmp_path / "run").images(3, "eval")
    assert img["rollouts"][0]["reward"] is None and img["rollouts"][0]["distance_km"] == 0.0


def test_summary_and_step_counts_name_the_rl_steps_that_trained_nothing(tmp_path):
    """An RL step whose groups all had equal rewards logs datums 0: the weights did not move."""
    with RunStore(tmp_path) as store:
        store.log_config("rl", {})
        store.log_step(0, {"eval/geoscore": 0.0})
        for step, datums in ((1, 0), (2, 16), (3, 0), (4, 8)):
            store.log_step(step, {"reward_mean": 0.1, "datums": datums})
    s = RunReader(tmp_path).summary()
    assert (s["steps"], s["idle_steps"]) == (4, 2)
    with RunStore(tmp_path / "sft") as store:  # SFT logs no datums: never idle
        store.log_config("sft", {})
        store.log_step(1, {"loss": 1.0})
    assert RunReader(tmp_path / "sft").summary()["idle_steps"] == 0


def test_a_run_busy_writing_keeps_its_heartbeat_fresh(tmp_path):
    """The heartbeat was stamped only after HEARTBEAT_S with nothing to write: a run logging a step
    every few seconds kept its start time, and from another host read as dead after STALE_S (a second
    host could then resume or delete its folder). Every write now stamps it."""
    import time

    with RunStore(tmp_path) as store:
        store.set_status("running")
        assert store.flush()
        started = float(dict(sqlite3.connect(store.path).execute("SELECT key, value FROM meta"))["heartbeat"])
        time.sleep(0.2)
        store.log_step(1, {"loss": 1.0})
        assert store.flush()
        beat = float(dict(sqlite3.connect(store.path).execute("SELECT key, value FROM meta"))["heartbeat"])
        assert beat >= started + 0.15
