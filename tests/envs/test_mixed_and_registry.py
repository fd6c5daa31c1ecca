import math

import pytest
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs.config import EnvOptions
from geospot.envs.geohash import GeohashGroupBuilder
from geospot.envs.hierarchical import HierarchicalGroupBuilder
from geospot.envs.kinds import KINDS
from geospot.envs.registry import env_metrics, make_group_builders, make_reward, reward_name, split_batch
from geospot.envs.rewards import GeoScoreReward, KernelReward, MixedReward
from geospot.envs.single_turn import SingleTurnEnv
from geospot.envs.telescoping import TelescopingEnv
from geospot.geo import haversine_km
from geospot.geo.geohash import decode
from geospot.prompts import format_answer
from geospot.rl.rollouts import do_group_rollouts
from geospot.rl.testing import EOT, CharRenderer, ScriptedEngine

R = CharRenderer()
TRUTH = decode("ezs42")  # (42.60498046875, -5.60302734375)
SAMPLE = Sample(id="s", image=Image.new("RGB", (8, 8)), lat=TRUTH.lat, lon=TRUTH.lon,
                labels={"country": "ES", "region": "Castille and León", "city": "León"})


def toks(text):
    return [ord(c) for c in text] + [EOT]


def test_mixed_reward_hand_worked():
    mixed = MixedReward(KernelReward(100.0))  # 0.7 exp(-d/100) + 0.3 shared/5
    assert mixed(0.0, (TRUTH.lat, TRUTH.lon), (TRUTH.lat, TRUTH.lon)) == pytest.approx(1.0)
    near = decode("ezs43")  # the neighbouring 5-character cell: shares 4 of 5
    d = haversine_km(near.lat, near.lon, TRUTH.lat, TRUTH.lon)
    got = mixed(d, (near.lat, near.lon), (TRUTH.lat, TRUTH.lon))
    assert got == pytest.approx(0.7 * math.exp(-d / 100.0) + 0.3 * 4 / 5)
    # weights are normalised by their sum, as in the original
    assert MixedReward(GeoScoreReward(), 1.4, 0.6)(d, (near.lat, near.lon), (TRUTH.lat, TRUTH.lon)) == \
        pytest.approx(0.7 * GeoScoreReward()(d) + 0.3 * 4 / 5)
    with pytest.raises(ValueError, match="guess= and truth="):
        mixed(10.0)
    with pytest.raises(ValueError, match="weights"):
        MixedReward(KernelReward(1.0), 0.0, 0.0)


def test_mixed_reward_in_single_turn_and_telescoping():
    near = decode("ezs43")
    d = haversine_km(near.lat, near.lon, TRUTH.lat, TRUTH.lon)
    want = 0.7 * math.exp(-d / 50.0) + 0.3 * 4 / 5
    env = SingleTurnEnv(SAMPLE, R, make_reward("mixed", 50.0))
    env.initial_observation()
    assert env.step(toks(format_answer(near.lat, near.lon, 6))).reward == pytest.approx(want)
    tel = TelescopingEnv(SAMPLE, R, make_reward("mixed", 50.0), prompts=("a", "b {prev}"))
    tel.initial_observation()
    first = tel.step(toks(format_answer(near.lat, near.lon, 6)))
    second = tel.step(toks(format_answer(TRUTH.lat, TRUTH.lon, 6)))
    assert first.reward == pytest.approx(want) and first.reward + second.reward == pytest.approx(1.0)


