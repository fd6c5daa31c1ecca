"""The explainers under a run's map, in real headless Chromium: the reward kernel exp(-d/τ) at
5000 / 750 / 100 / 25 / 1 km around an image's truth for the run's latest logged τ, and the
base (first held-out eval) vs current (latest) policy's guesses for one image side by side."""

import math
import os

import fake_run
import pytest
from conftest import CHROMIUM, Server

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
G, N_IMAGES, STEPS = 4, 3, 10


def _run(runs, *, evals=(0, 8), tau=True):
    store = RunStore(runs / "rl")
    fake_run.fill(store, STEPS, image_every=2, G=G, turns=1, n_images=N_IMAGES)
    if not tau:  # a run whose reward has no τ: the same steps without tau_km
        store.log_step(STEPS, {"reward_mean": 0.5})
    for s in evals:  # held-out evals: guesses tighten around the truth as the policy learns
        store.log_images(s, fake_run.image_records(s, 20, G=G, turns=1, n_images=N_IMAGES, seed=7), split="eval")
    store.set_status("finished")
    store.flush()
    return store


def _sft_with_one_eval(runs, records):
    """An SFT run (no τ) whose only image records are one held-out eval's."""
    store = RunStore(runs / "rl")
    store.log_config("sft", {"model": "tiny"})
    store.log_step(0, {"loss": 1.0})
    store.log_images(0, records, split="eval")
    store.set_status("finished")
    store.flush()


def _page(browser, srv, errors):
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(srv.url + "/#/run/rl")
    return page


def test_kernel_and_base_vs_current_for_the_runs_tau(tmp_path, browser):
    runs = tmp_path / "runs"
    _run(runs)
    tau = fake_run.step_metrics(STEPS - 1, 20)["tau_km"]  # the latest logged τ: 2000 * (1 - 9/20) + 25 = 1125 km
    assert tau == 1125.0
    errors = []
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = _page(browser, srv, errors)
        page.wait_for_selector("#policy-explainer .policy.current")
        panels = page.locator("#kernel-explainer .kpanel")
        assert panels.count() == 5
        assert [panels.nth(i).get_attribute("data-km") for i in range(5)] == ["5000", "750", "100", "25", "1"]
        for i, d in enumerate((5000, 750, 100, 25, 1)):
            shown = float(panels.nth(i).locator(".kval").get_attribute("data-value"))
            assert shown == pytest.approx(math.exp(-d / tau), abs=1e-6)  # 750 km: exp(-2/3) = 0.513
        assert "τ = 1125 km" in page.locator("#kernel-explainer h3").inner_text()
        # base = the first eval (step 0), current = the latest (step 8), the same image in both
        assert page.locator(".policy.base").get_attribute("data-step") == "0"
        assert page.locator(".policy.current").get_attribute("data-step") == "8"
        assert page.locator(".policy.base .mguess").count() == G
        assert page.locator(".policy.current .guesslist li").count() == G
        # its median is the tiles' (unparsed answers count as misses), over every answer
        shown = page.locator(".policy.current").get_attribute("data-step")
        caption = page.locator(".policy.current figcaption").inner_text()
        assert caption.startswith("median ") and f"km over {G} answers" in caption and shown == "8", caption
        # picking another image redraws both explainers for it
        page.locator(".card").nth(1).click()
        second = page.locator(".card").nth(1).get_attribute("data-image")
        page.locator("#policy-explainer h3", has_text=second).wait_for(timeout=10_000)  # (no eval under the CSP)
        assert second in page.locator("#kernel-explainer h3").inner_text()
        if os.environ.get("GEOSPOT_SCREENSHOT"):
            page.locator("#explain").screenshot(path=os.environ["GEOSPOT_SCREENSHOT"])
    assert errors == []


def test_the_kernel_is_drawn_around_the_picked_image_held_out_or_not(tmp_path, browser):
    """Training images beyond the held-out ones: the kernel is drawn around the picked image's truth;
    the base-vs-current panel, which needs held-out evals, names the held-out image it shows."""
    runs = tmp_path / "runs"
    store = RunStore(runs / "rl")
    fake_run.fill(store, STEPS, image_every=2, G=G, turns=1, n_images=3)
    for s in (0, 8):  # the held-out evals hold only the first two images
        store.log_images(s, fake_run.image_records(s, 20, G=G, turns=1, n_images=2, seed=7), split="eval")
    store.flush()
    errors = []
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = _page(browser, srv, errors)
        page.wait_for_selector("#policy-explainer .policy.current")
        held_out = page.locator(".card").nth(0).get_attribute("data-image")
        page.locator(".card").nth(2).click()
        third = page.locator(".card").nth(2).get_attribute("data-image")
        page.locator("#kernel-explainer h3", has_text=third).wait_for(timeout=10_000)  # (no eval under the CSP)
        assert third not in page.locator("#policy-explainer h3").inner_text()
        assert held_out in page.locator("#policy-explainer h3").inner_text()
    assert errors == []


