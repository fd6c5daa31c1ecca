"""The dashboard in REAL headless Chromium (Debian's `chromium`, never a downloaded browser),
served by uvicorn on 127.0.0.1 from a run store filled like an RL run (G=8, 3 turns)."""

import shutil
import time
from pathlib import Path

import fake_run
import pytest
from conftest import CHROMIUM, Server

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore

expect = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed").expect
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it: "
                                                "apt-get install chromium)"),
]
REPO = Path(__file__).resolve().parents[2]
G, TURNS, N_IMAGES = 8, 3, 6
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_live_map_in_chromium(tmp_path, browser):
    runs = tmp_path / "runs"
    store = RunStore(runs / "tele-rl")
    fake_run.fill(store, 12, image_every=2, G=G, turns=TURNS, n_images=N_IMAGES)  # image steps 0..10
    store.flush()
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests, errors, dialogs = [], [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        # Anything not addressed to our loopback server is aborted (and recorded above).
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(srv.url + "/")
                   else route.abort())

        page.goto(srv.url + "/#/run/tele-rl")
        page.wait_for_selector("circle.guess")
        # the map: countries drawn, one truth per image, G final guesses per image
        assert page.locator("path.country").count() > 150
        assert page.locator("rect.truth").count() == N_IMAGES
        assert page.locator("circle.guess").count() == N_IMAGES * G
        assert page.locator("path.gc").count() >= N_IMAGES * G
        assert page.locator("#step-label").get_attribute("data-step") == "10"
        assert page.locator(".chart").count() >= 5

        # the slider changes the guesses shown (early steps: far-flung guesses)
        def guess_positions():
            guesses = page.locator("circle.guess")
            return [(guesses.nth(i).get_attribute("cx"), guesses.nth(i).get_attribute("cy"))
                    for i in range(guesses.count())]

        late = guess_positions()
        page.locator("#step-slider").fill("0")
        expect(page.locator("#step-label")).to_have_attribute("data-step", "0")
        page.wait_for_timeout(200)
        early = guess_positions()
        assert len(early) == N_IMAGES * G and early != late

        # live: a step written to the store now shows up without a reload
        page.locator("#step-slider").fill("5")  # back to the newest image step: the view follows live
        expect(page.locator("#step-label")).to_have_attribute("data-step", "10")
        fake_run.fill(store, 2, start=12, image_every=2, G=G, turns=TURNS, n_images=N_IMAGES)  # steps 12, 13
        store.flush()
        expect(page.locator("#steps-count")).to_have_text("14 steps", timeout=15000)
        expect(page.locator("#step-label")).to_have_attribute("data-step", "12", timeout=15000)
        assert page.locator("#step-slider").get_attribute("max") == "6"
        assert page.locator("#live").text_content() == "live"

        # click an image: photo, the G rollouts' texts and the coarse -> refine -> final path
        page.locator(".card").nth(1).click()
        page.wait_for_selector(".detail .rollout")
        assert page.locator(".detail .rollout").count() == G
        assert page.locator(".detail img").count() == 1
        assert "coarse" in page.locator(".detail .turns").first.text_content()
        assert page.locator("circle.turn").count() == G * TURNS
        page.locator("#fit").click()  # zoom to the picked image's guesses
        assert float(page.locator("svg.map").first.get_attribute("viewBox").split()[2]) < 360
        page.wait_for_timeout(300)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "dashboard.png", REPO / "test-artifacts" / "dashboard.png")
        # README's picture (docs/dashboard.png) comes from a real demo run: test_demo_screenshot.py

        # play animates through the steps
        page.locator("#play").click()
        expect(page.locator("#step-label")).to_have_attribute("data-step", "2", timeout=15000)
        page.locator("#play").click()

        assert not errors, errors
        assert requests and all(u.startswith(srv.url + "/") for u in requests), [u for u in requests
                                                                                if not u.startswith(srv.url)]
        page.close()
    store.close()


