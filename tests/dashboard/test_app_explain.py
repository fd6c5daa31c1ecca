"""What the explainers read, through the app: the page loads geo.js and explain.js (same
origin, allowed by the CSP), the run's steps carry its τ, and a run's held-out evals are
served per step (the first = the base policy, the latest = the current)."""

import re

import fake_run
from starlette.testclient import TestClient

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore


def test_explainer_scripts_and_inputs(tmp_path):
    runs = tmp_path / "runs"
    store = RunStore(runs / "rl")
    fake_run.fill(store, 4, image_every=2, G=2, turns=1, n_images=2)
    for s in (0, 3):
        store.log_images(s, fake_run.image_records(s, 20, G=2, turns=1, n_images=2, seed=3), split="eval")
    store.flush()
    client = TestClient(create_app(runs), base_url="http://localhost")
    page = client.get("/").text
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == ["/static/geo.js", "/static/explain.js", "/static/charts.js", "/static/worldmap.js",
                       "/static/app.js"]  # helpers before the app
    for src in scripts:
        r = client.get(src)
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert "KERNEL_KM = [5000, 750, 100, 25, 1]" in client.get("/static/explain.js").text
    run = client.get("/api/run", params={"run": "rl"}).json()
    assert run["steps"][-1]["metrics"]["tau_km"] == fake_run.step_metrics(3, 20)["tau_km"] == 1725.0
    assert sorted(s["step"] for s in run["image_steps"] if s["split"] == "eval") == [0, 3]
    base = client.get("/api/images", params={"run": "rl", "step": 0, "split": "eval"}).json()["images"]
    current = client.get("/api/images", params={"run": "rl", "step": 3, "split": "eval"}).json()["images"]
    assert {i["image_id"] for i in base} == {i["image_id"] for i in current} and len(base) == 2
    assert all(len(i["rollouts"]) == 2 for i in base + current)
