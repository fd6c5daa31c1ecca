"""A training command's life outside its loop, the same for `geospot sft` and `geospot rl`: its help,
a wrong key answered in one sentence (exit 2), Ctrl-C and SIGTERM answered by saving the step being
trained and saying the line that resumes it (exit 130 / 143), a dead rank under torchrun answered
once for the job, and the done line."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geospot import distributed
from geospot.config import ConfigError, help_text, parse_overrides
from geospot.eval.run_defaults import given_keys
from geospot.runs.checkpoint import latest_checkpoint
from geospot.train import rank_death
from geospot.train.resume import resume_config

STOPPED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT), as a shell reports it
TERMINATED = 143  # ... and by SIGTERM (128 + 15): `timeout`, `kill`, a job scheduler's stop


Terminated = rank_death.Terminated  # SIGTERM: the run stops as on Ctrl-C (status `stopped`, the resume line)
# what stops a run once its step is saved: Ctrl-C, SIGTERM, and SIGHUP (the terminal closed), where the OS has it
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _Stop:
    """A stop asked for while the loop runs: the exception to raise once the step is saved."""

    stepping = False  # inside stop_between_steps(): a first signal waits for the step's end
    asked: BaseException | None = None


_STOP = _Stop()


def stop_signals(command: str) -> Callable[[], None]:
    """In one process (main thread), Ctrl-C and SIGTERM (`timeout`, `kill`, a scheduler) while the loop
    runs finish the step, save it as a checkpoint and stop (the steps since the last `save_every` were
    lost); before the loop, or asked twice, they stop at once. Returns what puts the old handlers back.
    Under torchrun, rank_death's handlers keep the stop here the same way (defer_stop), and the ranks
    agree on the step (lifecycle.Run.stop_asked)."""
    if distributed.under_torchrun() or threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, _frame):
        if signum == getattr(signal, "SIGHUP", None):
            _terminal_gone()
        how = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}.get(signum, "SIGHUP")
        exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(how)
        if not _STOP.stepping or _STOP.asked is not None:
            raise exc
        _STOP.asked = exc
        try:
            print(f"geospot {command}: {how}: stopping once this step is trained and saved ({how} again stops at "
                  "once, losing it)", file=sys.stderr, flush=True)
        except OSError:
            pass

    # (SIGHUP ignored already -- `nohup geospot …` -- stays ignored: that run is meant to outlive its terminal)
    old = {s: signal.signal(s, stop) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}

    def restore() -> None:
        for s, handler in old.items():
            signal.signal(s, handler)

    return restore


def _terminal_gone() -> None:
    """SIGHUP: the terminal closed (an ssh drop). Its stdout / stderr would fail every write from now
    on (EIO), so they go to /dev/null: the step is saved as on SIGTERM, not lost to a failed print."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        if os.isatty(fd):
            os.dup2(devnull, fd)
    os.close(devnull)


def _ignore_stops() -> None:
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def stop_between_steps() -> Iterator[None]:
    """Around a loop's steps: a first Ctrl-C / SIGTERM is kept for the step's end (stop_asked)."""
    _STOP.stepping, _STOP.asked = True, None
    try:
        yield
    finally:
        _STOP.stepping, _STOP.asked = False, None


def stop_asked() -> BaseException | None:
    """The stop a signal asked for during this step (raise it once the step is saved), or None."""
    return _STOP.asked


def defer_stop(exc: BaseException) -> bool:
    """Under torchrun (rank_death's handlers): keep a first stop for the step's end, as one process does;
    False outside the loop's steps or when one is kept already (the job then stops at once)."""
    if not _STOP.stepping or _STOP.asked is not None:
        return False
    _STOP.asked = exc
    return True


def stopped_line(command: str, log_path: str, how: str = "Ctrl-C") -> str:
    """What `geospot sft|rl` says when Ctrl-C or SIGTERM (`how`) stops it in one process (under
    torchrun, rank_death speaks): where its last checkpoint is and the command that resumes it,
    instead of a traceback."""
    head = f"geospot {command}: stopped ({how})"
    folder = Path(log_path) if log_path else None
    ckpt = latest_checkpoint(folder) if folder is not None and folder.is_dir() else None
    if ckpt is not None:
        # every key not typed is the run's own (train/resume.py), and the folder is named absolute:
        # the line works as printed, from any folder
        return (f"{head}; the last checkpoint is step {ckpt.name} in {log_path}; resume with: "
                f"geospot {command} {shlex.quote('log_path=' + str(folder.resolve()))} "
                "behavior_if_log_dir_exists=resume")
    if folder is not None and folder.is_dir():
        return f"{head} before its first checkpoint; {log_path} holds no weights: start again with " \
               "behavior_if_log_dir_exists=delete"
    return f"{head} before training began; nothing was kept"


def settle(command: str, cfg: Any, given: set[str], prepare: Callable[[Any, set[str], set[str]], Any]) -> Any:
    """The config a run trains with, checked: the keys not `given` are a resumed run's own
    (train/resume.py), then `prepare(cfg, given, keys taken from the resumed run)` settles the rest
    (a start run's model and keys, the run folder's name). The command line and geospot.api share it."""
    if (cfg.log_path or "").startswith("~"):  # quoted, the shell left it: the home folder, not a folder named ~
        cfg = dataclasses.replace(cfg, log_path=os.path.expanduser(cfg.log_path))
    cfg, resumed = resume_config(cfg, given, command)
    cfg = prepare(cfg, given, resumed)
    getattr(cfg, "validate", lambda: None)()
    return cfg


def run_command(command: str, config_cls: type, title: str, argv: Sequence[str] | None,
                prepare: Callable[[Any, set[str], set[str]], Any], train: Callable[[Any], Any]) -> int:
    """`geospot <command> key=value ...`: parse the keys into `config_cls`, `settle` the ones not typed,
    then `train(cfg)`, whose result says the done line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text(config_cls, title))
        return 0
    log_path = ""  # known once the keys are parsed: where a Ctrl-C's message looks for checkpoints
    stopped = None  # a torchrun job's exit code once every rank saved the step a stop came in
    restore = stop_signals(command)  # Ctrl-C / SIGTERM: the step is finished and saved, then the run stops
    try:
        cfg = settle(command, parse_overrides(config_cls, argv, validate=False), given_keys(argv), prepare)
        log_path = cfg.log_path or ""
        result = train(cfg)
    except (ConfigError, distributed.JoinError) as e:
        if distributed.speaks():  # under torchrun every rank found it: rank 0 says it
            print(f"geospot {command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _ignore_stops()  # a second Ctrl-C landing while it says so and restores the handlers: no traceback
        sigterm = isinstance(e, Terminated)
        if distributed.under_torchrun():  # every rank saved the step (lifecycle.Run.stop_asked): rank 0 says so
            rank_death.say_stopped(interrupted=not sigterm)
            stopped = TERMINATED if sigterm else STOPPED
        else:
            how = (e.args[0] if e.args else "SIGTERM") if sigterm else "Ctrl-C"
            print(stopped_line(command, log_path, how), file=sys.stderr)
            return TERMINATED if sigterm else STOPPED
    except Exception as e:
        rank_death.handle(e)  # under torchrun, a dead rank: rank 0's one sentence, no traceback
        raise
    finally:
        restore()
        distributed.shutdown()
    if stopped is not None:
        return distributed.finish(stopped)
    if distributed.speaks():
        print(result.done_line(), file=sys.stderr)
    return distributed.finish(0)
