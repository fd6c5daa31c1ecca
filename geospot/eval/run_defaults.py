"""How `geospot eval` / `predict` (and `geospot rl load_checkpoint_path=<run>`) ask a training
run's model: the keys the command line does not give take the run's own values
(geospot.runs.model_spec): its prompt style, image budget and shape, answer length and env keys
(envs.config.ENV_KEYS: hier_*, geohash_*, mixed_*, teacher_forcing), and the output records
which came from the run and which the command line overrode."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from geospot.config import ConfigError
from geospot.envs.config import ENV_KEYS, SFT_UNREAD, geohash_turn_weights, hier_turn_weights, reads, weights_left_out
from geospot.envs.kinds import KINDS
from geospot.models.load import image_budget
from geospot.runs.model_spec import ModelSpec, is_export_path, is_run_path, model_spec

RUN_DEFAULT_KEYS = ("env_type", "max_pixels", "max_tokens", "reasoning", "reasoning_max_tokens", "square")
# the env's keys beside its type and the reasoning keys (those are the ModelSpec's, above)
ENV_OPTION_KEYS = tuple(k for k in ENV_KEYS if k not in RUN_DEFAULT_KEYS)
# what a run trained with and an eval of it does not take: a turn told the truth is no held-out answer
TRAINING_ONLY_KEYS = ("teacher_forcing",)


def _as_field(current, value):
    """A config.json value (lists) as the config field's type (tuples)."""
    return tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value


def env_defaults(cfg, spec: ModelSpec, given: set[str], skip: tuple[str, ...] = ()):
    """(cfg, record) with the env keys (ENV_KEYS) the user did not give taken from the run
    `spec` describes (its config.json, over its parent run's): what `geospot rl
    load_checkpoint_path=` and `with_run_defaults` share (an eval `skip`s TRAINING_ONLY_KEYS).
    env_type is the spec's (an SFT run's style)."""
    run_values = {"env_type": spec.env_type}
    unread = SFT_UNREAD if spec.kind == "sft" else {}  # what an SFT run never read (an older one saved it)
    run_values.update({k: _as_field(getattr(cfg, k), spec.config[k]) for k in ENV_OPTION_KEYS
                       if k in spec.config and hasattr(cfg, k) and k not in skip and k not in unread})
    run_values = weights_left_out(run_values)  # a run recorded with the default weights written out
    # a key is taken only where the env asked reads it (zoom: telescoping turns; hier_*: hierarchical ones;
    # mixed_*: reward=mixed), reasoning only by single / telescoping: asked another way, the run's value
    # is neither taken nor said (an SFT run that reasoned, continued as hierarchical)
    env_type = cfg.env_type if "env_type" in given else spec.env_type
    asked = dataclasses.replace(cfg, env_type=env_type)
    run_values = {k: v for k, v in run_values.items() if k == "env_type" or reads(asked, k)}
    reasons = env_type in KINDS and KINDS[env_type].prompt_key is not None
    dropped = {} if reasons or not spec.reasoning or not hasattr(cfg, "reasoning") else {
        "dropped": f"the run's reasoning=true is not taken: {env_type} turns answer without reasoning"}
    if reasons and hasattr(cfg, "reasoning"):
        run_values["reasoning"] = spec.reasoning
        if (cfg.reasoning if "reasoning" in given else spec.reasoning):  # its budget, where a turn reasons
            run_values["reasoning_max_tokens"] = spec.reasoning_max_tokens
    taken = {k: v for k, v in run_values.items() if k not in given and getattr(cfg, k) != v}
    overridden = {k: getattr(cfg, k) for k in run_values if k in given and getattr(cfg, k) != run_values[k]}
    out = dataclasses.replace(cfg, **taken)
    try:  # the keys typed, now with the run's values of the rest (a command line is checked only here)
        out.validate_env()
    except ConfigError as e:
        took = ", ".join(f"{k}={v}" for k, v in taken.items())
        where = f" {spec.run_dir}" if spec.run_dir else ""
        # said with the run's values only when the sentence names a key that came from the run
        own = not any(re.search(rf"\b{k}\b", str(e)) for k in taken)
        raise ConfigError(str(e) if own else f"{e} ({took} from the run{where})") from None
    return out, {"from_run": taken, "overridden": overridden, **dropped}


def given_keys(kv: Sequence[str]) -> set[str]:
    """The config keys named on the command line (`max-pixels=` counts as `max_pixels`)."""
    return {a.split("=", 1)[0].strip().lstrip("-").replace("-", "_") for a in kv}


