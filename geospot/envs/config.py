"""The keys of the hierarchical and geohash envs and of the mixed reward, in one frozen
dataclass that the RL, SFT and eval configs inherit (so `geospot rl env_type=hierarchical
hier_weights=...` and `geospot eval env_type=hierarchical ...` read the same keys).

The original project's variants, as keys:
- MultiTurnGeoEnv (the default): `hier_turns=country,region,city,coords hier_weights=0.2,0.2,0.2,0.4
  teacher_forcing=0` with `reward=geoscore` (auto picks it);
- HierarchicalGeoEnv: `hier_turns=country,region,coords hier_weights=0.2,0.3,0.5 teacher_forcing=1
  hier_partial_credit=0.25`;
- GeohashCurriculumEnv: `env_type=geohash` with the defaults below."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from geospot.config import ConfigError, option, require
from geospot.geo.geohash import MAX_PRECISION

HIER_FIELDS = ("country", "region", "city", "coords")
# reasoning=true: the coordinate-answering turns (an SFT prompt_style of `both` mixes the two)
REASONING_STYLES = ("single", "telescoping", "both")
# the styles that ask telescoping turns (SFT's `both` / `all` include them): where `zoom` means something
TELESCOPING_STYLES = frozenset({"telescoping", "both", "all"})
# Which styles (env types, and SFT's mixes) read each env key: a key set where no style in play reads
# it is refused (validate_env), and a run's value of it is not taken by a command asking otherwise
# (eval/run_defaults.py). The mixed_* keys are read by reward=mixed, not by an env.
_HIER, _GEOHASH = frozenset({"hierarchical", "all"}), frozenset({"geohash", "all"})
KEY_READERS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("hier_turns", "hier_weights", "hier_partial_credit"), _HIER),
    **dict.fromkeys(("geohash_chars", "geohash_weights", "geohash_bonus", "geohash_answer"), _GEOHASH),
    "teacher_forcing": _HIER | _GEOHASH,
    "zoom": TELESCOPING_STYLES,
}
MIXED_REWARD_KEYS = ("mixed_weights", "mixed_precision")
# read by a reasoning turn only (reasoning=true): its token budget and its cost per token
REASONING_KEYS = ("reasoning_max_tokens", "reasoning_penalty")
# what only GRPO's reward reads: SFT, eval and predict declare them (they inherit EnvOptions) but neither
# show nor take them (their NOT_READ; config.parse_overrides refuses one typed, saying why)
REWARD_ONLY = {
    "mixed_weights": "read by geospot rl reward=mixed only (a reward's weights)",
    "mixed_precision": "read by geospot rl reward=mixed only (a reward's geohash precision)",
    "reasoning_penalty": "read by geospot rl only (the reward's cost per reasoning token)",
}
# ... and what SFT's examples never read: they show every turn its true answer, and their loss is a likelihood
SFT_UNREAD = {
    **REWARD_ONLY,
    **dict.fromkeys(("hier_weights", "hier_partial_credit", "geohash_weights", "geohash_bonus"),
                    "read by geospot rl only (what a turn's answer earns)"),
    "teacher_forcing": "read by geospot rl and eval only (rollouts' later turns told the truth): SFT's examples "
                       "show every turn its true answer already",
}


def styles_in_play(cfg) -> set[str]:
    """The styles a config asks with: RL's env_type and mix_env_type, eval's env_type, SFT's prompt_style."""
    if hasattr(cfg, "env_type"):
        return {cfg.env_type, getattr(cfg, "mix_env_type", None)} - {None}
    return {getattr(cfg, "prompt_style", "single")}


def reads(cfg, key: str) -> bool:
    """Whether `cfg`'s styles (or its reward, or its mix) read env key `key`."""
    if key in getattr(cfg, "NOT_READ", ()):  # what its command never reads, whatever the style
        return False
    if key in MIXED_REWARD_KEYS:
        return getattr(cfg, "reward", None) == "mixed"
    if key == "mix_share":
        return getattr(cfg, "mix_env_type", None) is not None
    if key in REASONING_KEYS:
        return bool(getattr(cfg, "reasoning", False))
    return key not in KEY_READERS or bool(styles_in_play(cfg) & KEY_READERS[key])


_OPTIONAL_KEYS = (*KEY_READERS, *MIXED_REWARD_KEYS, "mix_share", *REASONING_KEYS)  # read only where something asks


def unread_keys(cfg) -> set[str]:
    """The keys of `cfg` that nothing it asks reads, whatever their values: a resume neither takes
    them from the run's config.json nor compares them (a run saved by an older geospot may hold one,
    inherited from its start run) — they change nothing that is trained."""
    return {k for k in _OPTIONAL_KEYS if hasattr(cfg, k) and not reads(cfg, k)}


