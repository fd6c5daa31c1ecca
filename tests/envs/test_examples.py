"""SFT examples for the new envs: the env's own prompts with the true answers, so a warm start
learns the format the env grades (checked by replaying the targets through the env)."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from geospot.data.types import Sample
from geospot.envs.examples import geohash_messages, hierarchical_messages
from geospot.envs.geohash import GeohashGroupBuilder, GeohashSpec
from geospot.envs.hierarchical import HierarchicalGroupBuilder, HierarchySpec
from geospot.envs.kinds import ENV_TYPES, KINDS
from geospot.envs.rewards import GeoScoreReward
from geospot.geo.geohash import encode
from geospot.rl.testing import EOT, CharRenderer, text_of

R = CharRenderer()
PARIS = Sample(id="p", image=Image.new("RGB", (8, 8)), lat=48.8566, lon=2.3522,
               labels={"country": "FR", "region": "Ile-de-France, FR", "city": "Paris"})


def texts(messages, role):
    return [m["content"][-1]["text"] for m in messages if m["role"] == role]


def replay(env, messages):
    """Step the env with the example's assistant targets; its prompts must be the example's."""
    users, targets = texts(messages, "user"), texts(messages, "assistant")
    obs = env.initial_observation()
    results = []
    for user, target in zip(users, targets):
        assert text_of(obs).split("<u>")[-1].startswith("#" * (obs is env._initial) + user)
        res = env.step([ord(c) for c in target] + [EOT])
        results.append(res)
        obs = res.next_observation
    return results


def test_hierarchical_example_targets_earn_every_weight():
    messages = hierarchical_messages(PARIS)
    assert texts(messages, "assistant")[:3] == ["Country: France", "Region: Ile-de-France", "City: Paris"]
    assert "This photo was taken in Paris, Ile-de-France, France." in texts(messages, "user")[3]
    assert messages[0]["content"][0]["type"] == "image" and len(messages[2]["content"]) == 1  # one image
    env = HierarchicalGroupBuilder(PARIS, R, GeoScoreReward(), HierarchySpec(teacher_forcing=1.0)).make_envs(1)[0]
    res = replay(env, messages)
    assert sum(r.reward for r in res) == pytest.approx(0.6 + 0.4 * GeoScoreReward()(0.29), abs=1e-3)  # 2 decimals


def test_hierarchical_example_needs_every_label():
    bare = Sample(id="b", image=PARIS.image, lat=0.0, lon=0.0, labels={"country": "FR"})
    assert hierarchical_messages(bare) is None  # no region, no geocoder: no target
    spec = HierarchySpec(("country", "coords"), (0.5, 0.5))
    assert len(hierarchical_messages(bare, spec)) == 4


def test_geohash_example_targets():
    messages = geohash_messages(PARIS)
    assert texts(messages, "assistant") == ["Latitude: 49\nLongitude: 2", "Latitude: 48.9\nLongitude: 2.4",
                                            "Latitude: 48.86\nLongitude: 2.35"]
    cells = geohash_messages(PARIS, GeohashSpec(answer="geohash"), shown=lambda t: (10.0, 20.0))
    assert texts(cells, "assistant") == [f"Geohash: {encode(PARIS.lat, PARIS.lon, n)}" for n in (2, 4, 6)]
    assert f"Your previous answer was {encode(10.0, 20.0, 2)}." in texts(cells, "user")[1]
    env = GeohashGroupBuilder(PARIS, R, GeohashSpec(answer="geohash", teacher_forcing=1.0)).make_envs(1)[0]
    res = replay(env, geohash_messages(PARIS, GeohashSpec(answer="geohash")))
    assert [r.metrics["geohash_shared"] for r in res] == [2, 4, 6]


def test_sft_styles_for_the_new_envs():
    from geospot.train.sft import SFTConfig, build_messages

    cfg = SFTConfig(prompt_style="hierarchical", data="synthetic:n=8")
    assert texts(build_messages(PARIS, "hierarchical", cfg), "assistant")[0] == "Country: France"
    far = SFTConfig(prompt_style="geohash", telescoping_noise_km=(3000.0, 3000.0))
    shown = texts(build_messages(PARIS, "geohash", far, np.random.default_rng(0)), "user")[1]
    assert "(48.9, 2.4)" not in shown  # the previous guess is moved away from the truth
    unknown = Sample(id="u", image=PARIS.image, lat=float("nan"), lon=float("nan"))
    single = build_messages(unknown, "hierarchical", cfg)  # no labels, nowhere to geocode: single-turn
    assert len(single) == 2


def test_prompt_style_all_draws_every_style():
    from geospot.train.sft import example_styles

    styles = example_styles("all", 400, seed=0, step=3)
    assert styles == example_styles("all", 400, seed=0, step=3)  # a function of (seed, step): resume-exact
    counts = {s: styles.count(s) for s in ENV_TYPES}
    expected = 400 / len(ENV_TYPES)  # each env equally likely
    assert sum(counts.values()) == 400 and all(0.6 * expected < c < 1.4 * expected for c in counts.values()), counts


@pytest.mark.parametrize("name", ENV_TYPES)
def test_every_env_kinds_example_is_asked_by_its_env(name):
    """The contract each env kind keeps (envs/kinds.py): its SFT example, replayed through the env it
    builds, is asked that env's own prompts turn by turn, and its turns, its card and its example
    agree on how many turns there are. A new kind whose parts disagree fails here."""
    kind = KINDS[name]
    # the truth shown to later turns (no noise, teacher forcing): what a perfect policy would be shown
    cfg = SimpleNamespace(answer_decimals=2, telescoping_noise_km=(0.0, 0.0), teacher_forcing=1.0)
    messages = kind.examples(PARIS, cfg, None)
    env = kind.build(PARIS, R, GeoScoreReward(), cfg, None, 0).make_envs(1)[0]
    results = replay(env, messages)
    assert len(results) == kind.num_turns(cfg) == len(kind.card(cfg).prompts) == len(texts(messages, "user"))
    assert results[-1].done and all(r.metrics.get("parsed", 1.0) == 1.0 for r in results)
