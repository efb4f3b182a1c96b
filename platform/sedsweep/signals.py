"""Process signals: a terminated run ends like an interrupted one (and says so in MLflow)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM does what SIGINT does at that moment.

    Ray Tune's SIGINT handler stops a sweep gracefully (trials are checkpointed and `fit()`
    returns); without it SIGINT raises KeyboardInterrupt, which `sedsweep train` turns into a
    KILLED run. A plain SIGTERM would end the process before either could happen. Only the main
    thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