def test_model_text_cannot_inject_html(tmp_path, browser):
    runs = tmp_path / "runs"
    with RunStore(runs / "evil") as store:
        store.log_config("rl", {"note": EVIL})
        recs = fake_run.image_records(0, 10, G=2, turns=1, n_images=1, text=EVIL)
        store.log_images(0, recs)
        store.log_step(0, {"reward_mean": 0.5})
    with Server(create_app(runs)) as srv:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(srv.url + "/#/run/evil")
        page.wait_for_selector("circle.guess")
        page.locator(".card").first.click()
        page.wait_for_selector(".detail pre.text")
        assert page.locator(".detail pre.text").first.text_content() == EVIL  # shown verbatim, as text
        assert page.locator(".detail pre.text img").count() == 0
        assert page.locator("img[src='x']").count() == 0
        time.sleep(0.3)
        # (page.evaluate is itself blocked by the page's CSP — no eval — so check the DOM instead)
        scripts = page.locator("script")  # only ours (geo, explain, charts, worldmap, app), none injected
        assert [scripts.nth(i).get_attribute("src") for i in range(scripts.count())] == [
            "/static/geo.js", "/static/explain.js", "/static/charts.js", "/static/worldmap.js", "/static/app.js"]
        assert not dialogs
        page.close()


