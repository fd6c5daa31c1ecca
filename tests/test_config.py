from dataclasses import dataclass
from typing import Literal

import pytest

from geospot.config import ConfigError, help_text, markdown_table, option, parse_overrides


@dataclass(frozen=True)
class Demo:
    lr: float = option(1e-3, "learning rate")
    steps: int = option(10, "number of steps")
    name: str = option("x", "a name")
    flag: bool = option(False, "a flag")
    mode: Literal["a", "b"] = option("a", "a choice")
    path: str | None = option(None, "optional path")
    sizes: tuple[int, ...] = option((1, 2), "a list")

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be > 0")


def test_parse_types():
    cfg = parse_overrides(Demo, ["lr=2e-3", "steps=5", "flag=true", "mode=b", "path=none", "sizes=3,4,5"])
    assert cfg == Demo(lr=2e-3, steps=5, flag=True, mode="b", path=None, sizes=(3, 4, 5))


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'step'.*did you mean 'steps'"):
        parse_overrides(Demo, ["step=3"])
    with pytest.raises(ConfigError, match=r"^argument '--steps' is not key=value: write steps=<value> \(try"):
        parse_overrides(Demo, ["--steps", "3"])  # argparse's spelling, as the other commands take it
    with pytest.raises(ConfigError, match=r"unknown config key 'STEPS' for Demo: keys are lower case \(steps=3\)"):
        parse_overrides(Demo, ["STEPS=3"])  # (difflib found nothing: no hint)