@dataclass(frozen=True)
class EnvOptions:
    hier_turns: tuple[str, ...] = option(
        HIER_FIELDS, "hierarchical: the turns, coarse -> fine: country,region,city,coords or a subset in that order, "
        "ending with coords")
    hier_weights: tuple[float, ...] = option(
        (), "hierarchical: weight per turn (a right label earns it, coords weight x S(d)); empty = labels 0.2, coords "
        "0.4, scaled to sum 1; the original HierarchicalGeoEnv: 0.2,0.3,0.5 over country,region,coords")
    hier_partial_credit: float = option(
        0.0, "hierarchical: a wrong label after a wrong label still earns this fraction of its weight (the original "
        "HierarchicalGeoEnv: 0.25)")
    teacher_forcing: float = option(
        0.0, "hierarchical / geohash: probability that a later turn is told the truth (labels / coordinates) "
        "instead of the policy's own earlier answer")
    geohash_chars: tuple[int, ...] = option((2, 4, 6), "geohash: characters graded per turn (~1250 / 40 / 1 km cells)")
    geohash_weights: tuple[float, ...] = option(
        (), "geohash: weight per turn, times (shared prefix / chars + bonus); empty = 0.2,0.3,0.5 for three turns "
        "(the original), for fewer the finest turns' weights scaled to sum 1")
    geohash_bonus: float = option(
        0.1, "geohash: added to a turn's score when its guess is closer than the previous turn's")
    geohash_answer: Literal["coordinates", "geohash"] = option(
        "coordinates", "geohash: turns answer coordinates (the original) or a geohash string of the turn's length")
    mixed_weights: tuple[float, ...] = option(
        (0.7, 0.3), "reward=mixed: weights of (distance reward, shared geohash prefix / mixed_precision), "
        "normalised by their sum")
    mixed_precision: int = option(5, "reward=mixed: geohash characters compared")
    zoom: int = option(
        1, "telescoping: the first turn sees the photo shrunk zoom x per side, the second turn the full photo (a "
        "closer look; docs/envs.md); 1 = one photo for every turn, as the original")
    reasoning: bool = option(
        False, "single / telescoping: each turn reasons inside <think></think> before its coordinates (SFT targets, "
        "RL and eval prompts); docs/reasoning.md")
    reasoning_max_tokens: int = option(
        256, "reasoning=true: sampled tokens per turn, replacing max_tokens / eval_max_tokens (24 = the answer alone; "
        "256 = ~150 words of reasoning + the answer)")
    reasoning_penalty: float = option(
        0.0, "reasoning=true: reward minus this x reasoning tokens, per turn (1e-4: 200 tokens cost 0.02); 0 = off")

    def validate_env(self) -> None:
        # RL and eval name an env_type, SFT a prompt_style (`both` is one of SFT's styles, not an env)
        key = "env_type" if hasattr(self, "env_type") else "prompt_style"
        style, mix = getattr(self, key, "single"), getattr(self, "mix_env_type", None)
        asked = f"{key}={style}" + (f" (mix_env_type={mix})" if mix else "")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, why in getattr(self, "NOT_READ", {}).items():  # a key this command never reads (predict's
            if getattr(self, name) != defaults[name]:  # teacher_forcing, sft's reward keys), whatever else is asked
                raise ConfigError(f"{name}={getattr(self, name)} is {why}; leave it out")
        unread = unread_keys(self)
        for name in _OPTIONAL_KEYS:  # set (not the default), and nothing in play
            # reads it: said first, before whatever else is wrong with a key that would be ignored
            if name not in unread or getattr(self, name) == defaults[name]:
                continue
            value = getattr(self, name)
            if name == "mix_share":
                raise ConfigError(f"mix_share={value!r} is the share of images that play mix_env_type, which is not "
                                  "set; leave it out or set mix_env_type")
            if name in MIXED_REWARD_KEYS:
                raise ConfigError(f"{name}={value} is read by reward=mixed only; leave it out or set reward=mixed")
            if name in REASONING_KEYS:
                raise ConfigError(f"{name}={value} is read by reasoning turns only (reasoning=true); leave it out or "
                                  "set reasoning=true")
            readers = sorted(KEY_READERS[name] & {"telescoping", "hierarchical", "geohash"})
            raise ConfigError(f"{name}={value} is read by the {' / '.join(readers)} turns only, and {asked} has "
                              f"none; leave it out or set {key}={readers[0]}")
        turns = tuple(self.hier_turns)
        require(self, len(turns) >= 1 and turns[-1] == "coords" and all(t in HIER_FIELDS for t in turns)
                and list(turns) == sorted(set(turns), key=HIER_FIELDS.index), "hier_turns",
                f"must be distinct fields of {','.join(HIER_FIELDS)} in that order, ending with coords")
        require(self, len(self.hier_weights) in (0, len(turns)), "hier_weights",
                f"needs one weight per turn of hier_turns ({len(turns)}); give {len(turns)}, or hier_weights= "
                "(empty: each turn's default weight)")
        require(self, all(w >= 0 and math.isfinite(w) for w in self.hier_weights), "hier_weights", "must be >= 0")
        require(self, 0 <= self.hier_partial_credit <= 1, "hier_partial_credit", "must be in [0, 1]")
        require(self, 0 <= self.teacher_forcing <= 1, "teacher_forcing", "is a probability: use 0..1")
        chars = tuple(self.geohash_chars)
        require(self, len(chars) >= 1 and all(1 <= c <= MAX_PRECISION for c in chars), "geohash_chars",
                f"values must be in 1..{MAX_PRECISION}")
        require(self, len(chars) <= 3, "geohash_chars", "at most 3 turns (one prompt each in geospot.prompts)")
        require(self, len(self.geohash_weights) in (0, len(chars)), "geohash_weights",
                f"needs one weight per turn of geohash_chars ({len(chars)}); give {len(chars)}, or "
                "geohash_weights= (empty: each turn's default weight)")
        require(self, all(w >= 0 and math.isfinite(w) for w in self.geohash_weights), "geohash_weights",
                "must be >= 0")
        require(self, self.geohash_bonus >= 0, "geohash_bonus", "must be >= 0")
        w = tuple(self.mixed_weights)
        require(self, len(w) == 2 and all(x >= 0 for x in w) and sum(w) > 0, "mixed_weights",
                "needs two weights >= 0, not both 0 (distance, geohash)")
        require(self, 1 <= self.mixed_precision <= MAX_PRECISION, "mixed_precision", f"must be in 1..{MAX_PRECISION}")
        require(self, 1 <= self.zoom <= 8, "zoom",
                "must be in 1..8 (1 = off; 2: the first turn sees a half-size photo)")
        require(self, self.reasoning_max_tokens >= 32, "reasoning_max_tokens",
                "must be >= 32: the answer alone needs ~20 tokens, the reasoning more")
        require(self, self.reasoning_penalty >= 0 and math.isfinite(self.reasoning_penalty), "reasoning_penalty",
                "must be >= 0 (0 = off)")
        allowed = REASONING_STYLES if key == "prompt_style" else REASONING_STYLES[:2]
        require(self, not self.reasoning or {style, mix} - {None} <= set(allowed), "reasoning",
                f"works with {key}={' / '.join(allowed)} only{f' (mix_env_type={mix} is not)' if mix else ''}; "
                f"set reasoning=false or {key}=single")

    def turn_max_tokens(self, max_tokens: int) -> int:
        """The token budget per turn: `reasoning_max_tokens` when reasoning, else `max_tokens`."""
        return int(self.reasoning_max_tokens) if self.reasoning else int(max_tokens)


