"""Progress of long phases (trials of a sweep, epochs of a re-training) for people watching.

On a terminal a tqdm bar counts the steps and the per-step lines are written above it; when
the stream is not a terminal (CI logs, `nohup`, a pipe) the same lines are printed plainly
and flushed, one per step, so a log shows how far a run got.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

EVERY_S = 5.0
"""Off a terminal, a count without per-step lines is printed at most this often."""


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (False for closed or odd streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """`total` steps (None: unknown) named `unit`, shown on `stream` (default: stdout).

    Steps counted without a line of their own (`advance()` with no text) show off a terminal
    as a line every `EVERY_S` seconds: done of total, the rate and the time left."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done, self.started = 0, time.perf_counter()
        self.shown = self.started  # when the last count line was printed
        self.bar: Any = None
        if enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

    def line(self, text: str) -> None:
        """A line of text: above the bar on a terminal, printed and flushed otherwise."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, text: str | None = None, steps: int = 1) -> None:
        """`steps` more done, each announced by `text` when given."""
        self.done += steps
        if text is not None:
            self.line(text)
        if self.bar is not None and steps:
            self.bar.update(steps)
        elif text is None and time.perf_counter() - self.shown >= EVERY_S:
            self.line(self.count())
            self.shown = time.perf_counter()

    def count(self) -> str:
        """ "log-mel x: 120/300 clips (24.0/s, about 8 s left)"."""
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        left = (
            f", about {(self.total - self.done) / rate:.0f} s left"
            if self.total is not None and rate > 0
            else ""
        )
        return f"{self.desc}: {self.done}{of} {self.unit}s ({rate:.1f}/s{left})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def phase(text: str, stream: TextIO | None = None) -> Iterator[None]:
    """A phase that may take a while, announced before it starts ("text …") and timed when it
    ends ("text: done in 4.2 s"), so that no minute passes in silence."""
    stream = stream if stream is not None else sys.stdout
    print(f"{text} …", file=stream, flush=True)
    started = time.perf_counter()
    yield
    print(f"{text}: done in {time.perf_counter() - started:.1f} s", file=stream, flush=True)
