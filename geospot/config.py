"""chz-style `key=value` configuration over frozen dataclasses.

Each component has one frozen dataclass of defaults; every field carries a `help`
string in its metadata (use `option(default, "help")`). `parse_overrides` validates all
keys and types *before* anything heavy is loaded, and fails with one sentence naming the
key and the fix."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import numbers
import os
import reprlib
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


# the words a bool key reads as true / false (`square=on` is true in a data spec as on a command line)
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the fix."""


def option(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (configs are frozen)")
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type, optional) for `X`, `X | None`, `Optional[X]`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) != len(typing.get_args(tp))
    return tp, False


def _coerce(key: str, raw: str, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if optional and raw.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(base)
    try:
        if base is bool:
            low = raw.lower()
            if low in TRUE_WORDS:
                return True
            if low in FALSE_WORDS:
                return False
            raise ValueError
        if base is int:
            return int(float(raw)) if "e" in raw.lower() and float(raw).is_integer() else int(raw)
        if base is float:
            return float(raw)
        if base is str:
            return raw
        if origin is typing.Literal:
            choices = typing.get_args(base)
            if raw not in choices:
                raise ConfigError(f"{key}={raw!r} is not one of {', '.join(map(str, choices))}")
            return raw
        if origin is tuple:
            (elt,) = [a for a in typing.get_args(base) if a is not Ellipsis][:1] or [str]
            if raw.startswith("["):
                items = json.loads(raw)
            else:
                items = [s for s in raw.split(",") if s != ""]
            return tuple(_coerce(key, str(s), elt) for s in items)
    except ConfigError:
        raise
    except (ValueError, json.JSONDecodeError):
        name = getattr(base, "__name__", str(base))
        words = f" (true: {', '.join(TRUE_WORDS[1:])}; false: {', '.join(FALSE_WORDS[1:])})" if base is bool else ""
        raise ConfigError(f"{key}={raw!r} is not a valid {name}{words}") from None
    return raw


def _fits(value: Any, tp: Any) -> bool:
    """Whether `value` is of the field type `tp` (int, float, bool, str, Literal, tuple[...], X | None)."""
    base, optional = _base_type(tp)
    if value is None:
        return optional
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        return value in typing.get_args(base)
    if origin is tuple:
        (elt,) = [a for a in typing.get_args(base) if a is not Ellipsis][:1] or [Any]
        return isinstance(value, tuple) and (elt is Any or all(_fits(v, elt) for v in value))
    if base is bool:
        return isinstance(value, bool)
    if base is int:  # (numpy's integers are Integral too)
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return not isinstance(base, type) or isinstance(value, base)  # (a union of several types: not checked)


def config_from(cls: type[T], keys: dict[str, Any]) -> T:
    """`cls(**keys)` from Python with the command line's sentences: an unknown key (a close one, another
    command's name for it), a value of the wrong type. Python's own spellings of a value are the command
    line's: a path object its text, a list a tuple, a numpy number a number."""
    fields, not_read = field_types(cls), getattr(cls, "NOT_READ", {})
    for key, value in keys.items():
        if key not in fields or key in not_read:
            parse_overrides(cls, [f"{key}={value}"], validate=False)  # (raises the command line's sentence)
            raise ConfigError(f"unknown config key {key!r} for {cls.__name__}")
    cfg = cls(**{k: _python_value(v) for k, v in keys.items()})
    check_types(cfg)
    return cfg


def _python_value(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list):
        return tuple(_python_value(v) for v in value)
    if isinstance(value, numbers.Number) and hasattr(value, "item"):  # numpy's scalars
        return value.item()
    return value


def check_types(cfg: Any) -> None:
    """A config built in Python (no command line coerced its values) whose field holds a value of another
    type or outside its Literal choices: one sentence naming the key, before anything runs."""
    for key, tp in field_types(type(cfg)).items():
        value = getattr(cfg, key)
        if _fits(value, tp):
            continue
        shown = reprlib.repr(value)  # (a DataFrame's repr is pages long)
        base, _ = _base_type(tp)
        origin = typing.get_origin(base)
        if origin is typing.Literal:
            raise ConfigError(f"{key}={shown} is not one of {', '.join(map(str, typing.get_args(base)))}")
        if origin is tuple and isinstance(value, tuple):
            elt = typing.get_args(base)[0]
            bad = next(v for v in value if not _fits(v, elt))
            raise ConfigError(f"{key}={shown} holds {bad!r}, {_a(type(bad).__name__)}, not {_a(elt.__name__)}")
        name = "tuple" if origin is tuple else getattr(base, "__name__", str(base))
        raise ConfigError(f"{key}={shown} is {_a(type(value).__name__)}, not {_a(name)}")


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_overrides(cls: type[T], argv: Sequence[str], base: T | None = None, validate: bool = True) -> T:
    """Build `cls` from `key=value` strings. Unknown keys and bad values raise ConfigError; so does
    the config's own `validate`, unless `validate=False` (a command that first fills the keys not
    typed from a run folder checks them together after that: a typed zoom=2 goes with the run's
    telescoping env, not with the default single one)."""
    tps = field_types(cls)
    not_read, aliases = getattr(cls, "NOT_READ", {}), getattr(cls, "KEY_ALIASES", {})
    values: dict[str, Any] = {}
    for arg in argv:
        if "=" not in arg:
            spelled = f": write {arg.lstrip('-').replace('-', '_')}=<value>" if arg.startswith("--") else ""
            raise ConfigError(f"argument {arg!r} is not key=value{spelled} (try --help for the keys)")
        key, raw = arg.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key in not_read:  # inherited, never read by this command (and not in its --help)
            raise ConfigError(f"{key}={raw} is {not_read[key]}; leave it out")
        if key not in tps and key in aliases:  # another command's name for a key here
            raise ConfigError(f"unknown config key {key!r} for {cls.__name__}: here it is {aliases[key]} "
                              f"({aliases[key]}={raw})")
        if key not in tps and key.lower() in tps:
            raise ConfigError(f"unknown config key {key!r} for {cls.__name__}: keys are lower case "
                              f"({key.lower()}={raw})")
        if key not in tps:
            close = difflib.get_close_matches(key, [k for k in tps if k not in not_read], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; run with --help for the keys"
            raise ConfigError(f"unknown config key {key!r} for {cls.__name__}{hint}")
        value = _coerce(key, raw, tps[key])
        if key in values and values[key] != value:  # a second value would win silently
            raise ConfigError(f"{key} is given twice ({values[key]!r}, then {value!r}); keep the one you mean")
        values[key] = value
    cfg = dataclasses.replace(base, **values) if base is not None else cls(**values)
    check = getattr(cfg, "validate", None)
    if validate and callable(check):
        check()
    return cfg


def _help_order(cls: type) -> list:
    """The fields a class declares first, then each base's in method order: `geospot eval --help`
    opens with model / data / n, not with the env options every command inherits. Fields the class
    never reads (its NOT_READ: RL's reward keys in eval, say) are left out."""
    not_read = getattr(cls, "NOT_READ", {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in not_read}
    order: list[str] = []
    for klass in cls.__mro__:
        order += [n for n in klass.__dict__.get("__annotations__", {}) if n in fields and n not in order]
    return [fields[n] for n in order] + [f for n, f in fields.items() if n not in order]


def help_text(cls: type, title: str = "") -> str:
    lines = [title] if title else []
    lines.append("Keys (key=value):")
    tps = field_types(cls)
    for f in _help_order(cls):
        tp = tps[f.name]
        base, _ = _base_type(tp)
        if typing.get_origin(base) is typing.Literal:
            tname = "|".join(map(str, typing.get_args(base)))
        else:
            tname = getattr(base, "__name__", str(base).replace("typing.", ""))
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        # a default holding newlines (a prompt) on one line, as the markdown table shows it
        lines.append(f"  {f.name}={str(default).replace(chr(10), chr(92) + 'n')}  [{tname}]")
        h = f.metadata.get("help", "")
        if h:
            lines.append(f"      {h}")
    return "\n".join(lines)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def markdown_table(cls: type) -> str:
    """The configuration reference rendered for the README (a test checks it is current)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for f in _help_order(cls):  # in --help's order: the command's own keys first
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        h = f.metadata.get("help", "").replace("|", "\\|").replace("\n", " ")
        # a default holding newlines (a prompt) is shown with \n, as the other prompts are: a real
        # newline would end the table row
        shown = str(default).replace("\n", "\\n").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{shown}` | {h} |")
    return "\n".join(rows)


def require(cfg: Any, ok: bool, key: str, message: str) -> None:
    """A config check: when not `ok`, one sentence naming the key, its value and the fix:
    `key=<value> <message>` (`key: <message>` when `key` names several fields, e.g. `a/b`)."""
    if not ok:
        if hasattr(cfg, key):
            raise ConfigError(f"{key}={getattr(cfg, key)!r} {message}")
        raise ConfigError(f"{key}: {message}")


class FlagParser(argparse.ArgumentParser):
    """argparse for the commands that take --flags (score, data, dashboard, demo, model): a `key=value`
    typed as the training commands take them is said as the flag to type, not as argparse's "unrecognized
    arguments" or a required flag missing. `key_values`: keys a command reads itself (data pack's out=)."""

    def __init__(self, *args: Any, key_values: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_values = set(key_values)

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        flags = {a.dest: s for a in self._actions for s in a.option_strings if s.startswith("--")
                 and a.dest not in self.key_values}
        for arg in args:
            key, eq, value = arg.partition("=")
            if eq and not arg.startswith("-") and key.replace("-", "_") in flags and not os.path.exists(arg):
                self.error(f"{arg}: this command takes {flags[key.replace('-', '_')]} {value or '<value>'}")
        return super().parse_known_args(args, namespace)
