import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path

import fake_run
import pytest
from starlette.testclient import TestClient

from geospot.dashboard import cli
from geospot.dashboard.app import STATIC, create_app
from geospot.runs.store import RunStore

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\'</pre>'


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    with RunStore(root / "alpha") as s:
        fake_run.fill(s, 4, G=8, turns=3, n_images=2, text=EVIL)
    with RunStore(root / "group" / "beta") as s:
        fake_run.fill(s, 2, n_images=1)
        s.set_status("done")
    (tmp_path / "secret.txt").write_text("top secret")
    return root


@pytest.fixture
def client(runs):
    return TestClient(create_app(runs), base_url="http://localhost")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith(("-shm", "-wal")):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_run_list_and_run_api(client):
    runs = client.get("/api/runs").json()["runs"]
    assert [(r["name"], r["kind"], r["status"], r["steps"]) for r in runs] == [
        ("alpha", "rl", "running", 4), ("group/beta", "rl", "done", 2)]
    assert runs[0]["best"]["reward_mean"] == pytest.approx(fake_run.step_metrics(3, 20)["reward_mean"])
    run = client.get("/api/run", params={"run": "alpha"}).json()
    assert [s["step"] for s in run["steps"]] == [0, 1, 2, 3]
    assert [s["step"] for s in run["image_steps"]] == [0, 2]
    imgs = client.get("/api/images", params={"run": "alpha", "step": 2}).json()["images"]
    assert len(imgs) == 2 and all(len(im["rollouts"]) == 8 for im in imgs)
    assert all(len(r["guesses"]) == 3 for r in imgs[0]["rollouts"])
    thumb = client.get("/api/thumb", params={"run": "alpha", "id": imgs[0]["image_id"]})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get("/api/images", params={"run": "alpha", "step": "x"}).status_code == 400


def test_dashboard_never_writes_the_store(client, runs):
    before = digest(runs)
    for url in ["/api/runs", "/api/run?run=alpha", "/api/images?run=alpha&step=0", "/api/run?run=group/beta"]:
        assert client.get(url).status_code == 200
    assert digest(runs) == before


@pytest.mark.parametrize("params", [
    {"run": "../secret.txt"}, {"run": ".."}, {"run": "/etc"}, {"run": "alpha/../group/beta"},
    {"run": "%2e%2e"}, {"run": "alpha/thumbs"}, {"run": ""},
])
def test_unknown_or_traversing_run_names_are_404(client, params):
    for url in ["/api/run", "/api/images?step=0", "/api/thumb?id=x", "/api/events"]:
        assert client.get(url, params=params).status_code == 404


def test_thumb_path_traversal(client, runs):
    for image_id in ["../../secret.txt", "../store.sqlite", "/etc/passwd", "paris-0/../../x"]:
        assert client.get("/api/thumb", params={"run": "alpha", "id": image_id}).status_code == 404
    # even a store whose thumb column was tampered with cannot point outside thumbs/
    con = sqlite3.connect(runs / "alpha" / "store.sqlite")
    con.execute("UPDATE images SET thumb='../../../secret.txt'")
    con.commit()
    con.close()
    r = client.get("/api/thumb", params={"run": "alpha", "id": "paris-0"})
    assert r.status_code == 404 and b"secret" not in r.content


def test_static_path_traversal(client):
    for url in ["/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/runs/store.py",
                "/static/../../../secret.txt"]:
        r = client.get(url)
        assert r.status_code == 404, url
        assert b"top secret" not in r.content and b"import" not in r.content


def test_symlinked_run_outside_the_folder_is_not_served(runs, tmp_path):
    outside = tmp_path / "elsewhere"
    with RunStore(outside) as s:
        s.log_step(0, {"x": 1.0})
    os.symlink(outside, runs / "link")
    client = TestClient(create_app(runs), base_url="http://localhost")
    assert "link" not in [r["name"] for r in client.get("/api/runs").json()["runs"]]
    assert client.get("/api/run", params={"run": "link"}).status_code == 404


