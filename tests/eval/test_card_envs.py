"""An export's card asks the model as its env did: a hierarchical run's card asks for the labels
and tells each turn the answers so far, a geohash run's card uses the geohash prompts (with
coordinates or with cells), a reasoning run's card asks for the reasoning and gives it its token
budget. Each card's code is executed, as written, in a fresh interpreter."""

import io
from contextlib import redirect_stdout

import pytest

pytest.importorskip("torch")

from card_runs import card_answers, predicted_answers, run_card  # noqa: E402

from geospot.envs.geohash import GeohashSpec  # noqa: E402
from geospot.eval.card import card_code, card_turns  # noqa: E402
from geospot.eval.export import export_main  # noqa: E402
from geospot.prompts import REASONING_INSTRUCTION, SINGLE_TURN_PROMPT, hierarchical_prompt  # noqa: E402
from geospot.runs.model_spec import model_spec  # noqa: E402

STYLES = {
    "hierarchical": {"prompt_style": "hierarchical"},
    "geohash": {"prompt_style": "geohash"},
    "geohash-cells": {"prompt_style": "geohash", "geohash_answer": "geohash"},
    "reasoning": {"prompt_style": "single", "reasoning": True, "reasoning_max_tokens": 40},
    "zoom": {"prompt_style": "telescoping", "zoom": 2},  # a 28 px thumbnail first, then the 56 px photo
}


@pytest.fixture(scope="module", params=list(STYLES))
def exported(request, tmp_path_factory):
    from geospot.train.sft import SFTConfig, train

    root = tmp_path_factory.mktemp(request.param)
    train(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=4, data="synthetic:n=32,size=56,seed=0", eval_n=2,
                    batch_size=2, learning_rate=1e-3, max_steps=1, eval_every=0, eval_at_start=False, save_every=0,
                    eval_max_tokens=8, log_path=str(root / "run"), behavior_if_log_dir_exists="raise",
                    **STYLES[request.param]), stderr=io.StringIO())
    with redirect_stdout(io.StringIO()):
        assert export_main([f"checkpoint={root / 'run'}", f"out={root / 'export'}"]) == 0
    return request.param, root


def test_the_card_asks_as_the_env_does(exported):
    style, root = exported
    how = card_turns(model_spec(root / "run"))
    card = (root / "export" / "README.md").read_text()
    if style == "hierarchical":
        assert how.protocol == "labels" and how.fields == ("country", "region", "city", "coords")
        assert how.prompts[0] == hierarchical_prompt("country")
        assert how.prompts[2].format(known="Ile-de-France, France") == hierarchical_prompt(
            "city", ("France", "Ile-de-France"))  # told coarse first, shown finest first
        assert "| prompt style | hierarchical (4 turns) |" in card
        assert "with its place labels turn by turn (`Country: <name>`, `Region: <name>`, `City: <name>`)" in card
    elif style.startswith("geohash"):
        spec = GeohashSpec(answer="geohash" if style == "geohash-cells" else "coordinates")
        assert how.protocol == ("cells" if style == "geohash-cells" else "coordinates")
        assert [p.format(prev="X") for p in how.prompts] == [spec.prompt(t, "X") for t in range(3)]
        assert "| prompt style | geohash (3 turns) |" in card
        assert ("as a geohash cell per turn" in card) == (style == "geohash-cells")
        assert ("refined over 3 turns" in card) == (style == "geohash")
    elif style == "zoom":
        assert how.zoom == 2 and "This run asks with zoom=2" in card and "views = [thumbnail, image]" in card
    else:
        assert how.prompts == (f"{SINGLE_TURN_PROMPT}\n{REASONING_INSTRUCTION}",) and how.max_tokens == 40
        assert "| max tokens per answer | 40 |" in card and "max_new_tokens = 40" in card
        assert "Later turns" not in card  # one turn: nothing is shown to a later one
        assert "each after reasoning inside `<think></think>`" in card
    assert f"turns = {list(how.prompts)!r}" in card  # the code asks with what the table shows


def test_the_cards_code_runs_as_written(exported):
    style, root = exported
    stdout = run_card(card_code((root / "export" / "README.md").read_text()), root)
    first = "turn 1 (country): " if style == "hierarchical" else "turn 1: "
    assert stdout.startswith(first), stdout
    if style == "reasoning":  # its answers are the text after </think>, predict's the whole text
        return
    # the card's answers are `geospot predict`'s, turn by turn (the same photos, prompts and tokens)
    card_turns = card_answers(stdout)
    asked = predicted_answers(root / "export", root / "export" / "example.jpg")
    # up to the first answer holding an invalid byte (U+FFFD): the card's chat is text, so it reads that
    # answer back lossily into the next turn's context, where geospot keeps the sampled tokens
    k = next((i + 1 for i, t in enumerate(card_turns) if "\ufffd" in t), len(card_turns))
    assert card_turns and card_turns[:k] == asked[:k]


def test_an_env_the_card_does_not_know_is_refused_not_asked_as_telescoping():
    """A new env missing from card_turns wrote a card whose code asked the telescoping prompts."""
    import dataclasses

    from geospot.runs.model_spec import ModelSpec

    spec = ModelSpec(kind="rl", base_model="tiny", engine="local", lora_rank=0, trained_styles=("maze",),
                     env_type="maze", prompt="p", turn_prompts=("a", "b {prev}"), answer_decimals=1,
                     max_pixels=3136, image_side=None, max_tokens=24, data=None)
    with pytest.raises(ValueError, match="env_type='maze'"):
        card_turns(spec)
    assert card_turns(dataclasses.replace(spec, env_type="telescoping")).prompts == ("a", "b {prev}")
    zoomed = card_turns(dataclasses.replace(spec, env_type="telescoping", config={"zoom": 2}, reasoning=True))
    assert zoomed.zoom == 2 and zoomed.reasoning and zoomed.max_tokens == spec.reasoning_max_tokens
    assert card_turns(dataclasses.replace(spec, env_type="single", config={"zoom": 2})).zoom == 1  # telescoping's key


def test_the_card_reads_answers_as_geospot_does():
    """The card's readers (plain Python in its code) take what geospot's parsers take on the answers a
    model writes, garbage included: the card read 'Longitude: 4.\\nLongitude: 4.' as (4, 4) and any
    first word as a geohash cell, and played turns predict does not."""
    import re

    from geospot.eval.card import _READERS
    from geospot.geo import parse_coordinates
    from geospot.geo.parse_labels import _STRIP, parse_geohash, parse_label

    ns = {"re": re, "STRIP": _STRIP}
    for lines in _READERS.values():
        exec("\n".join(lines), ns)
    for answer in ["Latitude: 48.85\nLongitude: 2.35", "Latitude: -33.9\nLongitude: -151.2", "48.85, 2.35",
                   "I think 48.8 and 2.3", "Longitude: 4.\nLongitude: 4.", "Latitude: 4", "Latitude: 10 Longitude: 200",
                   "lat 95 lon 2", "somewhere warm", ""]:
        ours = parse_coordinates(answer)
        assert ns["read_coordinates"](answer) == (None if ours is None else (ours.lat, ours.lon)), answer
    for answer in ["Geohash: u09t", "u09tv", "geohash = U09T", "Latitude: 48.8", "la", "u09t and more", ""]:
        assert ns["read_cell"](answer) == parse_geohash(answer), answer
    for answer in ["Country: France", "France", "Region: Île-de-France\n", "**City:** Lyon", ""]:
        field = "city" if "City" in answer else "region" if "Region" in answer else "country"
        assert ns["read_label"](answer, field) == (parse_label(answer, field) or None), answer
