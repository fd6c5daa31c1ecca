"""In real Chromium: moving the step slider moves the charts' cursor in place (the charts are
not rebuilt), and zooming the map resizes its markers in place (nothing is redrawn)."""

import fake_run
import pytest
from conftest import CHROMIUM, Server
from test_browser import expect

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def test_slider_and_zoom_update_in_place(tmp_path, browser):
    runs = tmp_path / "runs"
    with RunStore(runs / "r") as store:
        fake_run.fill(store, 8, image_every=2, G=4, turns=3, n_images=3)  # image steps 0, 2, 4, 6
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url + "/#/run/r")
        page.wait_for_selector("circle.guess")
        expect(page.locator("#step-label")).to_have_attribute("data-step", "6")
        cursors = lambda: page.eval_on_selector_all(".charts .chart line.cursor",
                                                    "ls => ls.map(l => +l.getAttribute('x1'))")
        late = cursors()
        assert late and len(late) == page.locator(".charts .chart svg").count()  # one cursor per drawn chart
        page.evaluate("document.querySelectorAll('.charts .chart').forEach(c => c.marked = true)")

        page.locator("#step-slider").fill("0")
        expect(page.locator("#step-label")).to_have_attribute("data-step", "0")
        for _ in range(200):  # the redraw follows the label; on a loaded machine it may take more than a moment
            early = cursors()
            if early != late:
                break
            page.wait_for_timeout(50)
        assert len(early) == len(late) and all(e < x for e, x in zip(early, late))  # moved left, to step 0
        assert page.evaluate("[...document.querySelectorAll('.charts .chart')].every(c => c.marked)")  # not rebuilt

        # zoom: same elements, same centres, radii scaled with the view width
        page.evaluate("document.querySelectorAll('svg.map .data circle, svg.map rect.truth')"
                      ".forEach(n => n.marked = true)")
        r0 = float(page.locator("circle.guess").first.get_attribute("r"))
        cx0 = page.locator("circle.guess").first.get_attribute("cx")
        box = page.locator("svg.map").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -100)  # one notch in: the view shrinks to 0.8 of its width
        expect(page.locator("svg.map").first).not_to_have_attribute("viewBox", "-180 -90 360 180")
        w = float(page.locator("svg.map").first.get_attribute("viewBox").split()[2])
        assert w == pytest.approx(288)
        assert float(page.locator("circle.guess").first.get_attribute("r")) == pytest.approx(r0 * w / 360, rel=1e-6)
        assert page.locator("circle.guess").first.get_attribute("cx") == cx0
        assert page.evaluate("[...document.querySelectorAll('svg.map .data circle, svg.map rect.truth')]"
                             ".every(n => n.marked)")
        size = float(page.locator("rect.truth").first.get_attribute("width"))
        assert size == pytest.approx(5.2 * w / 360, rel=1e-6)
        assert not errors


def test_a_fast_live_run_shows_its_thumbnails(tmp_path, browser):
    """A tiny model logs images several times a second: redrawn on every event, the strip's
    thumbnails were replaced before they loaded (empty tiles while it trained). Live redraws are
    spaced (LIVE_REDRAW_MS), so the latest step's thumbnails load while the run goes on."""
    import threading
    import time
    from dataclasses import replace

    runs = tmp_path / "runs"
    store = RunStore(runs / "fast")
    store.log_config("rl", {})
    store.set_status("running")
    fake_run.fill(store, 2, image_every=1, G=2, turns=1, n_images=4)
    store.flush()
    stop = threading.Event()

    def train():  # 10 image steps a second, each with new images (fresh ids), until told to stop
        step = 2
        while not stop.is_set():
            recs = fake_run.image_records(step, 1000, G=2, turns=1, n_images=4, seed=step)
            store.log_images(step, [replace(r, image_id=f"{r.image_id}-s{step}") for r in recs])
            store.log_step(step, {"reward_mean": 0.5})
            store.flush()
            step += 1
            time.sleep(0.1)

    writer = threading.Thread(target=train, daemon=True)
    try:
        with Server(create_app(runs, poll_s=0.05)) as srv:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(srv.url + "/#/run/fast")
            page.wait_for_selector(".strip img")
            step_shown = lambda: int(page.locator("#step-label").get_attribute("data-step"))
            writer.start()
            for _ in range(100):  # the first live redraw comes at once
                if step_shown() > 1:
                    break
                page.wait_for_timeout(50)
            first = step_shown()
            page.wait_for_selector(f".strip .card[data-image$='-s{first}']")  # its strip drawn (after its fetch)
            page.evaluate("document.querySelectorAll('.strip .card').forEach(c => c.marked = true)")
            page.wait_for_timeout(600)  # ~6 image steps arrive meanwhile, well inside LIVE_REDRAW_MS
            assert writer.is_alive()
            kept = page.evaluate("[...document.querySelectorAll('.strip .card')].every(c => c.marked)")
            loaded = page.eval_on_selector_all(".strip img", "ims => ims.filter(i => i.complete && i.naturalWidth)"
                                                             ".length")
            assert kept and loaded == 4  # not rebuilt under its thumbnails, which loaded
            for _ in range(100):  # and the latest step follows within LIVE_REDRAW_MS
                if step_shown() >= first + 6:
                    break
                page.wait_for_timeout(50)
            assert step_shown() >= first + 6
            # a reader who went back to an earlier step keeps it while the run goes on: only the slider grows
            page.locator("#step-slider").fill("0")
            expect(page.locator("#step-label")).to_have_attribute("data-step", "0")
            page.wait_for_selector(".strip .card[data-image='paris-0']")  # step 0's own images
            page.evaluate("document.querySelectorAll('.strip .card').forEach(c => c.marked = true)")
            length = int(page.locator("#step-slider").get_attribute("max"))
            page.wait_for_timeout(2500)  # past LIVE_REDRAW_MS, ~25 image steps later
            assert writer.is_alive() and step_shown() == 0
            assert page.evaluate("[...document.querySelectorAll('.strip .card')].every(c => c.marked)")
            assert int(page.locator("#step-slider").get_attribute("max")) > length
            page.close()
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(timeout=10)
        store.close()
