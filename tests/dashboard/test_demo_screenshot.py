"""The README's dashboard picture, taken from a REAL `geospot demo` run (not a fake store):
the demo's telescoping GRPO run opened in headless Chromium (Debian's `chromium`), one
image picked, its G rollouts' coarse -> refine -> final paths on the map.

    GEOSPOT_DEMO_RUN=runs/demo             reuse a finished demo run folder (else tests/conftest.py's
                                           `short_demo`, the one run tests/test_demo.py also checks)
    GEOSPOT_UPDATE_SCREENSHOTS=1           also copy the picture to docs/dashboard.png

Always written: test-artifacts/demo-dashboard.png."""

import os
import shutil
from pathlib import Path

import pytest
from conftest import ARGS, CHROMIUM, Server

pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_runs(request) -> Path:
    given = os.environ.get("GEOSPOT_DEMO_RUN")
    if given:
        runs = Path(given)
        assert (runs / "rl" / "store.sqlite").is_file(), \
            f"GEOSPOT_DEMO_RUN={given}: no rl/store.sqlite (run `geospot demo --out {given}`)"
        return runs
    return request.getfixturevalue("short_demo").folder  # only now: a given folder runs no demo


def test_demo_run_dashboard_screenshot(tmp_path, demo_runs):
    from playwright.sync_api import sync_playwright

    from geospot.dashboard.app import create_app
    from geospot.runs.store import RunReader

    last = [s for s in RunReader(demo_runs / "rl").image_steps() if s["split"] == "train"][-1]  # the map opens on train
    with sync_playwright() as p, Server(create_app(demo_runs, poll_s=0.5)) as srv:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(srv.url + "/")
                   else route.abort())
        page.goto(srv.url + "/#/run/rl")
        page.wait_for_selector("circle.guess")
        # the newest GRPO step with rollouts, every image's truth on the map, charts of the run
        assert page.locator("#step-label").get_attribute("data-step") == str(last["step"])
        assert page.locator("rect.truth").count() == last["n"]
        assert page.locator(".chart").count() >= 3
        # pick an image: its rollouts' texts and the coarse -> refine -> final path of each
        page.locator(".card").first.click()
        page.wait_for_selector(".detail .rollout")
        assert page.locator(".detail .rollout").count() >= 2
        assert page.locator("circle.turn").count() >= 2
        page.wait_for_timeout(400)
        shot = tmp_path / "demo-dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 20_000
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    shutil.copy(shot, REPO / "test-artifacts" / "demo-dashboard.png")
    if os.environ.get("GEOSPOT_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, REPO / "docs" / "dashboard.png")