def test_a_key_given_twice_with_two_values_is_refused():
    with pytest.raises(ConfigError, match=r"^steps is given twice \(1, then 2\); keep the one you mean$"):
        parse_overrides(Demo, ["steps=1", "lr=1e-3", "--steps=2"])  # (the last won silently)
    assert parse_overrides(Demo, ["lr=0.5", "lr=5e-1"]).lr == 0.5  # the same value twice says nothing new


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"steps='three' is not a valid int"):
        parse_overrides(Demo, ["steps=three"])
    with pytest.raises(ConfigError, match=r"^flag='y' is not a valid bool \(true: true, yes, on; false: false, no, "
                                          r"off\)$"):
        parse_overrides(Demo, ["flag=y"])
    with pytest.raises(ConfigError, match=r"mode='c' is not one of a, b"):
        parse_overrides(Demo, ["mode=c"])
    with pytest.raises(ConfigError, match=r"lr=-1.0 must be > 0"):
        parse_overrides(Demo, ["lr=-1"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(Demo, ["steps"])


def test_help_lists_every_key_with_default_and_meaning():
    text = help_text(Demo)
    for key, meaning in [("lr=0.001", "learning rate"), ("steps=10", "number of steps"), ("mode=a", "a choice")]:
        assert key in text and meaning in text
    assert markdown_table(Demo).count("\n") == 2 + 7 - 1


@pytest.mark.parametrize("command", ["sft", "eval", "predict"])
def test_rl_reward_keys_are_neither_listed_nor_taken_where_nothing_reads_them(command):
    """sft, eval and predict inherit the env keys, GRPO's reward keys among them: those are left out
    of their --help and README table, and one typed is refused saying who reads it."""
    from geospot.eval.cli_config import EvalConfig, PredictConfig
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    cls = {"sft": SFTConfig, "eval": EvalConfig, "predict": PredictConfig}[command]
    for key in ("mixed_weights", "mixed_precision", "reasoning_penalty"):
        assert f"  {key}=" not in help_text(cls) and f"| `{key}` |" not in markdown_table(cls)
        assert f"  {key}=" in help_text(RLConfig) and f"| `{key}` |" in markdown_table(RLConfig)
    with pytest.raises(ConfigError, match=r"^mixed_precision=3 is read by geospot rl reward=mixed only \(a reward's "
                                          r"geohash precision\); leave it out$"):
        parse_overrides(cls, ["mixed_precision=3"])
    with pytest.raises(ConfigError, match=r"^reasoning_penalty=0.1 is read by geospot rl only"):
        parse_overrides(cls, ["reasoning_penalty=0.1", "reasoning=true"])
    with pytest.raises(ConfigError, match="unknown config key 'mixed_weight'") as err:
        parse_overrides(cls, ["mixed_weight=1,1"])
    assert "mixed_weights" not in str(err.value)  # a near miss is never pointed at a key the command hides
    # a prediction has no truth to tell; SFT's examples tell every turn the truth already: eval's oracle study only
    assert ("  teacher_forcing=" in help_text(cls)) == (command == "eval")


def test_sft_refuses_what_only_rollouts_read_and_a_run_that_saved_one_resumes():
    """sft took teacher_forcing / hier_weights without a word, and RL from that run inherited them."""
    import dataclasses

    from geospot.envs.config import unread_keys
    from geospot.train.sft import SFTConfig

    for typed in ("teacher_forcing=0.5", "hier_weights=0.1,0.1,0.1,0.7", "hier_partial_credit=0.25",
                  "geohash_bonus=0.2"):
        with pytest.raises(ConfigError, match=rf"^{typed} is read by geospot rl"):
            parse_overrides(SFTConfig, ["prompt_style=all", typed])
    # an SFT run saved by an older geospot holds teacher_forcing=0.5: a resume neither takes nor compares it
    saved = dataclasses.replace(SFTConfig(prompt_style="hierarchical"), teacher_forcing=0.5)
    assert {"teacher_forcing", "hier_weights"} <= unread_keys(saved) and "hier_turns" not in unread_keys(saved)


def test_a_default_with_newlines_stays_in_its_table_row():
    """RLConfig's `prompt` holds newlines: a raw one would end the README table's row."""
    from geospot.train.rl import RLConfig

    rows = markdown_table(RLConfig).split("\n")
    assert all(r.startswith("| ") and r.endswith(" |") for r in rows)
    assert any(r.startswith("| `prompt` |") and "\\nLatitude: <degrees>\\nLongitude" in r for r in rows)
    # and in --help, on the key's own line (its type came two lines further down)
    line = next(x for x in help_text(RLConfig).split("\n") if x.startswith("  prompt="))
    assert line.endswith("\\nLongitude: <degrees>  [str]"), line


def test_every_config_key_has_a_help_of_at_most_200_characters():
    """The house rule: a help string says what the key does; measurements belong in docs/."""
    import dataclasses
    import importlib
    import pkgutil

    import geospot

    long = []
    for m in pkgutil.walk_packages(geospot.__path__, "geospot."):
        if m.name.endswith("__main__"):
            continue
        for obj in vars(importlib.import_module(m.name)).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == m.name:
                long += [f"{obj.__name__}.{f.name} ({len(f.metadata['help'])})" for f in dataclasses.fields(obj)
                         if len(f.metadata.get("help", "")) > 200]
    assert not long, long


def test_another_commands_name_for_a_key_is_pointed_at_this_ones():
    """sft says prompt_style where rl / eval / predict say env_type: a close-match guess sent
    `geospot rl prompt_style=single` to `prompt` (the prompt's text, which then trained on 'single')."""
    from geospot.eval.cli_config import EvalConfig, PredictConfig
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    for cls in (RLConfig, EvalConfig, PredictConfig):
        with pytest.raises(ConfigError, match=rf"^unknown config key 'prompt_style' for {cls.__name__}: here it is "
                                              r"env_type \(env_type=single\)$"):
            parse_overrides(cls, ["prompt_style=single"])
    with pytest.raises(ConfigError, match=r"here it is prompt_style \(prompt_style=telescoping\)$"):
        parse_overrides(SFTConfig, ["env_type=telescoping"])


def test_a_config_built_in_python_is_checked_against_its_field_types():
    """No command line coerced its values: a string for a number, a list for a tuple, a word
    outside a Literal's choices each get one sentence (it was a TypeError deep in the run, or a
    KeyError after the run folder was made)."""
    from geospot.config import check_types

    @dataclass(frozen=True)
    class Cfg:
        n: int = 1
        x: float = 0.5
        on: bool = False
        kind: Literal["a", "b"] = "a"
        parts: tuple[str, ...] = ("p",)
        limit: int | None = None

    check_types(Cfg(n=2, x=3, on=True, kind="b", parts=(), limit=None))  # an int is a float too
    for kwargs, said in [({"n": "4"}, "n='4' is a str, not an int"), ({"n": 4.0}, "n=4.0 is a float, not an int"),
                         ({"n": True}, "n=True is a bool, not an int"),
                         ({"x": "1e-3"}, "x='1e-3' is a str, not a float"),
                         ({"on": 1}, "on=1 is an int, not a bool"), ({"kind": "c"}, "kind='c' is not one of a, b"),
                         ({"parts": ["p"]}, r"parts=\['p'\] is a list, not a tuple"),
                         ({"parts": ("p", 2)}, r"parts=\('p', 2\) holds 2, an int, not a str"),
                         ({"limit": "none"}, "limit='none' is a str, not an int")]:
        with pytest.raises(ConfigError, match=said):
            check_types(Cfg(**kwargs))
