"""Against a real uvicorn on 127.0.0.1: raw (un-normalised) traversal requests and the
live event stream."""

import json
import socket
import threading

import fake_run
import httpx
from conftest import Server

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore


def raw_get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_raw_traversal_requests(tmp_path):
    runs = tmp_path / "runs"
    with RunStore(runs / "a") as s:
        fake_run.fill(s, 2, n_images=1)
    (tmp_path / "secret.txt").write_text("top secret")
    with Server(create_app(runs)) as srv:
        for target in ["/static/../../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt", "/static/..%2f..%2fsecret.txt",
                       "/../secret.txt", "/static//etc/passwd", "/api/thumb?run=a&id=../../../secret.txt"]:
            resp = raw_get(srv.port, target)
            assert b"top secret" not in resp and b"root:" not in resp, target
            assert resp.split(b"\r\n", 1)[0].split()[1] in (b"400", b"404"), (target, resp[:80])


def read_events(url: str, want: int, out: list, timeout: float = 20.0, headers: dict | None = None) -> None:
    with httpx.stream("GET", url, timeout=timeout, headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in r.iter_lines():
            if line.startswith("event: "):
                event["type"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line == "" and event:
                out.append(event)
                event = {}
                if len(out) >= want:
                    return


def test_sse_streams_new_steps_and_resumes(tmp_path):
    runs = tmp_path / "runs"
    store = RunStore(runs / "live")
    fake_run.fill(store, 2, n_images=1)
    store.flush()
    with Server(create_app(runs, poll_s=0.05)) as srv:
        since = httpx.get(f"{srv.url}/api/run?run=live").json()["seq"]
        got: list = []
        t = threading.Thread(target=read_events, args=(f"{srv.url}/api/events?run=live&since={since}", 4, got))
        t.start()
        fake_run.fill(store, 2, start=2, n_images=1)  # step 2 (+images), step 3
        store.set_status("done")
        t.join(30)
        assert [(e["type"], e["data"].get("step", e["data"].get("status"))) for e in got] == [
            ("step", 2), ("images", 2), ("step", 3), ("status", "done")]
        # reconnecting with Last-Event-ID replays exactly what came after it
        again: list = []
        read_events(f"{srv.url}/api/events?run=live", 2, again, headers={"Last-Event-ID": str(got[1]["id"])})
        assert [e["id"] for e in again] == [got[2]["id"], got[3]["id"]]
    store.close()


def test_sse_gives_a_killed_runs_status_as_judged_now(tmp_path):
    """A run whose writer died without a word stored `running` last; the event stream (opened from
    the start, as the run page does) says `stopped`, as /api/status does, not `running`."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    code = ("import sys; from geospot.runs.store import RunStore; s = RunStore(sys.argv[1]); "
            "s.log_config('sft', {}); s.set_status('running'); s.log_step(1, {'loss': 1.0}); s.flush(); "
            "import os; os._exit(0)")  # gone without closing: the store still says running
    subprocess.run([sys.executable, "-c", code, str(runs / "gone")], check=True, timeout=60)
    with Server(create_app(runs, poll_s=0.05)) as srv:
        assert httpx.get(f"{srv.url}/api/status?run=gone").json()["status"] == "stopped"
        got: list = []
        read_events(f"{srv.url}/api/events?run=gone&since=0", 2, got, timeout=20)  # status, step
        statuses = [e["data"]["status"] for e in got if e.get("type") == "status"]
        assert statuses and set(statuses) == {"stopped"}, got


def test_a_page_holding_another_history_of_its_run_is_told_to_load_it_again(tmp_path):
    """A run started afresh in its folder (`delete`) restarts seq from 0, and a resume drops the steps
    past its checkpoint: an open page kept the old run's steps, and its stream skipped the new ones."""
    import shutil

    from geospot.runs.store import truncate_store

    runs = tmp_path / "runs"
    with RunStore(runs / "r") as store:
        fake_run.fill(store, 6, n_images=1)
    with Server(create_app(runs, poll_s=0.05)) as srv:
        first = httpx.get(f"{srv.url}/api/run?run=r").json()
        url = f"{srv.url}/api/events?run=r&since={first['seq']}&generation={first['generation']}"
        truncate_store(runs / "r", after_step=3)  # a resume from the checkpoint of step 3
        got: list = []
        read_events(url, 1, got, timeout=20)
        assert got == [{"type": "reset", "data": {}}]
        rewound = httpx.get(f"{srv.url}/api/run?run=r").json()
        assert rewound["generation"] != first["generation"] and [s["step"] for s in rewound["steps"]] == [0, 1, 2, 3]
        shutil.rmtree(runs / "r")  # started afresh: seq begins again below the page's
        with RunStore(runs / "r") as store:
            fake_run.fill(store, 2, n_images=1)
        again: list = []
        read_events(f"{srv.url}/api/events?run=r&since={rewound['seq']}&generation={rewound['generation']}", 1, again)
        assert again == [{"type": "reset", "data": {}}]
        fresh = httpx.get(f"{srv.url}/api/run?run=r").json()
        follow: list = []  # the page loaded again follows the new run
        read_events(f"{srv.url}/api/events?run=r&since=0&generation={fresh['generation']}", 1, follow)
        assert follow[0]["type"] in ("step", "status", "images")
        # a step the store cannot hold is a 400, not a traceback
        assert httpx.get(f"{srv.url}/api/images?run=r&step={10**30}").status_code == 400
        assert httpx.get(f"{srv.url}/api/events?run=r", headers={"Last-Event-ID": str(-10**30)}).status_code == 400


def test_a_page_opened_after_a_rewind_follows_the_run_not_a_reset_loop(tmp_path):
    """The watcher of a run outlives its pages: one left from before a resume's rewind held the old
    history, so every page loaded after it got `reset` at once and loaded again, for ever."""
    from geospot.runs.store import truncate_store

    runs = tmp_path / "runs"
    store = RunStore(runs / "r")
    fake_run.fill(store, 6, n_images=1)
    store.flush()
    with Server(create_app(runs, poll_s=0.05)) as srv:
        first = httpx.get(f"{srv.url}/api/run?run=r").json()
        got: list = []
        read_events(f"{srv.url}/api/events?run=r&since=0&generation={first['generation']}", 1, got)  # a page, closed
        store.close()
        truncate_store(runs / "r", after_step=3)
        now = httpx.get(f"{srv.url}/api/run?run=r").json()
        assert now["generation"] != first["generation"]
        store = RunStore(runs / "r")  # the resumed run writes on
        t = threading.Thread(target=read_events, args=(
            f"{srv.url}/api/events?run=r&since={now['seq']}&generation={now['generation']}", 1, got := []))
        t.start()
        fake_run.fill(store, 1, start=4, n_images=1)
        store.flush()
        t.join(30)
        assert got and got[0]["type"] == "step" and got[0]["data"]["step"] == 4
    store.close()
