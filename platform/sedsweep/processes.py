"""Process signals: a terminated run ends like an interrupted one (and says so in MLflow)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Collection, Iterator
from typing import Any, ClassVar


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


@contextlib.contextmanager
def interrupt_held(what: str) -> Iterator[None]:
    """A Ctrl-C (or a SIGTERM that `terminate_as_interrupt` forwards) inside is held, and
    acted on as soon as the block ends: by the handler that was in place, or as a
    KeyboardInterrupt. A second one inside raises KeyboardInterrupt at once (a block that
    hangs, such as joining an unreachable cluster, can still be stopped).

    For `ray.init`: a KeyboardInterrupt raised in the middle of it can crash the process while
    Ray's core worker is being set up. Only the main thread can install handlers; elsewhere,
    and in a process that ignores SIGINT (a background job of a non-interactive shell),
    this does nothing.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # started ignoring it (`cmd &`)
    ):
        yield
        return
    held: list[Any] = []

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(frame)
        print(f"interrupted: stopping after {what} (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)  # fmt: skip

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:  # the block ended normally: an exception from it would have passed through
        if callable(previous):
            previous(signal.SIGINT, held[0])
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


# -- what a killed driver leaves behind ----------------------------------------------------------
# Ray's per-node agents (DashboardAgent, RuntimeEnvAgent) fate-share with their raylet by
# polling it and then reporting its death to the GCS; when a driver that started a local
# cluster is SIGKILLed, raylet and GCS die with it and the agents wait on the dead GCS for
# minutes; a worker the raylet forked just before (not yet registered) retries it for 25-60 s.
# A reaper, a small child process of the driver, ends exactly the processes the driver's Ray
# started once the driver is gone, found two ways, never by name:
# - by a token in their environment: `ray.init` runs with it set, Ray's processes inherit it
#   and the raylet passes it on to the workers it forks later, even after the driver died;
# - by descent, polled while the driver lives: a Python process that sets its title (every
#   Ray worker and agent: "ray::IDLE") overwrites part of its initial environment, the token
#   included at times, but by then it has run for a second (interpreter start, `import ray`),
#   so a poll has seen it as a child of a process that carries the token.
# Each is checked by PID and start time before it is signalled (a reused PID never matches).
OWNER_VAR = "SEDSWEEP_RAY_OWNER"  # the token of the driver whose Ray started a process
REAP_GRACE_S = 5.0  # how long the processes get to end by themselves before SIGTERM
REAP_KILL_S = 3.0  # how long after SIGTERM before SIGKILL
REAP_POLL_S = 0.5  # how often a reaper looks for new processes (a /proc scan: ~2 ms of CPU)
REAP_ROUNDS = 3  # scans after signalling: a process forked meanwhile is found by the next

Process = tuple[int, int]  # (pid, start time in clock ticks since boot)


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


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every live process."""
    import os

    names = os.listdir("/proc") if os.path.isdir("/proc") else []
    table = {}
    for name in names:
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            table[int(name)] = stat
    return table


def _closure(roots: set[int], table: dict[int, tuple[int, int]]) -> set[Process]:
    """`roots` and all their live descendants, as (pid, start time)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return {(pid, table[pid][1]) for pid in found}


def descendants(pid: int) -> set[Process]:
    """Every live descendant of `pid` as (pid, start time): a PID reused later never matches."""
    table = _table()
    return _closure({child for child, (parent, _) in table.items() if parent == pid}, table)


def _carries(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return entry in handle.read().split(b"\0")
    except OSError:  # gone, or another user's
        return False


def owned(token: str, known: Collection[Process] = ()) -> set[Process]:
    """The live processes of the Ray started under `token`: those whose initial environment
    carries `OWNER_VAR=token`, those of `known` still running, and all their descendants
    (this process excepted)."""
    import os

    table = _table()
    table.pop(os.getpid(), None)
    entry = f"{OWNER_VAR}={token}".encode()
    known = set(known)
    roots = {pid for pid, (_, start) in table.items() if (pid, start) in known}
    roots |= {pid for pid in table if pid not in roots and _carries(pid, entry)}
    return _closure(roots, table)


def alive(processes: set[Process]) -> set[Process]:
    """Those of `processes` still running (same PID and start time)."""
    return {(pid, start) for pid, start in processes if (_stat(pid) or (0, -1))[1] == start}


class Reaper:
    """Ends the processes of the Ray started under `token` (see `owned`) once this process
    has exited.

    `start()` runs `python -m sedsweep.processes TOKEN` as a child in its own process group (a
    terminal's Ctrl-C is not its business) reading a pipe from us: end of file means we have
    exited, normally or not. Until then it records the processes every `REAP_POLL_S`; after,
    it gives them `REAP_GRACE_S` to end on their own (after a normal exit Ray has already
    stopped them), then SIGTERM, then SIGKILL, and scans again for any forked meanwhile. It
    leaves early once such processes have run and none is left (this process shut its Ray
    down and goes on).
    """

    running: ClassVar[list[Reaper]] = []  # kept for the process's life: their pipes stay open

    def __init__(self, token: str) -> None:
        self.token = token
        self.proc: Any = None

    def start(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sedsweep.processes", self.token],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, process_group=0,
        )  # fmt: skip
        Reaper.running.append(self)


@contextlib.contextmanager
def reaped_if_killed() -> Iterator[str]:
    """Processes started inside (a local `ray.init`), and every process they start later (the
    raylet's workers), are ended by a `Reaper` if they outlive this process; yields the token.

    The reaper starts first, so it does not carry the token itself; the token is in
    `os.environ` only while inside, so what this process starts afterwards is not marked.
    """
    import os
    import secrets

    token = secrets.token_hex(8)
    Reaper(token).start()
    previous = os.environ.get(OWNER_VAR)
    os.environ[OWNER_VAR] = token
    try:
        yield token
    finally:
        if previous is None:
            os.environ.pop(OWNER_VAR, None)
        else:
            os.environ[OWNER_VAR] = previous


def reap(token: str, known: set[Process], grace: float = REAP_GRACE_S) -> set[Process]:
    """Wait up to `grace` s for the processes of `owned(token, known)` to end, then SIGTERM
    and SIGKILL what is left, scanning again for processes forked meanwhile; returns those
    it signalled."""
    import os
    import time

    known = set(known)
    deadline = time.monotonic() + grace
    while (found := owned(token, known)) and time.monotonic() < deadline:
        known |= found
        time.sleep(0.2)
    signalled: set[Process] = set()
    for _ in range(REAP_ROUNDS):
        left = owned(token, known)
        if not left:
            break
        known |= left
        signalled |= left
        for sig, wait in ((signal.SIGTERM, REAP_KILL_S), (signal.SIGKILL, 1.0)):
            for pid, _ in alive(left):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while alive(left) and time.monotonic() < deadline:
                time.sleep(0.1)
    return signalled


def main(argv: list[str] | None = None) -> int:
    """The reaper child: record the token's processes until the pipe from the driver closes,
    then `reap`; exit early once they have run and all ended (the driver shut Ray down and
    goes on)."""
    import select
    import sys

    (token,) = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    known: set[Process] = set()
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], REAP_POLL_S)
        if readable and not sys.stdin.buffer.read1(4096):
            break  # the driver never writes: end of file means it has exited
        running = owned(token, known)
        if known and not running:
            return 0
        known |= running
    left = reap(token, known)
    if left:
        print(f"sedsweep: ended {len(left)} Ray process(es) the exited driver left running",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