def test_registry_names():
    assert reward_name("single", "auto") == "kernel" and reward_name("hierarchical", "auto") == "geoscore"
    assert isinstance(make_reward("geoscore", 1.0), GeoScoreReward)
    mixed = make_reward("mixed", 80.0, EnvOptions(mixed_weights=(0.5, 0.5), mixed_precision=4))
    assert mixed == MixedReward(KernelReward(80.0), 0.5, 0.5, 4)
    with pytest.raises(ValueError, match="reward='nope'"):
        make_reward("nope", 1.0)
    opts = EnvOptions(hier_turns=("country", "coords"), hier_weights=(0.5, 0.5), geohash_chars=(3, 5),
                      geohash_weights=(0.5, 0.5), teacher_forcing=1.0)
    (h,) = make_group_builders("hierarchical", [SAMPLE], R, GeoScoreReward(), opts, seed=3)
    assert isinstance(h, HierarchicalGroupBuilder) and h.spec.turns == ("country", "coords") and h.seed == 3
    assert h.spec.teacher_forcing == 1.0
    (g,) = make_group_builders("geohash", [SAMPLE], R, GeoScoreReward(), opts)
    assert isinstance(g, GeohashGroupBuilder) and g.spec.chars == (3, 5)
    turns = [KINDS[e].num_turns(c) for e, c in (("hierarchical", opts), ("geohash", None), ("single", None))]
    assert turns == [2, 3, 1]
    with pytest.raises(ValueError, match="env_type='maze'"):
        make_group_builders("maze", [SAMPLE], R, GeoScoreReward())


def test_env_options_validation_names_the_key():
    from geospot.config import ConfigError

    for bad, key in [({"hier_turns": ("region", "country", "coords"), "hier_weights": (1, 1, 1)}, "hier_turns"),
                     ({"hier_turns": ("country",), "hier_weights": (1,)}, "hier_turns"),
                     ({"hier_weights": (1.0,)}, "hier_weights"),
                     ({"teacher_forcing": 1.5}, "teacher_forcing"),
                     ({"geohash_chars": (2, 13, 4)}, "geohash_chars"),
                     ({"mixed_weights": (0.0, 0.0)}, "mixed_weights")]:
        with pytest.raises(ConfigError, match=f"^{key}"):
            EnvOptions(**bad).validate_env()
    EnvOptions().validate_env()


def test_rollouts_and_label_accuracy_metrics():
    """Two rollouts through the real rollout loop: one names Spain, one France."""
    def policy(prompt, i):
        if prompt.endswith("Country: <name>|<a>"):
            return "Country: Spain" if i == 0 else "Country: France"
        if "Region: <name>|<a>" in prompt[-40:]:
            return "Region: Castilla y Leon"  # not the label's spelling: wrong
        if "City: <name>|<a>" in prompt[-40:]:
            return "City: Leon"  # accents dropped: right
        return format_answer(TRUTH.lat, TRUTH.lon, 4)

    eng = ScriptedEngine(policy)
    builders = make_group_builders("hierarchical", [SAMPLE], eng.renderer, GeoScoreReward())
    traj_BG = do_group_rollouts(eng, builders, 2, SampleParams())
    totals = sorted(t.total_reward for t in traj_BG[0])
    assert totals[1] == pytest.approx(0.2 + 0.0 + 0.2 + 0.4 * GeoScoreReward()(0.0), abs=1e-3)
    assert totals[0] == pytest.approx(0.0 + 0.0 + 0.2 + 0.4, abs=1e-3)
    m = env_metrics(traj_BG)
    assert m == {"label_city_acc": 1.0, "label_country_acc": 0.5, "label_region_acc": 0.0, "teacher_forced": 0.0}
    assert env_metrics([[t] for t in traj_BG[0]]) == m  # the same over B groups of one


def test_split_batch_gives_the_first_share_of_images_to_the_mixed_env():
    imgs = list("abcdefgh")
    assert split_batch(imgs, "single") == [("single", imgs)]
    assert split_batch(imgs, "single", "telescoping", 0.25) == [("telescoping", ["a", "b"]), ("single", list("cdefgh"))]
    # round(0.3 * 8) = 2; a share that rounds to no image leaves one part; order is the batch's
    assert [len(p) for _, p in split_batch(imgs, "single", "telescoping", 0.3)] == [2, 6]
    assert split_batch(imgs, "single", "telescoping", 0.05) == [("single", imgs)]
    assert split_batch(imgs[:1], "single", "telescoping", 0.9) == [("telescoping", ["a"])]


