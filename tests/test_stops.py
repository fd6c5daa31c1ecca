"""geospot.stops: SIGTERM inside the dispatcher's block is a Terminated (a KeyboardInterrupt), so a
command's Ctrl-C path answers it; outside the block the old handler is back."""

import os
import signal

import pytest

from geospot.stops import Terminated, exit_code, how, sigterm_stops


def test_sigterm_is_raised_as_terminated_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, sigterm_stops():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5)  # (the handler runs at the next bytecode; this only gives it time)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert (how(caught.value), exit_code(caught.value)) == ("SIGTERM", 143)
    assert (how(KeyboardInterrupt()), exit_code(KeyboardInterrupt())) == ("Ctrl-C", 130)
    assert signal.getsignal(signal.SIGTERM) == before
