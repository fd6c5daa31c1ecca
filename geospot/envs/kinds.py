"""One object per env type: what the rest of geospot needs to know about an env, so that no
loop, eval, card or dashboard branches on an env's name.

An `EnvKind` says how to build the env's GRPO groups (`build`), what each of its turns asks
(`turns`: coordinates or a label field, and a name for people), which prompt texts it asks
(`prompt_texts`; the label envs build theirs from their keys), the SFT chat a policy that answers
the truth would have with it (`examples`), how an export's model card asks like it (`card`), and
what its reward pays (`default_reward`, `reward_text`). `KINDS` lists them; its keys are the
`env_type` values every config accepts. Adding an env: docs/envs.md.

`cfg` is any config with the keys of `EnvOptions` (envs/config.py) plus, where it has them,
`prompt`, `turn_prompts`, `format_penalty` and SFT's example keys; a missing key takes its default
(an export's config, a logged run's, eval's asked options)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from geospot import prompts as P
from geospot.envs import examples
from geospot.envs.config import EnvOptions, geohash_turn_weights, hier_turn_weights
from geospot.envs.geohash import GeohashGroupBuilder, GeohashSpec
from geospot.envs.hierarchical import COORDS, HierarchicalGroupBuilder, HierarchySpec
from geospot.envs.rewards import Reward
from geospot.envs.single_turn import SingleTurnGroupBuilder
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.envs.types import EnvGroupBuilder
from geospot.geo.geohash import CELL_SIZE

_DEFAULTS = EnvOptions()


def opt(cfg, key: str, default=None):
    """`cfg`'s value of `key`, else EnvOptions' default, else `default`."""
    return getattr(cfg, key, getattr(_DEFAULTS, key, default))


def hierarchy_spec(cfg) -> HierarchySpec:
    turns = tuple(opt(cfg, "hier_turns"))
    return HierarchySpec(turns, tuple(float(w) for w in hier_turn_weights(turns, opt(cfg, "hier_weights"))),
                         float(opt(cfg, "teacher_forcing")), float(opt(cfg, "hier_partial_credit")),
                         float(opt(cfg, "format_penalty", -0.1)))


def geohash_spec(cfg) -> GeohashSpec:
    chars = tuple(int(c) for c in opt(cfg, "geohash_chars"))
    return GeohashSpec(chars, tuple(float(w) for w in geohash_turn_weights(chars, opt(cfg, "geohash_weights"))),
                       float(opt(cfg, "geohash_bonus")),
                       float(opt(cfg, "teacher_forcing")), opt(cfg, "geohash_answer"),
                       float(opt(cfg, "format_penalty", -0.1)))


def coordinate_prompts(cfg, texts: Sequence[str]) -> tuple[str, ...]:
    """The single / telescoping turn prompts, asking for reasoning first when `reasoning` is on."""
    return tuple(P.reasoning_prompt(p) for p in texts) if opt(cfg, "reasoning") else tuple(texts)


def _reasoning(cfg) -> dict:
    return {"reasoning": bool(opt(cfg, "reasoning")), "reasoning_penalty": float(opt(cfg, "reasoning_penalty"))}


class Turn(NamedTuple):
    """What one turn of an env asks."""

    field: str  # "" = it answers coordinates; else the label field it asks (country, region, city)
    name: str  # what people call it: coarse / refine / final, a 4-char cell, country
    title: str = ""  # one line more (the dashboard's tooltip)
    weight: float | None = None  # a label turn's pay when right (hierarchical: hier_weights)
    partial: float = 0.0  # the share of `weight` a wrong label after a wrong one still earns


class CardTurns(NamedTuple):
    """How an export's model card asks the model, as the env does: `protocol` is coordinates (each
    turn's guess shown to the next in `{prev}`), labels (each answer told to the next turn in
    `{known}`) or cells (geohash cells in `{prev}`)."""

    protocol: str
    prompts: tuple[str, ...]  # the user text per turn
    fields: tuple[str, ...] = ()  # labels: the field each turn asks
    chars: tuple[int, ...] = ()  # cells: the geohash length each turn answers
    zoom: int = 1  # > 1: the first turn sees the photo shrunk zoom x per side (telescoping's `zoom`)
    max_tokens: int = 24  # sampled tokens per answer (the card fills in the run's)
    reasoning: bool = False  # the prompts ask to reason first (the card fills in the run's)


class EnvKind:
    """One env type. The defaults are a single coordinate-answering turn's."""

    name: ClassVar[str]
    summary: ClassVar[str]  # its turns in a few words, for `--help` (env_type's help lists every kind's)
    # the config key of the prompt texts it asks (`prompt`, `turn_prompts`); None: the env builds its
    # prompts from its own keys (then `reasoning` does not apply, and those keys decide what eval asks)
    prompt_key: ClassVar[str | None] = None
    default_reward: ClassVar[str] = "geoscore"  # what reward=auto picks
    own_reward: ClassVar[bool] = False  # it grades with its own reward: `reward=` has no effect
    distance_reward: ClassVar[bool] = True  # its reward is a kernel of the distance (one can draw it)

    def prompt_texts(self, cfg) -> tuple[str, ...]:
        """The prompt texts it asks, before `reasoning` rewrites them; () for an env without `prompt_key`."""
        return ()

    def reward_text(self, cfg, reward: str) -> str:
        """A sentence on what a turn earns beyond the distance reward `reward` itself, for people (the
        dashboard's reward panel); "" when the distance reward is all."""
        return ""

    def turns(self, cfg) -> tuple[Turn, ...]:
        raise NotImplementedError

    def build(self, sample, renderer, reward: Reward, cfg, geocoder, seed: int) -> EnvGroupBuilder:
        raise NotImplementedError

    def examples(self, sample, cfg, rng: np.random.Generator | None) -> list[dict] | None:
        """SFT's chat with a policy that answers the truth (None: this sample has no target for it)."""
        raise NotImplementedError

    def card(self, cfg) -> CardTurns:
        return CardTurns("coordinates", coordinate_prompts(cfg, self.prompt_texts(cfg)))

    def num_turns(self, cfg) -> int:
        return len(self.turns(cfg))

    def coordinate_turns(self, cfg) -> tuple[bool, ...]:
        """Per turn, whether it answers coordinates: the turns a per-turn distance means something for."""
        return tuple(not t.field for t in self.turns(cfg))

    def needs_labels(self, cfg) -> bool:
        """Whether a sample's true labels (country, region, city) are asked: a geocoder supplies missing ones."""
        return any(t.field for t in self.turns(cfg))


