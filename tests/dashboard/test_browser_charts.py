"""In real Chromium: a reasoning=true run's reasoning metrics get their own charts, and a chart
with one point (a run's single held-out eval) shows a dot mid-axis with its value."""

import pytest
from conftest import CHROMIUM, Server
from test_browser import expect

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
REASONING = "reasoning tokens per turn"
RATES = "reasoning: truncated / answer-format rate"


def _run(runs, reasoning: bool) -> None:
    with RunStore(runs / ("reasoning" if reasoning else "plain")) as store:
        store.log_config("rl", {"model": "tiny:qwen2_5_vl:tiny", "reasoning": reasoning})
        for s in range(1, 7):
            m = {"reward_mean": 0.1 * s, "format_rate": 0.5 + 0.05 * s, "acc_25km": 0.0}
            if reasoning:
                m.update(reasoning_tokens=40.0 + 10 * s, truncation_rate=0.5 - 0.05 * s,
                         answer_format_rate=0.4 + 0.1 * s)
            store.log_step(s, m)
        store.log_step(6, {"eval/geoscore": 1774.0, "eval/median_km": 1597.0})  # one held-out eval, at step 6
        store.set_status("done")


def _legend(page, title):
    return page.locator(f".chart[data-title='{title}'] .legend span").all_inner_texts()


def test_reasoning_metrics_are_charted_and_a_single_eval_is_a_dot(tmp_path, browser):
    runs = tmp_path / "runs"
    _run(runs, reasoning=True)
    _run(runs, reasoning=False)
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url + "/#/run/reasoning", timeout=120_000)
        expect(page.locator(f".chart[data-title='{REASONING}'] polyline")).to_have_count(1, timeout=60_000)
        assert _legend(page, REASONING) == ["reasoning_tokens"]
        assert _legend(page, RATES) == ["answer_format_rate", "truncation_rate"]
        assert _legend(page, "format rate") == ["format_rate"]  # the answer-format rate is charted with reasoning
        assert page.locator(f".chart[data-title='{RATES}'] polyline").count() == 2

        # the single held-out eval: a dot in the middle of the x axis, its value beside it, distinct y ticks
        held = page.locator(".chart[data-title='held-out GeoScore']")
        assert held.locator("polyline.dot").count() == 1
        assert held.locator("text.value").text_content() == "1774"
        dot_x = float(held.locator("polyline.dot").get_attribute("points").split(",")[0])
        axis = held.locator("line.axis").first
        x1, x2 = float(axis.get_attribute("x1")), float(axis.get_attribute("x2"))
        assert abs(dot_x - (x1 + x2) / 2) < 1, (dot_x, x1, x2)
        ticks = held.locator("text.tick:not(.value)").all_text_contents()
        assert ticks[0] != ticks[1] and ticks[2:] == ["5", "7"], ticks  # y: 1951 / 1597; x: steps 5 .. 7
        assert page.locator(".chart[data-title='reward'] polyline.dot").count() == 0  # lines keep no dots
        # an accuracy that stayed at 0: its axis runs 0 .. 1, not -1 .. 1
        acc = page.locator(".chart[data-title='accuracy @25 / 200 / 750 km'] text.tick:not(.value)").all_text_contents()
        assert acc[:2] == ["1", "0"], acc

        page.goto(srv.url + "/#/run/plain")  # no reasoning metrics: no reasoning charts
        expect(page.locator(".chart[data-title='reward']")).to_have_count(1, timeout=60_000)
        assert page.locator(f".chart[data-title='{REASONING}'], .chart[data-title='{RATES}']").count() == 0
        assert not errors
        page.close()