def test_run_list_and_compare(tmp_path, browser):
    runs = tmp_path / "runs"
    for name, seed in (("a", 0), ("b", 1)):
        with RunStore(runs / name) as store:
            fake_run.fill(store, 6, n_images=2, seed=seed)
    with Server(create_app(runs)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(srv.url + "/")
        page.wait_for_selector("#runs tr[data-run='b']")
        assert page.locator("#runs tr[data-run]").count() == 2
        assert page.locator("#compare-btn").inner_text() == "pick 2 runs to compare (0 picked)"
        page.locator("tr[data-run='a'] input").check()
        assert page.locator("#compare-btn").inner_text() == "pick 2 runs to compare (1 picked)"
        assert page.locator("#compare-btn").is_disabled()
        page.locator("tr[data-run='b'] input").check()
        assert page.locator("#compare-btn").inner_text() == "compare the 2 picked runs"
        page.locator("#compare-btn").click()
        page.wait_for_selector("section.run[data-run='b'] circle.guess")
        assert page.locator("section.run").count() == 2
        assert page.locator("#compare-charts .chart").count() >= 4
        expect(page.locator("circle.guess")).to_have_count(2 * 2 * 8)  # (waits: both runs' maps fill in turn)
        page.close()


@pytest.mark.slow
def test_real_tiny_model_rl_run_in_chromium(tmp_path, browser):
    """The store filled by a REAL GRPO run (tiny offline Qwen2.5-VL, telescoping, G=8): the page
    shows every image, exactly the parsed final guesses the store holds, and the model's raw
    (often binary-looking) texts verbatim."""
    rl = pytest.importorskip("geospot.train.rl")
    from geospot.runs.store import RunReader

    run_dir = tmp_path / "runs" / "real-rl"
    cfg = rl.RLConfig(model_name="tiny:qwen2_5_vl:tiny", data="synthetic:n=64,size=56,seed=0", env_type="telescoping",
                      max_steps=2, batch_size=3, group_size=G, lora_rank=4, learning_rate=1e-3, eval_every=0,
                      eval_at_start=False, max_tokens=16, save_every=100, log_path=str(run_dir),
                      behavior_if_log_dir_exists="raise")
    rl.run(cfg)
    reader = RunReader(run_dir)
    last = reader.image_steps()[-1]["step"]
    images = reader.images(last)
    parsed = sum(1 for im in images for ro in im["rollouts"] if any(g is not None for g in ro["guesses"]))
    assert len(images) == 3 and all(len(im["rollouts"]) == G for im in images)
    with Server(create_app(run_dir.parent)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url + "/#/run/real-rl")
        page.wait_for_selector("rect.truth")
        expect(page.locator("#step-label")).to_have_attribute("data-step", str(last))
        assert page.locator("path.country").count() > 150
        assert page.locator("rect.truth").count() == 3
        assert page.locator("circle.guess").count() == parsed
        page.locator(".card").first.click()
        page.wait_for_selector(".detail pre.text")
        shown = [page.locator(".detail pre.text").nth(i).text_content() for i in range(G)]
        assert shown == [ro["text"] for ro in images[0]["rollouts"]]
        assert not errors, errors
        page.close()


def test_float_noise_of_one_value_draws_a_flat_line(tmp_path, browser):
    """τ logged 2000, 1999.9999999999998, 2000 (follow_error clipped at its start): the chart is
    the band 1800 .. 2200 around one value, not a jump across its full height."""
    runs = tmp_path / "runs"
    with RunStore(runs / "flat") as store:
        store.log_config("rl", {})
        for step, tau in enumerate((2000.0, 1999.9999999999998, 2000.0)):
            store.log_step(step, {"tau_km": tau, "reward_mean": 0.1 * step})
    with Server(create_app(runs)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/#/run/flat")
        chart = page.locator('.chart[data-title="τ (km)"]')
        chart.wait_for()
        ticks = chart.locator("text.tick")
        assert [ticks.nth(i).text_content() for i in range(2)] == ["2200", "1800"]
        page.close()


def test_compare_names_only_what_each_run_logged_and_both_statuses(tmp_path, browser):
    """Run a has held-out evals and τ, run b (stopped) neither: the legends list b only where it
    has points, the page's badge gives both statuses, and a lone eval dot's value at the top of
    its chart is drawn below the dot, inside the chart."""
    from test_browser_charts import _legend

    runs = tmp_path / "runs"
    with RunStore(runs / "a") as store:
        fake_run.fill(store, 4, n_images=2)
        store.log_step(3, {"eval/geoscore": 900.0, "eval/parsed": 1.0})
        store.set_status("done")
    with RunStore(runs / "b") as store:
        store.log_config("rl", {"model": "tiny", "env_type": "telescoping"})
        for s in range(4):
            store.log_step(s, {"reward_mean": 0.1 * s, "format_rate": 0.5})
        store.log_images(0, fake_run.image_records(0, 20, n_images=2))
        store.set_status("stopped")
    with Server(create_app(runs)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(srv.url + "/#/compare/a/b")
        page.wait_for_selector("section.run[data-run='b'] circle.guess")
        expect(page.locator("#live")).to_have_text("done / stopped", timeout=30_000)
        assert _legend(page, "held-out GeoScore") == ["a: eval/geoscore"]
        assert _legend(page, "τ (km)") == ["a: tau_km"]
        assert _legend(page, "reward") == ["a: reward_mean", "b: reward_mean"]
        fmt = page.locator(".chart[data-title='format rate']")
        dot_y = float(fmt.locator("polyline.dot").get_attribute("points").split(",")[1].split()[0])
        value_y = float(fmt.locator("text.value").get_attribute("y"))
        assert value_y > dot_y, (dot_y, value_y)  # the 1.0 sits at the top: its label goes under it
        page.close()


def test_a_picked_image_holds_its_step_until_let_go(tmp_path, browser):
    """Clicking an image while the run trained lost it within seconds (the map followed the newest
    step, which holds other images), and once picked the page never followed live again."""
    runs = tmp_path / "runs"
    store = RunStore(runs / "r")
    fake_run.fill(store, 4, image_every=1, G=G, turns=TURNS, n_images=N_IMAGES)
    store.flush()
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(srv.url + "/#/run/r")
        page.wait_for_selector(".card")
        page.locator(".card").first.click()
        page.wait_for_selector(".detail .rollout")
        fake_run.fill(store, 2, start=4, image_every=1, G=G, turns=TURNS, n_images=N_IMAGES)
        store.flush()
        expect(page.locator("#steps-count")).to_have_text("6 steps", timeout=15000)
        page.wait_for_timeout(1500)  # (past a live redraw)
        assert page.locator("#step-label").get_attribute("data-step") == "3"  # held where the image was picked
        assert page.locator(".detail .rollout").count() == G
        page.locator(".detail button.unpick").click()
        expect(page.locator("#step-label")).to_have_attribute("data-step", "5", timeout=15000)  # live again
        assert "Click an image" in page.locator(".detail").text_content()
        page.close()
    store.close()
