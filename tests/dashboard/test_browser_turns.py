"""An image's rollouts in real headless Chromium: each turn named by what its env asked (the
run's config says which env), a hierarchical label turn showing the label it answered and
whether it was right, and the image tiles' median counting unparsed answers as the eval
metrics do (a miss at infinite distance)."""

import math

import fake_run
import pytest
from conftest import CHROMIUM, Server

from geospot.dashboard.app import create_app
from geospot.runs.store import RunStore
from geospot.runs.writer import ImageRecord, RolloutRecord

pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it: "
                                                "apt-get install chromium)"),
]
PARIS = (48.86, 2.35)
LABELS = {"country": "France", "region": "Ile-de-France", "city": "Paris"}
HIER = {"env_type": "hierarchical", "hier_turns": ["country", "region", "city", "coords"],
        "hier_weights": [0.2, 0.2, 0.2, 0.4], "hier_partial_credit": 0.0}


def _rollout(texts, guesses, turn_rewards=(), reward=0.0) -> RolloutRecord:
    d = [None if g is None else fake_run.haversine(*PARIS, *g) for g in guesses]
    return RolloutRecord(text="\n---\n".join(texts), guesses=tuple(guesses), distance_km=d[-1], reward=reward,
                         turn_distances_km=tuple(d), turn_rewards=tuple(turn_rewards))


def _image(image_id, rollouts) -> ImageRecord:
    return ImageRecord(image_id=image_id, lat=PARIS[0], lon=PARIS[1], rollouts=tuple(rollouts),
                       image=fake_run.street_scene(0), labels=LABELS)


def _turns(page, run: str, split: str | None = None) -> list[str]:
    """The turn lines of the first image's rollouts (those with more than one turn) at the last image step."""
    page.goto(page.srv + f"/#/run/{run}")
    page.wait_for_selector(".card")
    if split:
        page.locator("select").filter(has_text=split).select_option(split)
        page.wait_for_selector(f".card[data-image='{split}-img']")
    page.locator(".card").first.click()
    page.wait_for_selector(".detail .rollout")
    return page.locator(".detail .rollout .turns").all_text_contents()


@pytest.fixture
def page(tmp_path, browser):
    runs = tmp_path / "runs"
    hier_coords = (48.0, 2.0)
    with RunStore(runs / "hier") as store:
        store.log_config("rl", HIER)
        store.log_images(1, [_image("train-img", [
            # right country, wrong region and city, then coordinates
            _rollout(["Country: France", "Region: Normandy", "City: Rouen", "Latitude: 48.0\nLongitude: 2.0"],
                     [None, None, None, hier_coords], [0.2, 0.0, 0.0, 0.3]),
            # a wrong country, then no region at all: the episode ended there (format penalty)
            _rollout(["Country: Spain", ""], [None, None], [0.0, -0.1]),
        ])])
        # a held-out eval record keeps no turn rewards: right only where it equals the truth label
        store.log_images(1, [_image("eval-img", [
            _rollout(["Country: france", "Region: Bavaria", "City: Paris", "Latitude: 48.0\nLongitude: 2.0"],
                     [None, None, None, hier_coords], reward=math.nan)])], split="eval")
    with RunStore(runs / "geohash") as store:
        store.log_config("rl", {"env_type": "geohash", "geohash_chars": [2, 4, 6]})
        store.log_images(0, [_image("train-img", [_rollout(["a", "b", "c"], [(40.0, 0.0), (48.0, 2.0), (48.8, 2.3)],
                                                            [0.1, 0.2, 0.5])])])
    with RunStore(runs / "tele") as store:
        fake_run.fill(store, 1, n_images=1, G=2)  # env_type=telescoping
    with RunStore(runs / "unknown") as store:
        store.log_config("rl", {})  # a config that names no env
        store.log_images(0, fake_run.image_records(0, 10, G=2, turns=3, n_images=1))
    with RunStore(runs / "mixed") as store:  # telescoping, a quarter of each batch hierarchical
        store.log_config("rl", {**HIER, "env_type": "telescoping", "mix_env_type": "hierarchical"})
        store.log_images(0, [_image("train-img", [
            _rollout(["Latitude: 40\nLongitude: 0", "Latitude: 48\nLongitude: 2"], [(40.0, 0.0), (48.0, 2.0)]),
            _rollout(["Country: France", ""], [None, None], [0.2, -0.1]),
        ])])
    # the tiles: distances 2029 km, 6940 km and two unparsed (the user's case), and 100 / 200 / 300 km + one
    tiles = [("half-unparsed", [(66.0, 10.0), (-10.0, 50.0), None, None]),
             ("one-unparsed", [(49.76, 2.35), (50.66, 2.35), (51.56, 2.35), None])]
    with RunStore(runs / "tiles") as store:
        store.log_config("rl", {"env_type": "single"})
        store.log_images(0, [_image(name, [_rollout(["x"], [g]) for g in gs]) for name, gs in tiles])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with Server(create_app(runs)) as srv:
        page.srv, page.tiles = srv.url, tiles
        yield page
    assert not errors, errors
    page.close()