def test_no_tau_and_a_single_eval_say_what_is_missing(tmp_path, browser):
    runs = tmp_path / "runs"
    _sft_with_one_eval(runs, fake_run.image_records(0, 20, G=2, turns=1, n_images=2))
    errors = []
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = _page(browser, srv, errors)
        page.wait_for_selector("#policy-explainer")
        assert "An SFT run has no reward" in page.locator("#kernel-explainer").inner_text()
        assert page.locator("#kernel-explainer .kpanel").count() == 0
        assert "Needs two held-out evals" in page.locator("#policy-explainer").inner_text()
    assert errors == []


def test_an_eval_guess_shows_its_distance_and_no_reward(tmp_path, browser):
    """Held-out evals pay no reward (stored null): the picked image's guesses say their distance only."""
    import dataclasses

    runs = tmp_path / "runs"
    records = fake_run.image_records(0, 20, G=1, turns=1, n_images=2)
    _sft_with_one_eval(runs, [dataclasses.replace(r, rollouts=tuple(
        dataclasses.replace(ro, reward=math.nan, turn_rewards=()) for ro in r.rollouts)) for r in records])
    errors = []
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = _page(browser, srv, errors)
        page.wait_for_selector(".card")
        page.locator(".card").first.click()
        line = page.locator(".rollout div").first
        line.wait_for()
        text = line.inner_text()
        assert "km" in text and "reward" not in text, text
    assert errors == []


@pytest.mark.parametrize("env_type", ["telescoping", "hierarchical", "telescoping+single"])
def test_a_run_without_tau_shows_the_reward_it_has(tmp_path, browser, env_type):
    """Telescoping's default reward is the GeoScore / 5000 = exp(-d/1492.7 km), a kernel with a
    fixed τ: drawn, with what a turn earns. A hierarchical run's reward grades labels: said so. A
    telescoping run with a single-turn share logs that share's τ: its τ-kernel is drawn, said to be
    the share's, and telescoping's GeoScore said in words (both used to be drawn as one reward)."""
    runs = tmp_path / "runs"
    store = RunStore(runs / "rl")
    env, _, mix = env_type.partition("+")
    store.log_config("rl", {"model": "tiny", "env_type": env, "reward": "auto", "mix_env_type": mix or None,
                            "mix_share": 0.25})
    store.log_step(1, {"reward_mean": 0.5, **({"tau_km": 750.0} if mix else {})})
    store.log_images(1, fake_run.image_records(1, 20, G=2, turns=3, n_images=2))
    store.set_status("done")
    store.flush()
    errors = []
    with Server(create_app(runs, poll_s=0.1)) as srv:
        page = _page(browser, srv, errors)
        page.wait_for_selector("#kernel-explainer h3")
        text = page.locator("#kernel-explainer").inner_text()
        panels = page.locator("#kernel-explainer .kpanel")
        if env_type == "telescoping":
            assert "GeoScore / 5000 = exp(−d/1492.7 km)" in text and "S(d_t) − S(d_{t−1})" in text
            assert panels.count() == 5 and "% of each batch" not in text
            shown = float(panels.nth(1).locator(".kval").get_attribute("data-value"))
            assert shown == pytest.approx(math.exp(-750 / 1492.7), abs=1e-6)  # 0.605
        elif env_type == "telescoping+single":
            assert "reward kernel exp(−d/τ)" in text and "τ = 750 km (step 1)" in text
            assert "25% of each batch's images play single, paid this." in text
            assert "75% of each batch's images play telescoping, paid GeoScore / 5000. A telescoping turn earns" in text
            shown = float(panels.nth(1).locator(".kval").get_attribute("data-value"))
            assert panels.count() == 5 and shown == pytest.approx(math.exp(-1), abs=1e-6)  # 750 km at τ = 750 km
        else:
            assert "not a kernel of the distance" in text and "A right label (country" in text and panels.count() == 0
    assert errors == []
