"""reasoning=true: the parser reads the answer after the reasoning, reasoning tokens and
truncation are counted on what the engine sampled, and the length penalty is worked by hand.
All on the character renderer (one token per character), so every count is checkable."""

import math

import pytest

from geospot import prompts as P
from geospot.config import ConfigError
from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs import registry
from geospot.envs.config import EnvOptions
from geospot.envs.reasoning import length_penalty, reasoning_tokens
from geospot.geo import parse_coordinates
from geospot.rl.metrics import reasoning_metrics
from geospot.rl.rollouts import do_group_rollouts
from geospot.rl.testing import EOT, CharRenderer, ScriptedEngine

PARIS = Sample(id="p", image=None, lat=48.86, lon=2.35)
ANSWER = "Latitude: 48.86\nLongitude: 2.35"


# --- the parser -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (f"<think>Signs in French, Haussmann facades.</think>\n{ANSWER}", (48.86, 2.35)),
    # numbers in the reasoning that look like coordinates are not the answer
    (f"<think>Not Madrid (40.42, -3.70); Latitude: 40.4 Longitude: -3.7 is wrong.</think>\n{ANSWER}", (48.86, 2.35)),
    ("<think>I first thought 51.5 N, 0.1 W</think> Latitude: -33.87\nLongitude: 151.21", (-33.87, 151.21)),
    # a template whose prompt opened the block: only the closing tag is sampled
    ("Looks like Sydney at 40.0, 10.0?</think>\nLatitude: -33.87\nLongitude: 151.21", (-33.87, 151.21)),
])
def test_parser_reads_the_answer_after_the_reasoning(text, expected):
    assert tuple(parse_coordinates(text)) == pytest.approx(expected)


@pytest.mark.parametrize("text", [
    "<think>Latitude: 48.86\nLongitude: 2.35 maybe, or 51.5, -0.1",  # unterminated: no answer yet
    "<think>48.86, 2.35</think>",  # the reasoning closed but no answer followed
    "<think>48.86 N 2.35 E</think>\nI cannot tell.",
])
def test_parser_never_takes_coordinates_from_the_reasoning(text):
    assert parse_coordinates(text) is None


# --- prompts and SFT targets ------------------------------------------------------------------

def test_reasoning_prompt_and_target_format():
    asked = P.reasoning_prompt(P.SINGLE_TURN_PROMPT)
    assert asked.startswith(P.SINGLE_TURN_PROMPT) and "<think>" in asked and "</think>" in asked
    # telescoping prompts are formatted after the instruction is appended: no stray braces
    assert P.reasoning_prompt(P.TELESCOPING_PROMPTS[1]).format(prev="(1.0, 2.0)").count("(1.0, 2.0)") == 1
    target = P.format_reasoned_answer("Looks French.", ANSWER)
    assert target == f"<think>Looks French.</think>\n{ANSWER}"
    assert tuple(parse_coordinates(target)) == (48.86, 2.35)


def test_templated_rationale_names_labels_never_numbers():
    r = P.templated_rationale({"country": "France", "region": "Ile-de-France", "city": "Paris"}, 48.86, 2.35)
    assert r == "The scene looks like Paris, Ile-de-France, France, so I place it there."
    assert P.templated_rationale({}, -33.9, 151.2) == ("The light and vegetation suggest the southern hemisphere, "
                                                      "east of Greenwich.")
    assert not any(c.isdigit() for c in r)


def test_sft_messages_with_reasoning_every_turn():
    from geospot.train.sft import SFTConfig, build_messages

    s = Sample(id="p", image=None, lat=48.86, lon=2.35, labels={"country": "France"})
    cfg = SFTConfig(data="synthetic:n=4", reasoning=True, prompt_style="telescoping")
    msgs = build_messages(s, "telescoping", cfg)
    users = [m for m in msgs if m["role"] == "user"]
    answers = [m["content"][0]["text"] for m in msgs if m["role"] == "assistant"]
    assert len(answers) == 3 and all(P.REASONING_INSTRUCTION in u["content"][-1]["text"] for u in users)
    assert all(a.startswith("<think>The scene looks like France, so I place it there.</think>\n") for a in answers)
    assert tuple(parse_coordinates(answers[-1])) == (48.86, 2.35)
    plain = build_messages(s, "single", SFTConfig(data="synthetic:n=4"))
    assert "<think>" not in plain[1]["content"][0]["text"]


# --- token budgets, truncation and the penalty ------------------------------------------------

def test_reasoning_tokens_counted_on_the_tokens():
    r = CharRenderer()
    ids = [ord(c) for c in f"<think>abc</think>\n{ANSWER}"] + [EOT]
    assert reasoning_tokens(r, ids) == len("<think>abc</think>") == 18
    assert reasoning_tokens(r, [ord(c) for c in "<think>abcdef"]) == 13  # unterminated: every token
    assert reasoning_tokens(r, [ord(c) for c in ANSWER] + [EOT]) == 0


def _rollout(answers, cfg, env_type="single", max_tokens=64, reward=None):
    engine = ScriptedEngine(lambda text, i: answers[i] if isinstance(answers, list) else answers(text, i),
                            honour_max_tokens=True)
    reward = reward or registry.make_reward("geoscore", 1.0)
    builders = registry.make_group_builders(env_type, [PARIS], engine.renderer, reward, cfg)
    return engine, do_group_rollouts(engine, builders, len(answers) if isinstance(answers, list) else 2,
                                     SampleParams(max_tokens=max_tokens))


