"""The dashboard left running: files only from inside the runs folder, no DNS rebinding (Host
header), a token to bind beyond loopback, corrupt stores without tracebacks, and a page that no
URL makes throw."""

import logging
import os
import shutil
from pathlib import Path

import fake_run
import pytest
from conftest import Server
from starlette.testclient import TestClient

from geospot.dashboard import cli
from geospot.dashboard.app import create_app, host_allowed
from geospot.runs.store import STORE_FILE, RunStore


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    with RunStore(root / "alpha") as s:
        fake_run.fill(s, 2, n_images=1)
    return root


def _thumb_id(client) -> str:
    images = client.get("/api/images", params={"run": "alpha", "step": 0}).json()["images"]
    return images[0]["image_id"]


def test_symlinked_thumbs_folder_serves_nothing_outside_the_runs_folder(runs, tmp_path):
    client = TestClient(create_app(runs), base_url="http://localhost")
    image_id = _thumb_id(client)
    assert client.get("/api/thumb", params={"run": "alpha", "id": image_id}).status_code == 200
    # thumbs/ replaced by a symlink to a folder outside the runs folder holding a file of the
    # same name (as /etc holds passwd): the resolved file is outside, so nothing is served
    thumbs = runs / "alpha" / "thumbs"
    outside = tmp_path / "etc"
    shutil.copytree(thumbs, outside)
    for f in outside.iterdir():
        f.write_bytes(b"root:x:0:0:secret")
    shutil.rmtree(thumbs)
    thumbs.symlink_to(outside, target_is_directory=True)
    resp = client.get("/api/thumb", params={"run": "alpha", "id": image_id})
    assert resp.status_code == 404 and b"root:" not in resp.content


@pytest.mark.parametrize(("host", "ok"), [
    ("localhost", True), ("localhost:8765", True), ("127.0.0.1:8765", True), ("[::1]:8765", True),
    ("10.1.2.3:8765", True), ("app.localhost", True), ("evil.com", False), ("evil.com:8765", False),
    ("127.0.0.1.evil.com", False), ("", False), ("myhost", False), ("myhost:80", True),
])
def test_host_rule(host, ok):
    assert host_allowed(host, {"myhost"} if host == "myhost:80" else set()) is ok


def test_foreign_host_header_is_refused(runs):
    """A DNS-rebinding page (evil.com resolving to 127.0.0.1) sends Host: evil.com."""
    client = TestClient(create_app(runs), base_url="http://localhost")
    assert client.get("/api/runs").status_code == 200
    for path in ("/api/runs", "/", "/api/run?run=alpha", "/static/app.js"):
        resp = client.get(path, headers={"Host": "evil.com:8765"})
        assert resp.status_code == 403 and b"alpha" not in resp.content, path
    named = TestClient(create_app(runs, allowed_hosts=("box.lan",)), base_url="http://box.lan")
    assert named.get("/api/runs").status_code == 200


def test_foreign_host_over_real_http(runs):
    import httpx

    with Server(create_app(runs)) as srv:
        assert httpx.get(srv.url + "/api/runs").status_code == 200
        bad = httpx.get(srv.url + "/api/runs", headers={"Host": "evil.com"})
        assert bad.status_code == 403 and "alpha" not in bad.text


def test_token(runs):
    app = create_app(runs, token="s3cret")
    client = TestClient(app, base_url="http://localhost")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", params={"token": "wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "token s3cret"}).status_code == 200
    first = client.get("/", params={"token": "s3cret"})  # the printed URL: sets the cookie
    assert first.status_code == 200 and "httponly" in first.headers["set-cookie"].lower()
    assert client.get("/api/runs").status_code == 200  # the page's own fetches carry the cookie


def test_binding_beyond_loopback_needs_a_token(runs, capsys, monkeypatch):
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert cli.main(["--runs", str(runs), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    started = {}

    def fake_run(app, host, port, **kw):
        started.update(app=app, host=host, port=port)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert cli.main(["--runs", str(runs), "--host", "0.0.0.0", "--port", "9999", "--token", "auto"]) == 0
    out = capsys.readouterr().out
    assert "http://0.0.0.0:9999/?token=" in out
    token = out.split("?token=")[1].split()[0]
    client = TestClient(started["app"], base_url="http://10.0.0.5:9999")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", params={"token": token}).status_code == 200
    # the environment variable works as --token does
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    assert cli.main(["--runs", str(runs), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "?token=from-env" in capsys.readouterr().out


def test_corrupt_store_is_unreadable_without_traceback(runs, caplog):
    bad = runs / "broken"
    bad.mkdir()
    (bad / STORE_FILE).write_bytes(b"this is not a sqlite database" * 100)
    client = TestClient(create_app(runs), base_url="http://localhost")
    caplog.set_level(logging.DEBUG)
    rows = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert rows["broken"]["status"].startswith("unreadable") and rows["alpha"]["status"] != ""
    for path in ("/api/run", "/api/images?step=0", "/api/thumb?id=x", "/api/events"):
        resp = client.get(path + ("&" if "?" in path else "?") + "run=broken")
        assert resp.status_code == 503 and "unreadable" in resp.json()["error"], path
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_bad_hash_does_not_throw_in_chromium(runs):
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with Server(create_app(runs)) as srv, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for bad in ("#/run/%E0%A4%A", "#/compare/%/%ZZ", "#/%", "#/run/" + "%" * 50, "#/run/alpha%00/../x"):
                page.goto(srv.url + "/" + bad)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(200)
            page.goto(srv.url + "/#/run/alpha")
            page.wait_for_load_state("networkidle")
            assert errors == []
        finally:
            browser.close()


def test_no_env_token_leaks_into_defaults(monkeypatch):
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert os.environ.get(cli.TOKEN_ENV) is None
