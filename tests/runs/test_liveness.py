"""`running` is believed only while its writer lives; a resumed run's store rewinds."""

import os
import subprocess
import sys

from geospot.runs.liveness import STALE_S, effective_status, process_start, writer_alive
from geospot.runs.store import RunReader, RunStore, truncate_store


def test_same_host_asks_the_pid_and_its_start_time():
    me = {"pid": str(os.getpid()), "pid_start": process_start(os.getpid()), "host": "h"}
    assert writer_alive(me, host="h") is True
    assert writer_alive({**me, "pid_start": "1"}, host="h") is False  # a reused pid is another process
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert writer_alive({**me, "pid": str(gone.pid)}, host="h") is False
    assert writer_alive({}, host="h") is None  # an old store records no writer: no verdict


def test_another_host_judges_the_heartbeat():
    meta = {"pid": "1", "pid_start": "0", "host": "elsewhere", "heartbeat": "1000.0"}
    assert writer_alive(meta, now=1000.0 + STALE_S - 1, host="here") is True
    assert writer_alive(meta, now=1000.0 + STALE_S + 1, host="here") is False
    assert effective_status("done", meta) == "done"  # only `running` is ever second-guessed


def test_a_store_written_running_by_a_dead_process_reads_stopped(tmp_path):
    code = ("import sys; from geospot.runs.store import RunStore; s = RunStore(sys.argv[1]); "
            "s.set_status('running'); s.log_step(1, {'loss': 1.0}); s.flush(); print('ok', flush=True); "
            "import time; time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout.readline().strip() == "ok"
        reader = RunReader(tmp_path)
        assert reader.status()["status"] == "running" and reader.summary()["status"] == "running"
    finally:
        proc.kill()
        proc.wait()
    assert reader.status()["status"] == "stopped" and reader.status()["stored"] == "running"
    assert reader.summary()["status"] == "stopped"


def test_truncate_store_drops_steps_and_images_past_the_checkpoint(tmp_path):
    from geospot.runs.writer import ImageRecord, RolloutRecord

    with RunStore(tmp_path) as store:
        for step in range(1, 7):
            store.log_step(step, {"loss": float(step)})
            store.log_images(step, [ImageRecord("a", 1.0, 2.0, (RolloutRecord("t", ((1.0, 2.0),), 0.0, 1.0),))])
    truncate_store(tmp_path, 4)
    reader = RunReader(tmp_path)
    assert [s["step"] for s in reader.steps()] == [1, 2, 3, 4]
    assert [s["step"] for s in reader.image_steps()] == [1, 2, 3, 4]
    seq = reader.seq()
    truncate_store(tmp_path, 4)
    assert reader.seq() == seq + 1  # a change the dashboard's poll notices
