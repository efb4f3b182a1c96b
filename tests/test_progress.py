"""Progress of long phases: a bar on a terminal, plain lines in logs (issue 16)."""

from __future__ import annotations

import io
import re

from sedsweep import progress as progress_module
from sedsweep.progress import Progress, is_terminal, phase


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a user's shell does."""

    def isatty(self) -> bool:
        return True


def test_without_a_terminal_each_step_is_one_flushed_line():
    log = io.StringIO()
    with Progress(3, "trials ended", "trial", log) as progress:
        progress.advance("trial t000 finished (6 epochs)")
        progress.advance("trial t001 stopped early by the scheduler after epoch 2")
        progress.advance(steps=1)  # a step without a line adds nothing to a log
    assert log.getvalue().splitlines() == [
        "trial t000 finished (6 epochs)",
        "trial t001 stopped early by the scheduler after epoch 2",
    ]


def test_on_a_terminal_a_bar_counts_the_steps_under_the_lines():
    tty = Terminal()
    with Progress(4, "trials ended", "trial", tty) as progress:
        progress.advance(steps=2)  # trials an earlier execution ended: counted, not announced
        progress.advance("trial t002 finished (6 epochs)")
    text = tty.getvalue()
    assert "trial t002 finished (6 epochs)\n" in text
    assert "trials ended" in text and "3/4" in text  # tqdm's counter, redrawn with \r
    assert "\r" in text


def test_an_unknown_total_still_counts():
    tty = Terminal()
    with Progress(None, "epochs", "epoch", tty) as progress:
        for epoch in range(1, 4):
            progress.advance(f"epoch {epoch}")
    assert "epoch 3\n" in tty.getvalue() and "3epoch" in tty.getvalue().replace(" ", "")


def test_closed_or_odd_streams_are_not_terminals():
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
    assert not is_terminal(object())  # type: ignore[arg-type]
    assert is_terminal(Terminal())


def test_off_a_terminal_counted_steps_print_a_count_line_now_and_then(monkeypatch):
    """Issue 35: the first run said nothing for ~47 s while it extracted features."""
    monkeypatch.setattr(progress_module, "EVERY_S", 0.0)  # every step due, for the test
    log = io.StringIO()
    with Progress(4, "log-mel lowres", "clip", log) as progress:
        progress.advance()
        progress.advance(steps=3)
    first, last = log.getvalue().splitlines()
    assert re.fullmatch(r"log-mel lowres: 1/4 clips \([0-9.]+/s, about \d+ s left\)", first)
    assert last.startswith("log-mel lowres: 4/4 clips (") and last.endswith(", about 0 s left)")
    quiet = io.StringIO()
    with Progress(2, "x", "clip", quiet, enabled=False) as progress:
        progress.advance("a line")
        progress.advance()
    assert quiet.getvalue() == ""


def test_a_phase_is_announced_before_and_timed_after():
    log = io.StringIO()
    with phase("starting a local Ray cluster", log):
        log.write("(inside)\n")
    lines = log.getvalue().splitlines()
    assert lines[:2] == ["starting a local Ray cluster …", "(inside)"]
    assert re.fullmatch(r"starting a local Ray cluster: done in \d+\.\d s", lines[2])
