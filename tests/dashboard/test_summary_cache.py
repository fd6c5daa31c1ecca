"""/api/runs is polled by every open tab: a run's summary is recomputed only when its
store changed (its `seq` moved), and the cached row is never stale."""

import shutil

from starlette.testclient import TestClient

from geospot.dashboard.app import create_app
from geospot.runs.store import RunReader, RunStore


def test_run_summary_recomputed_only_when_the_store_changes(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    store = RunStore(root / "alpha")
    store.log_config("rl", {})
    store.log_step(0, {"reward": 0.2, "median_km": 900.0})
    store.flush()
    calls = []
    real = RunReader.summary
    monkeypatch.setattr(RunReader, "summary", lambda self: calls.append(self.run_dir.name) or real(self))
    client = TestClient(create_app(root), base_url="http://localhost")
    try:
        def row():
            (r,) = client.get("/api/runs").json()["runs"]
            return r

        assert (row()["steps"], row()["best"]["reward"]) == (1, 0.2)
        assert calls == ["alpha"]  # the second poll came from the cache
        store.log_step(1, {"reward": 0.7, "median_km": 300.0})
        store.flush()
        r = row()
        assert (r["steps"], r["last_step"], r["best"]) == (2, 1, {"reward": 0.7, "median_km": 300.0})
        assert calls == ["alpha", "alpha"]
        store.set_status("done")
        store.flush()
        assert row()["status"] == "done" and len(calls) == 3
        store.close()
        # the folder deleted and a new run started there: seq restarts, the row must not be the old one
        shutil.rmtree(root / "alpha")
        with RunStore(root / "alpha") as fresh:
            fresh.log_config("sft", {})
        assert (row()["kind"], row()["steps"]) == ("sft", 0)
        # a run that disappears leaves the list and the cache
        shutil.rmtree(root / "alpha")
        assert client.get("/api/runs").json()["runs"] == []
        assert client.app.state.dashboard._summaries == {}
    finally:
        store.close()
