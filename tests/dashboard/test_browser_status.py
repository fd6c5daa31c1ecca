"""The dashboard tells the truth, in real headless Chromium: a run killed with SIGKILL stops
reading `running`, a finished SFT run shows its held-out eval curves and the per-image guesses
of its periodic evals on the map, and the run list's held-out columns."""

import io
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHROMIUM, Server
from test_browser import expect

from geospot.dashboard.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
REPO = Path(__file__).resolve().parents[2]
LOAD_DEADLINE_S = 120  # a wait that is not the promise under test: generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A real (short) SFT run with periodic held-out evals: steps 0, 2, 4."""
    from geospot.train.sft import SFTConfig, train

    runs = tmp_path_factory.mktemp("dash") / "runs"
    train(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, data="synthetic:n=400,size=56,seed=0", eval_n=4,
                    prompt_style="single", batch_size=4, learning_rate=1e-2, max_steps=4, eval_every=2,
                    save_every=0, eval_max_tokens=12, log_path=str(runs / "sft"), behavior_if_log_dir_exists="raise"),
          stderr=io.StringIO())
    return runs


def _first_line(proc: subprocess.Popen, deadline_s: float) -> str:
    """The process's first line of output, or '' if it printed none within the deadline (no hang)."""
    ready, _, _ = select.select([proc.stdout], [], [], deadline_s)
    return proc.stdout.readline().strip() if ready else ""


def test_a_run_killed_with_sigkill_stops_reading_running(tmp_path, browser):
    runs = tmp_path / "runs"
    code = ("import sys, time; from geospot.runs.store import RunStore; s = RunStore(sys.argv[1]); "
            "s.log_config('sft', {}); s.set_status('running'); s.log_step(1, {'loss': 1.0}); s.flush(); "
            "print('ok', flush=True); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(runs / "victim")], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    # Every wait polls up to a deadline generous for a loaded 2-core machine (a quiet one passes
    # each in well under a second); none of them loosens the promise checked after the kill.
    try:
        assert _first_line(proc, LOAD_DEADLINE_S) == "ok"
        with Server(create_app(runs, poll_s=0.1)) as srv:
            page = browser.new_page()
            page.goto(srv.url + "/#/", timeout=LOAD_DEADLINE_S * 1000)  # the list redraws itself: live too
            expect(page.locator("tr[data-run='victim'] .badge")).to_have_text("running", timeout=LOAD_DEADLINE_S * 1000)
            expect(page.locator("#live")).to_have_text("live", timeout=5_000)
            page.goto(srv.url + "/#/run/victim", timeout=LOAD_DEADLINE_S * 1000)
            expect(page.locator("#run-status")).to_have_class("badge running", timeout=LOAD_DEADLINE_S * 1000)
            # `live` once the event stream opened (it may open after the header is drawn)
            expect(page.locator("#live")).to_have_text("live", timeout=LOAD_DEADLINE_S * 1000)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=LOAD_DEADLINE_S)
            # the page polls the status every 5 s; the promise is "within 60 s"
            expect(page.locator("#run-status")).to_have_class("badge stopped", timeout=60_000)
            expect(page.locator("#live")).to_have_text("stopped", timeout=5_000)  # set in the same redraw
            page.goto(srv.url + "/#/", timeout=LOAD_DEADLINE_S * 1000)
            expect(page.locator("tr[data-run='victim'] .badge")).to_have_text("stopped",
                                                                               timeout=LOAD_DEADLINE_S * 1000)
            expect(page.locator("#live")).to_have_text("not live", timeout=5_000)  # nothing trains any more
            page.close()
    finally:
        proc.kill()
        proc.wait()