# Each turn's weight when hier_weights / geohash_weights are left empty: the default turns' sum to 1
HIER_FIELD_WEIGHTS = {"country": 0.2, "region": 0.2, "city": 0.2, "coords": 0.4}
GEOHASH_TURN_WEIGHTS = (0.2, 0.3, 0.5)  # coarse -> fine, the original GeohashEnv's


def _scaled(weights: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(weights)
    return weights if math.isclose(total, 1.0) else tuple(w / total for w in weights)


def hier_turn_weights(turns: tuple[str, ...], weights: tuple[float, ...]) -> tuple[float, ...]:
    """The hierarchical env's weight per turn: `weights` as given, or (empty) each turn's default
    scaled to sum 1 (country,coords -> 1/3, 2/3; the four default turns -> 0.2, 0.2, 0.2, 0.4)."""
    return tuple(weights) or _scaled(tuple(HIER_FIELD_WEIGHTS[t] for t in turns))


def geohash_turn_weights(chars: tuple[int, ...], weights: tuple[float, ...]) -> tuple[float, ...]:
    """The geohash env's weight per turn: `weights` as given, or (empty) the original's for the
    finest len(chars) turns scaled to sum 1 (three turns: 0.2, 0.3, 0.5; two: 0.375, 0.625)."""
    return tuple(weights) or _scaled(GEOHASH_TURN_WEIGHTS[len(GEOHASH_TURN_WEIGHTS) - len(chars):])


def weights_left_out(values: dict) -> dict:
    """A run's recorded env keys with weights equal to each turn's default for its own turns read
    as left out (()): runs recorded before the weights defaulted to empty hold them written out, and
    a command asking other turns of such a run weighs those by their defaults, not the run's list."""
    out = dict(values)
    turns = tuple(values.get("hier_turns") or HIER_FIELDS)
    if out.get("hier_weights") and set(turns) <= set(HIER_FIELD_WEIGHTS) and tuple(
            out["hier_weights"]) == hier_turn_weights(turns, ()):
        out["hier_weights"] = ()
    chars = tuple(values.get("geohash_chars") or EnvOptions().geohash_chars)
    if out.get("geohash_weights") and 1 <= len(chars) <= len(GEOHASH_TURN_WEIGHTS) and tuple(
            out["geohash_weights"]) == geohash_turn_weights(chars, ()):
        out["geohash_weights"] = ()
    return out


# What a run's config.json holds for its env: what an eval of that run (model=<run>) should reuse.
ENV_KEYS: tuple[str, ...] = ("env_type", *(f.name for f in dataclasses.fields(EnvOptions)))


def blind(options):
    """The env keys a held-out eval asks with: teacher_forcing off, so no later turn is told the truth
    (it is a training aid; an eval scores the model's own answers, turn after turn)."""
    if not getattr(options, "teacher_forcing", 0):
        return options
    return dataclasses.replace(options, teacher_forcing=0.0)

