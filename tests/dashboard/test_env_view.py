"""What the page is told about a run's env (dashboard/env_view.py): the turn layouts and the reward,
from the env kinds, so the page's JavaScript names no env; a config it cannot read leaves them out."""

from geospot.dashboard.env_view import env_view, played_envs


def names(view):
    return [[t["name"] for t in layout] for layout in view["layouts"]]


def test_an_rl_runs_envs_and_rewards():
    """A mixed run's two envs are paid differently: telescoping the fixed GeoScore (reward=auto), the
    single-turn share the τ-kernel whose τ the run logs; the page must not draw one as the other."""
    view = env_view({"env_type": "telescoping", "mix_env_type": "single", "mix_share": 0.25, "reward": "auto"})
    assert names(view) == [["coarse", "refine", "final"], ["answer"]]
    reward, mix = view["reward"], view["mix"]
    assert (reward["env"], reward["name"], reward["tau"], reward["kernel"]) == ("telescoping", "geoscore", False, True)
    assert "S(d_t) − S(d_{t−1})" in reward["text"]
    assert mix == {"env": "single", "name": "kernel", "tau": True, "kernel": True, "text": "", "share": 0.25}
    single = env_view({"env_type": "single", "reward": "mixed"})
    # the kernel the page draws is 0.7 of what a turn earns: the text says what the rest is (it said nothing)
    assert single["reward"] == {"env": "single", "name": "mixed", "tau": True, "kernel": True, "text": (
        "With reward=mixed that kernel is 0.7 of what a turn earns; the other 0.3 is the share of its first 5 "
        "geohash characters that match the truth's (mixed_weights, mixed_precision).")}
    even = env_view({"env_type": "single", "reward": "mixed", "mixed_weights": [1, 1]})["reward"]["text"]
    assert even.startswith("With reward=mixed that kernel is 0.5 of what a turn earns; the other 0.5")  # a mean
    assert single["mix"] is None
    own = env_view({"env_type": "geohash", "reward": "auto"})["reward"]
    assert (own["name"], own["tau"], own["kernel"]) == ("own", False, False)
    # reward=module:function: the user's function, no τ and no kernel to draw (the page said "distance kernel")
    mine = env_view({"env_type": "telescoping", "reward": "my_rewards:hemisphere"})["reward"]
    assert (mine["name"], mine["tau"], mine["kernel"]) == ("my_rewards:hemisphere", False, False)
    assert mine["text"].startswith("Each parsed guess is graded by your function my_rewards:hemisphere(distance_km")


def test_label_turns_carry_their_field_and_pay():
    view = env_view({"env_type": "hierarchical", "hier_turns": ["country", "coords"], "hier_weights": [0.3, 0.7],
                     "hier_partial_credit": 0.25})
    (layout,) = view["layouts"]
    assert layout[0] == {"field": "country", "name": "country", "title": "", "weight": 0.3, "partial": 0.25}
    assert layout[1]["field"] == "" and layout[1]["name"] == "coordinates"
    assert view["reward"]["kernel"] is False
    assert view["reward"]["text"] == ("A right label (country) earns its weight (hier_weights) (a wrong one after a "
                                      "wrong one 0.25 of it); the final coordinates earn their weight × GeoScore / "
                                      "5000.")
    tau = env_view({"env_type": "hierarchical", "reward": "kernel"})["reward"]
    assert tau["tau"] and tau["text"].startswith("A right label (country → region → city) earns its weight")
    assert tau["text"].endswith("their weight × exp(−d/τ).")
    coords = env_view({"env_type": "hierarchical", "hier_turns": ["coords"], "hier_weights": [1.0]})["reward"]
    assert coords["text"] == "One turn: the final coordinates earn their weight × GeoScore / 5000 (hier_weights)."


def test_an_sft_run_asks_its_style_and_a_mix_asks_single():
    assert played_envs({"prompt_style": "all"}) == ["single"]
    assert played_envs({"prompt_style": "geohash"}) == ["geohash"]
    assert names(env_view({"prompt_style": "geohash", "geohash_chars": [2, 4]})) == [["2-char cell", "4-char cell"]]
    assert env_view({"prompt_style": "both"})["reward"] is None  # SFT: no reward


def test_a_config_it_cannot_read_leaves_the_layout_out():
    assert env_view({"env_type": "maze"}) == {"layouts": [], "reward": None, "mix": None}
    assert env_view({"env_type": "hierarchical", "hier_turns": 7})["layouts"] == []
    assert env_view({}) == {"layouts": [], "reward": None, "mix": None}
