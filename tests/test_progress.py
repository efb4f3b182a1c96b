"""Progress of long phases: a bar on a terminal, plain lines in logs (issue 16)."""

from __future__ import annotations

import io

from sedsweep.progress import Progress, is_terminal


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