def test_model_text_is_json_data_never_markup(client):
    r = client.get("/api/images", params={"run": "alpha", "step": 0})
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["images"][0]["rollouts"][0]["text"] == EVIL  # kept verbatim, as data
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_page_code_never_builds_html_from_strings():
    for f in sorted(STATIC.glob("*.js")):  # app, charts, worldmap, geo, explain
        js = f.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", js), f
    html = (STATIC / "index.html").read_text()
    assert "<script>" not in html and "http://" not in html and "https://" not in html  # no inline JS, no CDN
    for f in STATIC.iterdir():  # nothing in the page reaches another origin
        if f.suffix in (".js", ".css", ".html"):
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", f.read_text()), f


def test_world_map_data(client):
    world = client.get("/static/world-110m.json").json()
    assert "Natural Earth" in world["source"]
    names = {c["name"] for c in world["countries"]}
    assert len(names) > 150 and {"France", "Brazil", "Russia", "Australia"} <= names
    for c in world["countries"]:
        for ring in c["rings"]:
            assert len(ring) % 2 == 0 and len(ring) >= 6
            assert all(-90 <= lat <= 90 for lat in ring[1::2])
    france = next(c for c in world["countries"] if c["name"] == "France")
    lons = [x for r in france["rings"] for x in r[0::2]]
    assert min(lons) < 0 < max(lons) < 10 or min(lons) < -50  # metropolitan France straddles 0°E (or Guiana)