class Single(EnvKind):
    name = "single"
    summary = "one answer"
    prompt_key = "prompt"
    default_reward = "kernel"

    def prompt_texts(self, cfg) -> tuple[str, ...]:
        return (opt(cfg, "prompt", P.SINGLE_TURN_PROMPT),)

    def turns(self, cfg) -> tuple[Turn, ...]:
        return (Turn("", "answer"),)

    def build(self, sample, renderer, reward, cfg, geocoder, seed):
        return SingleTurnGroupBuilder(sample, renderer, reward, coordinate_prompts(cfg, self.prompt_texts(cfg))[0],
                                      float(opt(cfg, "format_penalty", -0.1)), **_reasoning(cfg))

    def examples(self, sample, cfg, rng):
        return examples.single_turn_messages(sample, self.prompt_texts(cfg)[0], int(opt(cfg, "answer_decimals", 2)))


class Telescoping(EnvKind):
    name = "telescoping"
    summary = "coarse -> refine -> final coordinates"
    prompt_key = "turn_prompts"

    def prompt_texts(self, cfg) -> tuple[str, ...]:
        return tuple(opt(cfg, "turn_prompts", P.TELESCOPING_PROMPTS))

    def reward_text(self, cfg, reward: str) -> str:
        return "A telescoping turn earns S(d_t) − S(d_{t−1}): how much closer it lands than the turn before."

    def turns(self, cfg) -> tuple[Turn, ...]:
        n = len(self.prompt_texts(cfg))
        names = ("coarse", "refine", "final") if n == 3 else (
            "coarse" if i == 0 else "final" if i == n - 1 else f"refine {i}" for i in range(n))
        return tuple(Turn("", name) for name in names)

    def build(self, sample, renderer, reward, cfg, geocoder, seed):
        return TelescopingGroupBuilder(sample, renderer, reward, coordinate_prompts(cfg, self.prompt_texts(cfg)),
                                       float(opt(cfg, "format_penalty", -0.1)), **_reasoning(cfg),
                                       zoom=int(opt(cfg, "zoom")))

    def card(self, cfg) -> CardTurns:
        return super().card(cfg)._replace(zoom=int(opt(cfg, "zoom")))

    def examples(self, sample, cfg, rng):
        decimals = (*opt(cfg, "telescoping_decimals", (0, 1)), int(opt(cfg, "answer_decimals", 2)))
        return examples.telescoping_messages(sample, self.prompt_texts(cfg), decimals,
                                             opt(cfg, "telescoping_noise_km", ()), rng, int(opt(cfg, "zoom")),
                                             opt(cfg, "max_pixels", None))