def env_resume_keys(cfg) -> dict:
    """The env keys that change what an eval of an env that builds its prompts from its keys asks
    (hierarchical, geohash), as JSON reads them back (lists), so an eval folder of other keys is
    never resumed into; {} for an env that asks prompt texts (single / telescoping)."""
    if KINDS[cfg.env_type].prompt_key is not None:
        return {}
    keys = {k: list(v) if isinstance(v, tuple) else v for k in ENV_OPTION_KEYS if not k.startswith("mixed_")
            for v in [getattr(cfg, k)]}
    # the weights the env uses (empty = each turn's default): an eval recorded with them written out is the same
    keys["hier_weights"] = list(hier_turn_weights(tuple(cfg.hier_turns), tuple(cfg.hier_weights)))
    keys["geohash_weights"] = list(geohash_turn_weights(tuple(cfg.geohash_chars), tuple(cfg.geohash_weights)))
    return keys


def with_run_defaults(cfg, given: set[str] | None = None):
    """(cfg, record): for a training run / checkpoint folder or an export of one, the keys the user did not give
    take the run's values (its ModelSpec: prompt style, image budget, answer length, reasoning), so a
    model is asked the way it was trained. `record` says which came from the run and which
    the command line overrode (written into the eval's config and summary). `given` None =
    every key that differs from the class default counts as given (a programmatic caller)."""
    if not cfg.model or not (is_run_path(cfg.model) or is_export_path(cfg.model)):
        return cfg, {}
    spec = model_spec(cfg.model)
    if given is None:
        defaults = type(cfg)()
        given = {k for k in (*RUN_DEFAULT_KEYS, *ENV_OPTION_KEYS)
                 if hasattr(cfg, k) and getattr(cfg, k) != getattr(defaults, k)}
    if spec.env_type not in KINDS and "env_type" not in given:  # a kind registered by the user's own code
        raise ConfigError(f"model={cfg.model}: its run was trained with env_type={spec.env_type!r}, which geospot does "
                          f"not know; ask it as one of {', '.join(KINDS)} (env_type=single: one answer)")
    # (reasoning and its budget come with the env keys: env_defaults)
    run_values = {"max_pixels": image_budget(spec), "max_tokens": spec.max_tokens, "square": spec.square}
    taken = {k: v for k, v in run_values.items() if k not in given}
    overridden = {k: getattr(cfg, k) for k in run_values if k in given and getattr(cfg, k) != run_values[k]}
    cfg, env_record = env_defaults(dataclasses.replace(cfg, **taken), spec, given, skip=TRAINING_ONLY_KEYS)
    # env_type is always recorded (the style the model is asked with); the env keys when they differ
    taken = {**({} if "env_type" in given else {"env_type": cfg.env_type}), **taken, **env_record["from_run"]}
    overridden.update(env_record["overridden"])
    if getattr(cfg, "reasoning", False) and "reasoning_max_tokens" not in given:
        # the budget a reasoning turn has, said even where it is the default (max_tokens is the answer's alone)
        taken.setdefault("reasoning_max_tokens", cfg.reasoning_max_tokens)
    # the run's own prompt texts of the env asked (a ModelSpec has the prompt keys a kind reads); none for an env
    # that builds its prompts from its keys
    record = {"from_run": taken, "overridden": overridden, "turn_prompts": list(KINDS[cfg.env_type].prompt_texts(spec)),
              "trained_styles": list(spec.trained_styles), "source": "export" if is_export_path(cfg.model) else "run",
              "step": spec.step}
    if "dropped" in env_record:  # the run reasoned, and the env asked does not
        record["dropped"] = env_record["dropped"]
    if getattr(cfg, "reasoning", False) and "max_tokens" in given:  # typed, and not what a reasoning turn uses
        record["unused"] = (f"max_tokens is not used with reasoning=true: reasoning_max_tokens="
                            f"{cfg.reasoning_max_tokens} is each turn's budget")
    return cfg, record


def describe_defaults(record: dict) -> str:
    """One line for stderr: what the run decided and what the command line changed."""
    if not record:
        return ""
    took = ", ".join(f"{k}={v}" for k, v in record["from_run"].items()) or "nothing"
    line = f"from the {'export (its run, as recorded)' if record.get('source') == 'export' else 'run'}: {took}"
    if record["overridden"]:
        line += "; overridden on the command line: " + ", ".join(f"{k}={v}" for k, v in record["overridden"].items())
    if record.get("step") is not None and record.get("source") == "run":  # which weights: a run goes on, or stopped
        line += f"; weights: its checkpoint of step {record['step']}"
    for note in ("unused", "dropped"):
        if record.get(note):
            line += f"; {record[note]}"
    return line