def test_build_map_decodes_topojson(tmp_path):
    from geospot.dashboard import _build_map

    topo = {  # one square of 10° on a quantized grid: scale 10, translate (-5, -5)
        "type": "Topology", "transform": {"scale": [10, 10], "translate": [-5, -5]},
        "arcs": [[[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]],
        "objects": {"countries": {"type": "GeometryCollection", "geometries": [
            {"type": "Polygon", "arcs": [[0]], "properties": {"name": "Square"}}]}},
    }
    src = tmp_path / "t.json"
    src.write_text(json.dumps(topo))
    out = _build_map.build(src)
    assert out["countries"] == [{"name": "Square", "rings": [[-5.0, -5.0, 5.0, -5.0, 5.0, 5.0, -5.0, 5.0, -5.0, -5.0]]}]
    # a ring crossing the antimeridian is unwrapped to continuous longitudes
    assert _build_map.unwrap([(179.0, 0.0), (-179.0, 1.0), (-178.0, 0.0)]) == [(179.0, 0.0), (181.0, 1.0), (182.0, 0.0)]


def test_cli_warns_when_not_on_loopback(runs, monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw))
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert cli.main(["--runs", str(runs), "--host", "0.0.0.0", "--port", "9999"]) == 2  # no token: refused
    assert "--token" in capsys.readouterr().err and not served
    assert cli.main(["--runs", str(runs), "--host", "0.0.0.0", "--port", "9999", "--token", "t"]) == 0
    assert "WARNING" in capsys.readouterr().err and served["host"] == "0.0.0.0"
    assert cli.main(["--runs", str(runs), "--port", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().err and served["host"] == "127.0.0.1"
    assert cli.main(["--runs", str(runs / "missing")]) == 2
    assert "pass --runs DIR" in capsys.readouterr().err
    # the folder as a plain argument, as a user types it (`geospot dashboard runs`)
    assert cli.main([str(runs), "--port", "0"]) == 0 and str(runs.resolve()) in capsys.readouterr().out
    assert cli.main([str(runs), "--runs", str(runs / "other")]) == 2
    assert "two runs folders given" in capsys.readouterr().err
    assert cli.is_loopback("::1") and cli.is_loopback("localhost") and not cli.is_loopback("192.168.1.2")


def test_run_list_says_what_each_run_is(tmp_path):
    """Each row of /api/runs carries its env and model (`setup`); an RL run started from a listed
    run's weights (no model_name of its own) names that run and its model, down a chain."""
    root = tmp_path / "runs"
    configs = {
        "sft": ("sft", {"model_name": "tiny:qwen2_vl", "prompt_style": "all", "reasoning": False}),
        "hier": ("rl", {"model_name": None, "env_type": "hierarchical", "load_checkpoint_path": "runs/sft"}),
        "g/geo": ("rl", {"env_type": "geohash", "load_checkpoint_path": str(root / "hier" / "checkpoints" / "000010")}),
        "reason": ("rl", {"model_name": "tiny:qwen3_vl", "env_type": "single", "reasoning": True,
                          "mix_env_type": "telescoping", "mix_share": 0.25}),
        "away": ("rl", {"env_type": "single", "load_checkpoint_path": "tinker://abc/weights"}),
    }
    for name, (kind, config) in configs.items():
        with RunStore(root / name) as s:
            s.log_config(kind, config)
            s.log_step(0, {"eval/geoscore": 100.0})
    client = TestClient(create_app(root), base_url="http://localhost")
    setup = {r["name"]: r["setup"] for r in client.get("/api/runs").json()["runs"]}
    pick = ("env_type", "mix_env_type", "prompt_style", "reasoning", "model", "start_run")
    assert {n: tuple(s[k] for k in pick) for n, s in setup.items()} == {
        "away": ("single", None, None, False, None, None),
        "g/geo": ("geohash", None, None, False, "tiny:qwen2_vl", "hier"),
        "hier": ("hierarchical", None, None, False, "tiny:qwen2_vl", "sft"),
        "reason": ("single", "telescoping", None, True, "tiny:qwen3_vl", None),
        "sft": (None, None, "all", False, "tiny:qwen2_vl", None),
    }
    assert setup["reason"]["mix_share"] == 0.25 and setup["away"]["start"] == "tinker://abc/weights"
    # the cached summary keeps what the store says: a second poll answers the same
    assert {r["name"]: r["setup"] for r in client.get("/api/runs").json()["runs"]} == setup


def test_cli_prints_the_port_it_listens_on_and_refuses_a_taken_one(runs, monkeypatch, capsys):
    """--port 0 printed http://127.0.0.1:0/ (help: "0 picks a free one"); a port in use printed the
    URL, then uvicorn's error. Now: the picked port in the URL; a taken one in one sentence, exit 2."""
    import socket

    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw))
    assert cli.main(["--runs", str(runs), "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert served["port"] > 0 and f"http://127.0.0.1:{served['port']}/" in out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served.clear()
        assert cli.main(["--runs", str(runs), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pass --port N" in err and not served
    assert cli.main(["--runs", str(runs), "--port", "99999"]) == 2  # (bind's OverflowError: a traceback)
    assert "--port 99999: a port is 0-65535" in capsys.readouterr().err
    assert cli.main(["--runs", str(runs), "--host", "nosuchhost.invalid", "--token", "auto"]) == 2
    err = capsys.readouterr().err
    assert "--host nosuchhost.invalid: no such address here" in err and "port" not in err and not served


def test_cli_refuses_a_poll_of_zero_and_a_store_file_for_a_folder(runs, capsys):
    """--poll 0 made each open page poll its store flat out (~45 % of a core); a store file given as
    the folder was said not to exist."""
    assert cli.main(["--runs", str(runs), "--poll", "0"]) == 2
    assert "--poll 0.0: give the seconds between polls, above 0" in capsys.readouterr().err
    store = next(runs.rglob("store.sqlite"))
    assert cli.main([str(store)]) == 2
    assert f"{store} is a file, not a folder: pass the folder holding the run folders" in capsys.readouterr().err


def test_a_long_runs_history_comes_gzipped_to_a_browser(tmp_path):
    """/api/run carries every step: 0.9-2 MB uncompressed for a few thousand steps (a walk), sent whole on
    every page load; a client that accepts gzip gets it compressed, the same JSON."""
    with RunStore(tmp_path / "runs" / "long") as s:
        fake_run.fill(s, 300, n_images=1)
    client = TestClient(create_app(tmp_path / "runs"), base_url="http://localhost")
    plain = client.get("/api/run", params={"run": "long"}, headers={"Accept-Encoding": "identity"})
    zipped = client.get("/api/run", params={"run": "long"}, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < int(plain.headers["content-length"]) / 3
    assert zipped.json() == plain.json()