def test_a_finished_sft_run_shows_its_held_out_evals(sft_run, browser):
    with Server(create_app(sft_run, poll_s=0.1)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url + "/#/run/sft")
        page.wait_for_selector("rect.truth")
        assert page.locator("#run-status").inner_text() == "done"
        assert page.locator("#live").inner_text() == "done"  # a finished run is not "live"
        # the map shows the last periodic eval's images (4 held-out images), the slider its 3 evals
        assert page.locator("rect.truth").count() == 4
        assert page.locator("#step-label").get_attribute("data-step") == "4"
        assert page.locator("#step-slider").get_attribute("max") == "2"
        # the held-out curves: GeoScore and median km charts with a line over the eval steps
        assert page.locator(".chart[data-title='held-out GeoScore'] polyline").count() == 1
        assert page.locator(".chart[data-title='median distance (km, log)']").count() == 1
        assert "no images recorded yet" not in page.content()
        assert not errors
        page.close()


def test_the_run_list_shows_latest_held_out_numbers(sft_run, browser):
    from geospot.runs.store import RunReader

    heldout = RunReader(sft_run / "sft").summary()["heldout"]
    assert heldout["step"] == 4
    with Server(create_app(sft_run, poll_s=0.1)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/#/")
        page.wait_for_selector("tr[data-run='sft']")
        headers = page.locator("#runs th").all_inner_texts()
        assert "held-out GeoScore" in headers and "held-out median km" in headers and "held-out at step" in headers
        row = page.locator("tr[data-run='sft']")
        assert row.locator("td[data-key='heldout-step']").inner_text() == "4"
        shown = row.locator("td[data-key='geoscore']").inner_text()
        assert shown != "" and shown == page.evaluate(f"fmt({heldout['geoscore']!r})")
        assert row.locator(".badge").inner_text() == "done"
        page.close()


def test_a_run_page_opened_before_its_run_exists_waits_for_it(tmp_path, browser):
    """Open `#/run/live2` before the run has written anything: the page says it is waiting, then
    shows the run once its store appears (it stayed on a 404 for good), with its 1 training step."""
    import fake_run

    from geospot.runs.store import RunStore

    runs = tmp_path / "runs"
    runs.mkdir()
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/#/run/live2", timeout=LOAD_DEADLINE_S * 1000)
        expect(page.locator("#route-error")).to_contain_text("no run named live2 in this runs folder yet",
                                                             timeout=LOAD_DEADLINE_S * 1000)
        with RunStore(runs / "live2") as store:
            store.log_config("sft", {})
            store.log_step(0, {"eval/geoscore": 0.0})  # the eval before training: not a step
            fake_run.fill(store, 1, start=1, n_images=1)
        expect(page.locator("#run-status")).to_be_visible(timeout=LOAD_DEADLINE_S * 1000)
        expect(page.locator("#steps-count")).to_have_text("1 step", timeout=LOAD_DEADLINE_S * 1000)
        page.close()


def test_rl_steps_that_trained_nothing_are_said_in_the_list_and_on_the_run_page(tmp_path, browser):
    """An RL step whose groups all had equal rewards logs datums 0: its weights did not move, and the
    step count says so (it read "steps | 3" for a run that never trained)."""
    from geospot.runs.store import RunStore

    runs = tmp_path / "runs"
    for name, datums in (("idle", (0, 0, 0)), ("some", (0, 16, 0)), ("all", (8, 16, 8))):
        with RunStore(runs / name) as store:
            store.log_config("rl", {})
            store.set_status("done")
            for step, n in enumerate(datums, start=1):
                store.log_step(step, {"reward_mean": 0.1, "datums": n})
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/#/", timeout=LOAD_DEADLINE_S * 1000)
        for name, text in (("idle", "3 (none trained)"), ("some", "3 (2 trained nothing)"), ("all", "3")):
            expect(page.locator(f"tr[data-run='{name}'] td[data-key='steps']")).to_have_text(
                text, timeout=LOAD_DEADLINE_S * 1000)
        page.goto(srv.url + "/#/run/some", timeout=LOAD_DEADLINE_S * 1000)
        expect(page.locator("#steps-count")).to_have_text("3 steps (2 trained nothing)", timeout=LOAD_DEADLINE_S * 1000)
        assert "GRPO had nothing to compare" in page.locator("#steps-count").get_attribute("title")
        page.close()
