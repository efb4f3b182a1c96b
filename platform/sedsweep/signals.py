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


# -- what a killed driver leaves behind ----------------------------------------------------------
# Ray's per-node agents (DashboardAgent, RuntimeEnvAgent) fate-share with their raylet by
# polling it and then reporting its death to the GCS; when a driver that started a local
# cluster is SIGKILLed, raylet and GCS die with it and the agents wait on the dead GCS forever.
# A reaper, a small child process of the driver, ends exactly the processes the driver started
# with Ray, by PID and start time (never by name), once the driver is gone.
REAP_GRACE_S = 5.0  # how long the processes get to end by themselves before SIGTERM
REAP_KILL_S = 3.0  # how long after SIGTERM before SIGKILL
REAP_POLL_S = 2.0  # how often a waiting reaper checks whether its processes still run


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc; None if gone
    (or a zombie: dead, waiting for its parent to collect it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> set[tuple[int, int]]:
    """Every live descendant of `pid` as (pid, start time): a PID reused later never matches."""
    import os

    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(name), stat[1]))
    found: set[tuple[int, int]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def alive(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of `processes` still running (same PID and start time)."""
    return {(pid, start) for pid, start in processes if (_stat(pid) or (0, -1))[1] == start}


class Reaper:
    """Ends `processes` (PID, start time) when this process dies, if they outlive it.

    `start()` runs `python -m sedsweep.signals` as a child in its own process group (a
    terminal's Ctrl-C is not its business) reading a pipe from us: end of file means we have
    exited, normally or not. It then gives the processes `REAP_GRACE_S` to end on their own
    (after a normal exit Ray has already stopped them), then SIGTERM, then SIGKILL.
    """

    def __init__(self, processes: set[tuple[int, int]]) -> None:
        self.processes = processes
        self.proc: Any = None

    def start(self) -> None:
        import json
        import subprocess
        import sys

        if not self.processes:
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sedsweep.signals", json.dumps(sorted(self.processes))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, process_group=0,
        )  # fmt: skip


def reap(processes: set[tuple[int, int]], grace: float = REAP_GRACE_S) -> set[tuple[int, int]]:
    """Wait up to `grace` s for `processes` to end, then SIGTERM and SIGKILL what is left;
    returns those that had to be signalled."""
    import os
    import time

    deadline = time.monotonic() + grace
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(processes)
    for sig, wait in ((signal.SIGTERM, REAP_KILL_S), (signal.SIGKILL, 0.0)):
        for pid, _ in alive(left):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive(left) and time.monotonic() < deadline:
            time.sleep(0.1)
    return left


def main(argv: list[str] | None = None) -> int:
    """The reaper child: wait for the pipe from the driver to close, then `reap`; exit early
    once the processes have ended anyway (the driver shut Ray down and goes on)."""
    import json
    import select
    import sys

    args = sys.argv[1:] if argv is None else argv
    processes = {(int(pid), int(start)) for pid, start in json.loads(args[0])}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while alive(processes):
        readable, _, _ = select.select([sys.stdin], [], [], REAP_POLL_S)
        if readable and not sys.stdin.buffer.read1(4096):
            break  # the driver never writes: end of file means it has exited
    else:
        return 0
    left = reap(processes)
    if left:
        print(f"sedsweep: ended {len(left)} Ray process(es) the exited driver left running",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
