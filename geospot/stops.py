"""How a command is asked to stop. Ctrl-C raises KeyboardInterrupt; SIGTERM (`timeout`, a scheduler,
`kill`) raises Terminated, a KeyboardInterrupt, so a command's Ctrl-C path (keep what is done, say
where, exit) serves both, and says which it was. Without a handler SIGTERM ended the process at
once, with nothing said."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from geospot import distributed


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as on Ctrl-C (a training run: status `stopped`, the resume line)."""


def how(exc: BaseException) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"


def exit_code(exc: BaseException) -> int:
    """128 + the signal, as a shell reports a process the signal ended."""
    return 143 if isinstance(exc, Terminated) else 130


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block (main thread only: elsewhere signals are not ours; under
    torchrun rank_death's handlers own them)."""
    if threading.current_thread() is not threading.main_thread() or distributed.under_torchrun():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
