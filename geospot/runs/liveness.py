"""Is a run that says `running` still running? The run store records who wrote `running`
(pid, the pid's start time, host) and a heartbeat; these pure functions judge that record.

Same host: the pid must exist with the same start time (a pid the kernel reused for another
process does not count). Another host (a runs folder on a shared disk): the heartbeat must be
younger than STALE_S. A run killed without a word (SIGKILL, OOM, power loss) thus reads
`stopped` at once on its own machine and within STALE_S elsewhere."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

HEARTBEAT_S = 5.0  # how often a running writer stamps meta.heartbeat
STALE_S = 30.0  # a heartbeat older than this (seen from another host) means the writer is gone


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc/<pid>/stat field 22), so a
    pid the kernel reused for another process is not mistaken for the writer; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def writer_alive(meta: dict[str, str], now: float | None = None, host: str | None = None) -> bool | None:
    """Is the process that wrote `running` still there? True / False, or None when the store
    records no writer (a store from before liveness was recorded)."""
    if "pid" not in meta:
        return None
    if meta.get("host") == (host or socket.gethostname()):
        pid = int(meta["pid"])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: it exists
        start = process_start(pid)
        return start is None or start == meta.get("pid_start")
    beat = float(meta.get("heartbeat", 0.0))
    return (now if now is not None else time.time()) - beat < STALE_S


def effective_status(stored: str, meta: dict[str, str]) -> str:
    """`running` only while the writer lives; a writer gone without a word is `stopped`."""
    if stored == "running" and writer_alive(meta) is False:
        return "stopped"
    return stored
