"""Progress of long phases (trials of a sweep, epochs of a re-training) for people watching.

On a terminal a tqdm bar counts the steps and the per-step lines are written above it; when
the stream is not a terminal (CI logs, `nohup`, a pipe) the same lines are printed plainly
and flushed, one per step, so a log shows how far a run got.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (False for closed or odd streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """`total` steps (None: unknown) named `unit`, shown on `stream` (default: stdout)."""

    def __init__(
        self, total: int | None, desc: str, unit: str, stream: TextIO | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.bar: Any = None
        if is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

    def line(self, text: str) -> None:
        """A line of text: above the bar on a terminal, printed and flushed otherwise."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, text: str | None = None, steps: int = 1) -> None:
        """`steps` more done, each announced by `text` when given."""
        if text is not None:
            self.line(text)
        if self.bar is not None and steps:
            self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