class Hierarchical(EnvKind):
    name = "hierarchical"
    summary = "country -> region -> city -> coordinates"
    distance_reward = False

    def reward_text(self, cfg, reward: str) -> str:
        spec = hierarchy_spec(cfg)
        paid = {"geoscore": "GeoScore / 5000", "kernel": "exp(−d/τ)"}.get(reward, f"the {reward} reward of d")
        coords = f"the final coordinates earn their weight × {paid}"
        if not spec.label_fields:  # hier_turns=coords: no label turn
            return f"One turn: {coords} (hier_weights)."
        partial = (f" (a wrong one after a wrong one {spec.partial_credit:g} of it)" if spec.partial_credit else "")
        return f"A right label ({' → '.join(spec.label_fields)}) earns its weight (hier_weights){partial}; {coords}."

    def turns(self, cfg) -> tuple[Turn, ...]:
        spec = hierarchy_spec(cfg)
        return tuple(Turn("", "coordinates") if field == COORDS else Turn(field, field, weight=w,
                                                                         partial=spec.partial_credit)
                     for field, w in zip(spec.turns, spec.weights))

    def build(self, sample, renderer, reward, cfg, geocoder, seed):
        return HierarchicalGroupBuilder(sample, renderer, reward, hierarchy_spec(cfg), geocoder, seed)

    def examples(self, sample, cfg, rng):
        # labels the data lacks come from reverse geocoding the truth
        from geospot.geo import reverse_geocode

        return examples.hierarchical_messages(sample, hierarchy_spec(cfg), reverse_geocode,
                                              int(opt(cfg, "answer_decimals", 2)))

    def card(self, cfg) -> CardTurns:
        fields = hierarchy_spec(cfg).turns
        # `{known}`: the labels answered so far, finest first, as the env tells them
        texts = tuple(P.hierarchical_prompt(f, ("{known}",) if i else ()) for i, f in enumerate(fields))
        return CardTurns("labels", texts, fields=fields)


class Geohash(EnvKind):
    name = "geohash"
    summary = "2/4/6-character turns"
    own_reward = True  # shared cells + bonus: the geohash_* keys
    distance_reward = False

    def reward_text(self, cfg, reward: str) -> str:
        return ("A turn earns its weight (geohash_weights) × the share of its geohash characters that match the "
                "truth's, plus geohash_bonus when it lands closer than the turn before.")

    def turns(self, cfg) -> tuple[Turn, ...]:
        return tuple(Turn("", f"{c}-char cell", f"graded on the first {c} geohash characters (cells of "
                          f"~{CELL_SIZE.get(c, '?')})") for c in map(int, opt(cfg, "geohash_chars")))

    def build(self, sample, renderer, reward, cfg, geocoder, seed):
        return GeohashGroupBuilder(sample, renderer, geohash_spec(cfg), seed)

    def examples(self, sample, cfg, rng):
        # a later turn is shown the truth moved by telescoping_noise_km, as telescoping's are
        return examples.geohash_messages(sample, geohash_spec(cfg),
                                         examples.noisy_truth(sample, opt(cfg, "telescoping_noise_km", ()), rng))

    def card(self, cfg) -> CardTurns:
        gh = geohash_spec(cfg)
        texts = tuple(gh.prompt(t, "{prev}") for t in range(len(gh.chars)))
        return CardTurns("cells" if gh.answer == "geohash" else "coordinates", texts, chars=gh.chars)


KINDS: dict[str, EnvKind] = {k.name: k for k in (Single(), Telescoping(), Hierarchical(), Geohash())}
# the env_type values every config accepts (RLConfig's and EvalConfig's Literal), in this order
ENV_TYPES: tuple[str, ...] = tuple(KINDS)
ENV_HELP = ", ".join(f"`{k.name}` ({k.summary})" for k in KINDS.values())  # what each env_type asks, for --help
# SFT's prompt styles that mix envs, each image drawing one: `both` the two coordinate envs, `all` every env
MIXES: dict[str, tuple[str, ...]] = {"both": ("single", "telescoping"), "all": ENV_TYPES}
PROMPT_STYLES: tuple[str, ...] = (*ENV_TYPES, *MIXES)


def eval_env(style: str) -> str:
    """The env a run trained on prompt style `style` is evaluated with: its own, and for a mix of envs
    the single-turn question (every mix holds it; one number per run, comparable across runs)."""
    return "single" if style in MIXES else style


def env_kind(env_type: str, key: str = "env_type") -> EnvKind:
    """The kind of `env_type` (ValueError naming `key`, the caller's name for it, and the known ones)."""
    if env_type not in KINDS:
        raise ValueError(f"{key}={env_type!r}: use one of {', '.join(ENV_TYPES)}")
    return KINDS[env_type]


def as_options(config: dict[str, Any] | None) -> Any:
    """A config.json's keys as the attributes a kind reads (a missing one takes its default)."""
    from types import SimpleNamespace

    return SimpleNamespace(**{k: v for k, v in (config or {}).items() if v is not None})