def test_a_reward_of_the_users_own_module(tmp_path, monkeypatch):
    """reward=module:function: the function graded as given, a non-finite return said with its inputs, and
    each way of naming no function said before a run starts (reward_problem)."""
    from geospot.envs.registry import reward_problem

    (tmp_path / "user_rewards.py").write_text(
        "import math\n"
        "def north(distance_km, guess, truth):\n"
        "    return 1.0 if (guess[0] > 0) == (truth[0] > 0) else 0.0\n"
        "def half(distance_km, guess, truth):\n"
        "    return 0.5 * math.exp(-distance_km / 100)\n"
        "def broken(distance_km, guess, truth):\n"
        "    return float('nan')\n"
        "def text(distance_km, guess, truth):\n"
        "    return '1.0'\n"
        "def raises(distance_km, guess, truth):\n"
        "    return {}[guess]\n"
        "def one_arg(distance_km):\n"
        "    return 1.0\n"
        "value = 3\n")
    (tmp_path / "fails_on_import.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    north = make_reward("user_rewards:north", 2000.0)
    assert north(5000.0, (10.0, 0.0), (45.0, 3.0)) == 1.0 and north(10.0, (-1.0, 0.0), (1.0, 0.0)) == 0.0
    assert make_reward("user_rewards:half", 1.0)(100.0, (0, 0), (0, 0)) == pytest.approx(0.5 / math.e)
    assert reward_name("single", "user_rewards:north") == "user_rewards:north"
    with pytest.raises(ValueError, match=r"reward=user_rewards:broken returned nan for distance_km=12.0"):
        make_reward("user_rewards:broken", 1.0)(12.0, (0, 0), (0, 0))
    with pytest.raises(ValueError, match=r"reward=user_rewards:text returned '1.0' for .*; a reward is a finite"):
        make_reward("user_rewards:text", 1.0)(12.0, (0, 0), (0, 0))  # (a string is no number, even one that reads)
    with pytest.raises(ValueError, match=r"^reward=user_rewards:raises raised KeyError: \(1, 2\) for distance_km=3.0"):
        make_reward("user_rewards:raises", 1.0)(3.0, (1, 2), (0, 0))
    assert reward_problem("kernel") is None and reward_problem("auto") is None
    for name, said in [("kernal", "is none of auto, kernel, geoscore, mixed, nor your own function"),
                       ("no_such_module:f", "cannot be imported: no module 'no_such_module'"),
                       ("user_rewards:missing", "names nothing: module 'user_rewards' has no 'missing'"),
                       ("user_rewards:one_arg", "is not a function of (distance_km, guess, truth)"),
                       ("user_rewards:value", "is not a function of (distance_km, guess, truth)"),
                       ("fails_on_import:f", "cannot be imported: fails_on_import raised RuntimeError: no GPU here")]:
        assert said in reward_problem(name), name
        with pytest.raises(ValueError, match=rf"^reward='{name}' "):
            make_reward(name, 1.0)


def test_a_reward_module_in_the_current_folder_is_found_by_the_geospot_command(tmp_path):
    """The installed `geospot` script's sys.path starts at its own bin/ folder, not where it runs (only
    `python -m` adds that): `reward=my_rewards:f` beside the user was 'cannot be imported'."""
    import subprocess
    import sys

    (tmp_path / "here_rewards.py").write_text("def f(distance_km, guess, truth):\n    return 0.5\n")
    script = tmp_path / "bin" / "tool.py"  # a script elsewhere, as the console script is
    script.parent.mkdir()
    script.write_text("from geospot.envs.registry import make_reward, reward_problem\n"
                      "r = make_reward('here_rewards:f', 1.0)\n"
                      "print(reward_problem('here_rewards:f'), r(1.0, (0, 0), (0, 0)))\n")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["None", "0.5"], out.stderr[-2000:]
