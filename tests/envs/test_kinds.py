"""The env kinds (envs/kinds.py): what each env's turns are called and ask, worked by hand, and the
few lists outside envs/ that cannot import the kinds (a lower layer, or a config checked before
any env exists) kept equal to them."""

from types import SimpleNamespace

import pytest

from geospot.envs.kinds import ENV_TYPES, KINDS, MIXES, PROMPT_STYLES, Turn, env_kind, eval_env


def test_the_env_types_in_their_order():
    assert ENV_TYPES[:4] == ("single", "telescoping", "hierarchical", "geohash")  # a new env goes after them
    with pytest.raises(ValueError, match="prompt_style='maze': use one of single, telescoping"):
        env_kind("maze", "prompt_style")


def test_each_kinds_turns():
    assert KINDS["single"].turns(None) == (Turn("", "answer"),)
    assert [t.name for t in KINDS["telescoping"].turns(None)] == ["coarse", "refine", "final"]
    four = SimpleNamespace(turn_prompts=("a", "b {prev}", "c {prev}", "d {prev}"))
    assert [t.name for t in KINDS["telescoping"].turns(four)] == ["coarse", "refine 1", "refine 2", "final"]
    hier = SimpleNamespace(hier_turns=("country", "city", "coords"), hier_weights=(0.25, 0.25, 0.5),
                           hier_partial_credit=0.5)
    assert KINDS["hierarchical"].turns(hier) == (Turn("country", "country", weight=0.25, partial=0.5),
                                                 Turn("city", "city", weight=0.25, partial=0.5),
                                                 Turn("", "coordinates"))
    cells = KINDS["geohash"].turns(SimpleNamespace(geohash_chars=(3, 5), geohash_weights=(0.5, 0.5)))
    assert [(t.name, t.title) for t in cells] == [
        ("3-char cell", "graded on the first 3 geohash characters (cells of ~156 km)"),
        ("5-char cell", "graded on the first 5 geohash characters (cells of ~5 km)")]


def test_what_follows_from_the_turns():
    hier = KINDS["hierarchical"]
    assert hier.coordinate_turns(None) == (False, False, False, True) and hier.needs_labels(None)
    assert KINDS["geohash"].coordinate_turns(None) == (True, True, True) and not KINDS["geohash"].needs_labels(None)
    assert {n: KINDS[n].default_reward for n in ENV_TYPES[:4]} == {
        "single": "kernel", "telescoping": "geoscore", "hierarchical": "geoscore", "geohash": "geoscore"}
    assert [KINDS[n].own_reward for n in ENV_TYPES[:4]] == [False, False, False, True]


def test_prompt_texts_and_reasoning():
    single, tele = KINDS["single"], KINDS["telescoping"]
    assert single.prompt_texts(SimpleNamespace(prompt="where?")) == ("where?",)
    assert KINDS["hierarchical"].prompt_texts(None) == () and KINDS["hierarchical"].prompt_key is None
    card = tele.card(SimpleNamespace(turn_prompts=("a", "b {prev}"), reasoning=True))
    assert card.protocol == "coordinates" and len(card.prompts) == 2 and "<think>" in card.prompts[0]
    cells = KINDS["geohash"].card(SimpleNamespace(geohash_answer="geohash"))
    assert cells.protocol == "cells" and cells.chars == (2, 4, 6)


def test_the_lists_that_cannot_import_the_kinds_agree_with_them():
    from geospot.envs.config import REASONING_STYLES, TELESCOPING_STYLES
    from geospot.runs.model_spec import _styles

    # runs/ sits below envs/: an SFT run of prompt_style=all trained every env, in the kinds' order
    assert _styles("sft", {"prompt_style": "all"}) == ENV_TYPES == MIXES["all"]
    assert set(PROMPT_STYLES) == {*ENV_TYPES, "both", "all"}
    # envs/config.py is checked before any kind exists: reasoning goes with the envs that ask prompt texts,
    # zoom with telescoping's turns
    assert REASONING_STYLES[:2] == tuple(n for n, k in KINDS.items() if k.prompt_key) == MIXES["both"]
    assert {e for e in ENV_TYPES if e in TELESCOPING_STYLES} == {"telescoping"}


def test_the_prompt_styles_and_the_env_each_is_evaluated_with():
    assert PROMPT_STYLES == ("single", "telescoping", "hierarchical", "geohash", "both", "all")
    assert MIXES == {"both": ("single", "telescoping"), "all": ENV_TYPES}
    # a run of one env is asked as it trained; a mix of envs, the single-turn question every mix holds
    assert [eval_env(s) for s in PROMPT_STYLES] == ["single", "telescoping", "hierarchical", "geohash",
                                                   "single", "single"]