def test_hierarchical_turns_are_named_and_labels_graded(page):
    right, stopped = _turns(page, "hier")
    assert right.startswith("country: France ✓ r=0.2 → region: Normandy ✗ (Ile-de-France) r=0 → "
                            "city: Rouen ✗ (Paris) r=0 → coordinates (48, 2)"), right
    assert right.endswith(" km r=0.3")
    for wrong in ("unparsed", "coarse", "refine", "final", "turn "):
        assert wrong not in right, (wrong, right)
    assert stopped == "country: Spain ✗ (France) r=0 → region unparsed r=-0.1"
    assert page.locator(".detail .turn.right").count() == 1
    # the eval record (no rewards): a label equal to the truth is right, the others are not judged
    (evaled,) = _turns(page, "hier", split="eval")
    assert evaled.startswith("country: france ✓ → region: Bavaria → city: Paris ✓ → coordinates (48, 2)"), evaled


def test_other_envs_keep_their_names(page):
    (geohash,) = _turns(page, "geohash")
    assert [t.split(" (")[0] for t in geohash.split(" → ")] == ["2-char cell", "4-char cell", "6-char cell"]
    tele = _turns(page, "tele")[0]
    assert [t.split(" (")[0] for t in tele.split(" → ")] == ["coarse", "refine", "final"]
    unknown = _turns(page, "unknown")[0]
    assert [t.split(" (")[0] for t in unknown.split(" → ")] == ["turn 1", "turn 2", "turn 3"]
    tele2, hier2 = _turns(page, "mixed")
    assert [t.split(" (")[0] for t in tele2.split(" → ")] == ["coarse", "refine"]
    assert hier2 == "country: France ✓ r=0.2 → region unparsed r=-0.1"


def test_tile_median_counts_unparsed_as_the_metrics_do(page):
    from geospot.geo.metrics import compute_metrics

    page.goto(page.srv + "/#/run/tiles")
    page.wait_for_selector(".card")
    for name, guesses in page.tiles:
        lat = [math.nan if g is None else g[0] for g in guesses]
        lon = [math.nan if g is None else g[1] for g in guesses]
        want = compute_metrics(lat, lon, [PARIS[0]] * 4, [PARIS[1]] * 4, geocoder=None)["median_km"]
        card = page.locator(f".card[data-image='{name}']")
        shown = card.locator(".median").inner_text()
        if math.isinf(want):
            assert shown == "median ∞ km"
            assert card.locator(".unparsed").inner_text() == "2 of 4 unparsed"
        else:
            assert shown == f"median {want:.0f} km", (shown, want)
            assert card.locator(".unparsed").inner_text() == "1 of 4 unparsed"
        assert "unparsed answer counts as a miss at infinite distance" in card.locator(".median").get_attribute("title")


def test_run_list_names_each_runs_env_and_model(tmp_path, browser):
    runs = tmp_path / "runs"
    configs = {"sft": ("sft", {"model_name": "tiny:qwen2_vl", "prompt_style": "all"}),
               "hier": ("rl", {"env_type": "hierarchical", "load_checkpoint_path": "runs/sft"}),
               "geo": ("rl", {"env_type": "geohash", "model_name": "tiny:qwen3_vl"}),
               "reason": ("rl", {"env_type": "single", "reasoning": True, "load_checkpoint_path": "elsewhere/sft9"}),
               "mixed": ("rl", {"env_type": "telescoping", "mix_env_type": "single", "mix_share": 0.75})}
    for name, (kind, config) in configs.items():
        with RunStore(runs / name) as store:
            store.log_config(kind, config)
            store.log_step(0, {"eval/geoscore": 100.0})
    with Server(create_app(runs)) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(srv.url + "/")
        page.wait_for_selector("#runs tr[data-run='sft']")
        headers = page.locator("#runs th").all_inner_texts()
        assert headers.index("env") < headers.index("held-out GeoScore") and "model" in headers

        def cell(run, key):
            return page.locator(f"tr[data-run='{run}'] td[data-key='{key}']").inner_text()

        assert [cell(r, "env") for r in configs] == [
            "single (SFT on all)", "hierarchical", "geohash", "single + reasoning", "telescoping 25% + single 75%"]
        assert [cell(r, "model") for r in configs] == [
            "tiny:qwen2_vl", "tiny:qwen2_vl ← sft", "tiny:qwen3_vl", "from sft9", "–"]
        # the run page's head says the env too
        page.goto(srv.url + "/#/run/hier")
        assert page.locator("#run-env").inner_text() == "hierarchical"
        page.close()
