"""`geospot <command> ...` — every subcommand lives in the module that does the work;
this file only dispatches (lazily, so `geospot --help` is instant)."""

from __future__ import annotations

import importlib
import os
import sys

from geospot.stops import exit_code, how, sigterm_stops

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("geospot.demo", "main",
             "tiny model + synthetic world: SFT, then GRPO (single-turn, a quarter of each batch telescoping)"),
    "sft": ("geospot.train.sft", "main", "supervised warm-start (key=value config; --help lists keys)"),
    "rl": ("geospot.train.rl", "main", "GRPO: env_type=single / telescoping / hierarchical / geohash (key=value)"),
    "eval": ("geospot.eval.cli", "eval_main", "evaluate a model on a data spec; --compare runs"),
    "predict": ("geospot.eval.predict_cli", "predict_main", "predict coordinates for images"),
    "export": ("geospot.eval.export", "export_main", "export a checkpoint: LoRA adapter, merged or full weights"),
    "score": ("geospot.geo.cli", "score_main", "score a predictions CSV against a truth CSV"),
    "data": ("geospot.data.cli", "main", "inspect or pack a data spec"),
    "model": ("geospot.models.cli", "main", "build tiny offline Qwen-VL models"),
    "dashboard": ("geospot.dashboard.cli", "main", "serve the live dashboard for a runs folder"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: geospot <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {h}" for name, (_, _, h) in COMMANDS.items()]
    lines += ["", "Run `geospot <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `geospot help | head -1`: the reader left, nothing is wrong
        # (stdout to /dev/null: Python's own flush at exit would raise the same error again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a terminal that is not UTF-8: an em dash in a help text is no crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if len(argv) >= 2 and argv[0] == "help":  # `geospot help sft` is `geospot sft --help`
        argv = [argv[1], "--help"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("--version", "version"):
        from geospot import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = [name.lower()] if name.lower() in COMMANDS else difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean `geospot {close[0]}`?" if close else ""
        print(f"geospot: unknown command {name!r}.{hint} Run `geospot --help` for the list.", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        # SIGTERM stops a command as Ctrl-C does (sft / rl put their own handlers inside: the step is saved)
        with sigterm_stops():
            code = int(getattr(importlib.import_module(module), func)(rest) or 0)
    except KeyboardInterrupt as e:  # a command that says nothing of its own (sft / rl / eval / predict do)
        print(str(e) or f"geospot {name}: stopped ({how(e)})", file=sys.stderr)
        code = exit_code(e)
    if code in (130, 143):  # stopped by Ctrl-C / SIGTERM, its message printed: leave now. A Ctrl-C inside
        sys.stdout.flush()  # transformers' model load left its loader thread pool waiting, and the interpreter's
        sys.stderr.flush()  # exit then waited on it for ever (seen once in a walk); the run's files are closed
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