def test_length_penalty_and_truncation_worked_by_hand():
    think = "<think>" + "x" * 33 + "</think>\n"  # 48 reasoning tokens
    answers = [think + ANSWER,  # 49 + 31 + EOT = 81 tokens: cut at 64, mid-answer
               "<think>Paris.</think>\n" + ANSWER,  # 21 reasoning tokens, 53 in all: fits
               ANSWER]  # no reasoning at all: parsed, but not the asked format
    cfg = EnvOptions(reasoning=True, reasoning_penalty=0.01)
    engine, trajs_BG = _rollout(answers, cfg)
    (cut, short, bare), = trajs_BG
    m_cut, m_short, m_bare = (t.transitions[0].metrics for t in (cut, short, bare))
    # the budget ran out after the latitude: half an answer is no answer
    assert engine.renderer.decode(cut.transitions[0].action_tokens).endswith("</think>\nLatitude: 48.86")
    assert (m_cut["truncated"], m_cut["parsed"], m_cut["reasoning_tokens"]) == (1.0, 0.0, 48.0)
    # reward = format penalty - 0.01 x 48 = -0.1 - 0.48
    assert cut.total_reward == pytest.approx(-0.58)
    # reward = GeoScore(0 km) = 1 - 0.01 x 21
    assert (m_short["truncated"], m_short["answer_format"], m_short["reasoning_tokens"]) == (0.0, 1.0, 21.0)
    assert short.total_reward == pytest.approx(1.0 - 0.21)
    assert (m_bare["answer_format"], m_bare["reasoning_tokens"]) == (0.0, 0.0) and bare.total_reward == 1.0
    assert reasoning_metrics(trajs_BG) == pytest.approx(
        {"reasoning_tokens": (48 + 21 + 0) / 3, "truncation_rate": 1 / 3, "answer_format_rate": 1 / 3})
    assert length_penalty(0.01, 21) == pytest.approx(0.21)


def test_penalty_off_by_default_and_no_metrics_without_reasoning():
    _, trajs_BG = _rollout(["<think>Paris.</think>\n" + ANSWER] * 2, EnvOptions(reasoning=True))
    assert [t.total_reward for t in trajs_BG[0]] == [1.0, 1.0]
    _, plain = _rollout([ANSWER] * 2, EnvOptions())
    assert reasoning_metrics(plain) == {} and "reasoning_tokens" not in plain[0][0].transitions[0].metrics


def test_telescoping_each_turn_reasons_and_pays_for_it():
    seen = []

    def policy(text, i):
        seen.append(text)
        return "<think>ab</think>\n" + ANSWER  # 17 reasoning tokens per turn

    _, trajs_BG = _rollout(policy, EnvOptions(reasoning=True, reasoning_penalty=0.001), env_type="telescoping")
    traj = trajs_BG[0][0]
    assert len(traj.transitions) == 3
    assert all(P.REASONING_INSTRUCTION in t for t in seen)
    # every turn asked for reasoning, and a later turn sees the earlier turns' think blocks verbatim
    assert seen[-1].count("<think>ab</think>") == 2
    # GeoScore improvements telescope to S(final) = 1; each turn pays 0.001 x 17
    assert traj.total_reward == pytest.approx(1.0 - 3 * 0.017)
    assert reasoning_metrics(trajs_BG)["reasoning_tokens"] == 17.0


def test_token_budget_and_validation():
    assert EnvOptions().turn_max_tokens(24) == 24
    assert EnvOptions(reasoning=True).turn_max_tokens(24) == 256
    with pytest.raises(ConfigError, match="reasoning_penalty"):
        EnvOptions(reasoning=True, reasoning_penalty=-1.0).validate_env()
    with pytest.raises(ConfigError, match="reasoning_max_tokens"):
        EnvOptions(reasoning=True, reasoning_max_tokens=8).validate_env()
    from geospot.train.rl import RLConfig

    with pytest.raises(ConfigError, match="reasoning") as err:
        RLConfig(env_type="hierarchical", reasoning=True).validate()
    # each config names its own key and values: `both` is an SFT prompt style, not an RL env
    assert "env_type=single / telescoping only" in str(err.value) and "both" not in str(err.value)
    from geospot.train.sft import SFTConfig

    with pytest.raises(ConfigError, match="prompt_style=single / telescoping / both only"):
        SFTConfig(prompt_style="hierarchical", reasoning=True).validate()
    assert math.isfinite(RLConfig(env_type="telescoping", reasoning=True).turn_max_tokens(24))


def test_a_reasoning_key_without_reasoning_is_refused_naming_the_fix():
    """reasoning_max_tokens / reasoning_penalty change nothing unless a turn reasons: typed without
    reasoning=true they would be ignored, so they are refused in one sentence instead."""
    from geospot.config import parse_overrides
    from geospot.eval.cli_config import EvalConfig
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    for cls, kv in [(RLConfig, "reasoning_penalty=0.001"), (RLConfig, "reasoning_max_tokens=64"),
                    (SFTConfig, "reasoning_max_tokens=64"), (EvalConfig, "reasoning_max_tokens=64")]:
        with pytest.raises(ConfigError, match=rf"^{kv} is read by reasoning turns only \(reasoning=true\); leave it "
                                              r"out or set reasoning=true$"):
            parse_overrides(cls, [kv])
        if "penalty" not in kv or cls is RLConfig:  # with reasoning=true each is read (the penalty by RL only)
            assert parse_overrides(cls, [kv, "reasoning=true"]).reasoning
