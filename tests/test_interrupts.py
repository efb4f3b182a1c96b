"""A Ctrl-C while Ray starts is held until `ray.init` returns, then acted on (issue 35)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from sedsweep.processes import interrupt_held, terminate_as_interrupt

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers are installed by the main thread only",
)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """SIGINT as a terminal's command has it (a test run in the background ignores it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def press(signum: int = signal.SIGINT) -> None:
    """Send a signal to this process and let its handler run (the next bytecode does)."""
    os.kill(os.getpid(), signum)
    for _ in range(1000):  # a handler runs between bytecodes of the main thread
        pass


def test_a_ctrl_c_inside_is_held_and_raised_when_the_block_ends(capsys):
    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupt_held("starting a local Ray cluster"):
        press()
        reached.append("the rest of the block ran")
    assert reached == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is before
    err = capsys.readouterr().err
    assert "interrupted: stopping after starting a local Ray cluster (Ctrl-C again" in err


def test_a_second_ctrl_c_stops_the_block_at_once():
    reached = []
    held = interrupt_held("joining the Ray cluster at 10.0.0.1:6379")
    with pytest.raises(KeyboardInterrupt), held:
        press()
        press()
        reached.append("not reached")
    assert reached == []


def test_a_sigterm_forwarded_as_ctrl_c_is_held_and_the_handler_in_place_gets_it():
    got = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        with terminate_as_interrupt(), interrupt_held("starting a local Ray cluster"):
            press(signal.SIGTERM)
            assert got == []  # held while inside
        assert got == [signal.SIGINT]  # Tune's handler, say, gets it afterwards
    finally:
        signal.signal(signal.SIGINT, previous)


def test_nothing_is_held_when_no_signal_came_or_the_block_raised():
    with interrupt_held("starting a local Ray cluster"):
        pass
    with pytest.raises(ValueError), interrupt_held("starting a local Ray cluster"):
        press()
        raise ValueError("its own error passes through; the held Ctrl-C is dropped")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it(capsys):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # `sedsweep sweep ... &` from a script
    with interrupt_held("starting a local Ray cluster"):
        press()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert capsys.readouterr().err == ""  # nothing promised
