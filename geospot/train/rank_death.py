"""A rank that dies ends a torchrun job with one sentence from rank 0 (from the lowest live rank
when rank 0 is the one that died): which rank, the last checkpoint, and the exact command that
resumes the job.

When a rank dies (killed, out of memory, a crash), the others learn it one of two ways: a
collective fails (gloo / NCCL: the peer's connection closed), or torchrun, which saw the dead
process, sends them SIGTERM. Either way rank 0 says what happened and exits at once (no
traceback: the collectives would only fail again); the other ranks exit silently. The run
folder's checkpoints are written whole or not at all (runs/checkpoint.py), so the command
printed continues from the last one.

`watch(d, log_dir)` (every rank, once the run folder is known) records each rank's host and
process id, so rank 0 can tell which of its machine's ranks is gone; `handle(exc)` is the
loops' `main()`s' last word on an exception."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch.distributed as dist

from geospot.distributed import Dist
from geospot.runs.checkpoint import latest_checkpoint
from geospot.stops import Terminated

_WATCH: dict = {}  # rank, peers [(host, pid)], log_dir, reported, defer, pending



GRACE_S = 5.0  # how long a rank that saw a collective fail waits for torchrun's SIGTERM


def watch(d: Dist, log_dir: str | os.PathLike, defer=None, pending=None) -> None:
    """Record every rank's (host, pid) and the run folder (a collective: every rank calls it);
    rank 0 answers torchrun's SIGTERM with the message. `defer(exc)` keeps a first Ctrl-C / SIGTERM
    for the end of the step being trained (False outside the loop: the job stops at once), and
    `pending()` says whether one is kept (train/command.py's stop_between_steps)."""
    if not d.active:
        return
    _WATCH.update(defer=defer, pending=pending)
    _stopped_marker(os.getpid()).unlink(missing_ok=True)  # an earlier process's with this pid is not ours
    _clear_old_markers()
    _WATCH.update(rank=d.rank, peers=d.gather((socket.gethostname(), os.getpid())), log_dir=str(log_dir))
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C reaches every rank as SIGINT (torchrun passes it on; a second Ctrl-C as SIGTERM): as a
    # KeyboardInterrupt each rank printed its traceback and none the resume command
    signal.signal(signal.SIGINT, _on_sigint)


MARKER_MAX_AGE_S = 3600.0  # a marker is read within seconds of its job's end; older ones are left-overs


def _clear_old_markers() -> None:
    """Markers of jobs that ended long ago on this machine (the last rank to end leaves its own)."""
    now = time.time()
    for old in Path(tempfile.gettempdir()).glob(f"geospot-sigterm-{socket.gethostname()}-*"):
        try:
            if now - old.stat().st_mtime > MARKER_MAX_AGE_S:
                old.unlink()
        except OSError:
            continue


def _alive(pid: int) -> bool:
    """False for a process that is gone or a zombie (dead, not yet reaped by torchrun)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stopped_marker(pid: int) -> Path:
    """The file a rank leaves when torchrun's SIGTERM stops it: it did not die, it was stopped."""
    return Path(tempfile.gettempdir()) / f"geospot-sigterm-{socket.gethostname()}-{pid}"


def _peers_here() -> list[tuple[int, int]]:
    """(rank, pid) of the other ranks on this machine (other machines' cannot be seen from here)."""
    host = socket.gethostname()
    return [(r, pid) for r, (h, pid) in enumerate(_WATCH.get("peers", [])) if h == host and r != _WATCH.get("rank")]


def stopped_ranks() -> list[int]:
    """The ranks on this machine that torchrun's SIGTERM stopped (the job was interrupted, or
    torchrun is stopping every rank because one died)."""
    return [r for r, pid in _peers_here() if _stopped_marker(pid).exists()]


def dead_ranks() -> list[int]:
    """The ranks on this machine whose process is gone without being stopped by torchrun: a
    rank that a SIGTERM stopped first (Ctrl-C, `timeout`, a scheduler) is not called dead.
    Which are gone is read first, their markers after: a stopped rank writes its marker before it
    exits, so one seen gone has its marker by then (read the other way round, a rank that wrote
    it and exited between the two reads was called dead)."""
    gone = [(r, pid) for r, pid in _peers_here() if not _alive(pid)]
    return [r for r, pid in gone if not _stopped_marker(pid).exists()]


def resume_command(argv: list[str], module: str, env: dict, log_dir: str = "") -> str:
    """The torchrun command that continues this job: the same module and keys, resuming (`log_dir`:
    the run folder, named when the keys did not name it: a job given no log_path made its own)."""
    local, world = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1"))), int(env.get("WORLD_SIZE", "1"))
    if world > local:
        launch = (f"torchrun --nproc_per_node={local} --nnodes={world // local} --rdzv-backend=c10d "
                  "--rdzv-endpoint=HOST:PORT")
    else:  # one machine: --standalone finds a free port (the default 29500 may be another job's by then)
        launch = f"torchrun --standalone --nproc_per_node={local}"
    # the folder absolute, as one process's stopped line writes it: the command works from any folder
    keys = [f"log_path={os.path.abspath(a[len('log_path='):])}" if a.startswith("log_path=") else a
            for a in argv if not a.startswith("behavior_if_log_dir_exists=")]
    if log_dir and not any(a.startswith("log_path=") for a in argv):
        keys.append(f"log_path={os.path.abspath(log_dir)}")
    return " ".join([launch, "-m", module, *map(shlex.quote, keys), "behavior_if_log_dir_exists=resume"])


def message(dead: list[int], log_dir: str, command: str, signalled: bool = False, interrupted: bool = False,
            one_machine: bool = False) -> str:
    if dead:
        what = f"{'rank' if len(dead) == 1 else 'ranks'} {', '.join(map(str, dead))} died, so the job stopped"
    elif interrupted:
        what = "the job was interrupted (Ctrl-C)"
    elif signalled and one_machine:  # every rank is here and none died: the job was stopped (timeout, a scheduler)
        what = "torchrun stopped the job (it was interrupted: `timeout`, a scheduler or kill)"
    elif signalled:
        what = "torchrun stopped the job (a rank on another machine died, or the job was interrupted)"
    else:
        what = "another rank died, so the job stopped"
    ckpt = latest_checkpoint(log_dir) if log_dir else None
    last = f"the last checkpoint is step {ckpt.name}" if ckpt else "no checkpoint was saved yet (it restarts at step 0)"
    return f"{what}; {last} in {log_dir}; resume with: {command}"


def _touch_marker() -> None:
    try:
        _stopped_marker(os.getpid()).touch()
    except OSError:
        pass


def _main_module() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name if spec is not None else "geospot"
    return name.removesuffix(".__main__")


def speaker(rank: int, dead: list[int], here: list[int]) -> bool:
    """Whether `rank` says the job's sentence: rank 0, or, where rank 0 is one of this machine's dead
    ranks, the lowest rank of this machine still alive (`here`: this machine's other ranks)."""
    if rank == 0:
        return True
    return 0 in dead and rank == min([rank, *(r for r in here if r not in dead)])


def _report_and_exit(code: int, signalled: bool = False, interrupted: bool = False) -> None:
    rank = _WATCH.get("rank", -1)
    if rank == 0:  # rank 0 ends on purpose: its peers must not take it for dead and speak for it
        _touch_marker()
    if not _speak_if_mine(signalled, interrupted) and signalled:
        _touch_marker()  # tell rank 0 this rank was stopped, not killed (dead_ranks)
    if not signalled:
        # give torchrun a moment to see the dead rank and stop us (SIGTERM, handled here): its summary
        # then names that rank as the failure, not this process's exit. Meanwhile a rank other than 0
        # looks again: a rank 0 killed inside a collective closes its sockets before the kernel shows
        # it gone, so the first look can find it still there
        deadline = time.time() + GRACE_S
        while time.time() < deadline:
            time.sleep(0.05)
            if rank:
                _speak_if_mine(signalled, interrupted)
    os._exit(code)  # no teardown: the process group is broken, and a destroy could wait on the dead rank


def _speak_if_mine(signalled: bool, interrupted: bool) -> bool:
    """Say the job's one line if this rank is the speaker (speaker()) and has not said it yet."""
    if _WATCH.get("reported"):
        return False
    rank, dead = _WATCH.get("rank", -1), dead_ranks()
    if not speaker(rank, dead, [r for r, _ in _peers_here()]):
        return False
    command = resume_command(sys.argv[1:], _main_module(), dict(os.environ), _WATCH.get("log_dir", ""))
    stopped = stopped_ranks()
    env = os.environ
    one_machine = env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE")) == env.get("WORLD_SIZE")
    text = message(dead, _WATCH.get("log_dir", ""), command, signalled or bool(stopped), interrupted, one_machine)
    print(f"geospot: {text}", file=sys.stderr, flush=True)
    for _, pid in _peers_here():  # the markers have been read
        _stopped_marker(pid).unlink(missing_ok=True)
    _WATCH["reported"] = True
    return True


def _on_sigterm(_signum, _frame) -> None:
    if _WATCH.get("stopping"):  # every rank agreed to stop and is closing its run: let it finish
        return
    kept = _WATCH["pending"]() if _WATCH.get("pending") else None
    if isinstance(kept, Terminated) or (kept is None and _WATCH.get("defer") and _WATCH["defer"](Terminated())):
        return  # kept for the step's end (a scheduler may signal the ranks and torchrun both)
    # after a kept Ctrl-C, torchrun's SIGTERM is a second Ctrl-C's (torchrun passes the first on as SIGINT)
    _report_and_exit(130 if kept is not None else 143, signalled=True, interrupted=kept is not None)


def stopping() -> None:
    """Every rank agreed to stop after this step (lifecycle.Run.stop_asked): a signal now lets the
    run close its writer and folder."""
    _WATCH["stopping"] = True


def _on_sigint(_signum, _frame) -> None:
    if _WATCH.get("stopping"):
        return
    if _WATCH.get("defer") and _WATCH["defer"](KeyboardInterrupt()):
        if _WATCH.get("rank") == 0:
            print("geospot job: Ctrl-C: every rank stops once this step is trained and saved (Ctrl-C again stops "
                  "at once, losing it)", file=sys.stderr, flush=True)
        return
    _report_and_exit(130, signalled=True, interrupted=True)


def say_stopped(interrupted: bool) -> None:
    """Every rank saved the step a Ctrl-C / SIGTERM came in (lifecycle.Run.stop_asked) and ends: each
    leaves its marker (stopped, not killed, for rank 0's look), rank 0 says the job's one line."""
    _touch_marker()
    _speak_if_mine(True, interrupted)


def handle(exc: BaseException) -> None:
    """Under torchrun, an exception from a broken collective or with a dead peer ends this process
    with the message (rank 0) or silently (the others); anything else returns (the caller raises)."""
    if not _WATCH:
        return
    broken = isinstance(exc, getattr(dist, "DistBackendError", ())) or any(
        s in str(exc) for s in ("Connection closed by peer", "Connection reset by peer", "NCCL", "gloo"))
    if broken or dead_ranks():
        _report_and_exit(1)
