"""Debris of a SIGKILLed process (issue 15 F17): temporary directories of atomic writes, and
processes a killed driver started that would outlive it. Real processes, killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sedsweep.fsio import atomic_dir, atomic_file
from sedsweep.processes import alive


def killed_inside(code: str, cwd: Path) -> None:
    """Run `code` in a fresh interpreter that SIGKILLs itself where `code` says KILL."""
    script = "import os, signal\nfrom sedsweep.fsio import atomic_dir, atomic_file\n" + code
    script = script.replace("KILL", "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd)
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_writers_temporary_directory_is_cleared_by_the_next_writer(tmp_path):
    killed_inside("with atomic_dir('corpus') as tmp:\n    (tmp / 'x').write_text('x')\n    KILL",
                  tmp_path)  # fmt: skip
    killed_inside("with atomic_file('clips.csv') as f:\n    f.write('half')\n    KILL", tmp_path)
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert len(stale) == 2 and all(n.endswith(".tmp") for n in stale), stale
    ours = tmp_path / f".corpus.{os.getpid()}-live.tmp"  # a writer still running: kept
    ours.mkdir()
    with atomic_dir(tmp_path / "corpus") as tmp:
        (tmp / "y").write_text("y")
    with atomic_file(tmp_path / "clips.csv") as handle:
        handle.write("whole")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [ours.name, "clips.csv", "corpus"], left


# A driver whose "ray.init" starts a raylet-like process (in a new session, as Ray's are) that
# dies with the driver, having forked two workers that do not: one at once, with an empty
# environment (as a worker's title overwrites part of its environment), and one only when the
# test asks, just before the kill (a newborn, not yet seen by any poll). After the block the
# driver starts a process of its own (as the journal drainer), which is not the reaper's.
DRIVER = textwrap.dedent(
    """
    import subprocess, sys, time
    from sedsweep.processes import reaped_if_killed
    with reaped_if_killed():
        raylet = subprocess.Popen([sys.executable, "-c", RAYLET], start_new_session=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    own = subprocess.Popen(["sleep", "300"])
    print(raylet.stdout.readline().strip(), own.pid, flush=True)
    sys.stdin.readline()
    raylet.stdin.write("fork\\n"); raylet.stdin.flush()
    print(raylet.stdout.readline().strip(), flush=True)
    time.sleep(300)
    """
).replace("RAYLET", repr(textwrap.dedent(
    """
    import os, subprocess, sys, time
    early = subprocess.Popen(["sleep", "300"], env={}, start_new_session=True)
    print(os.getpid(), early.pid, flush=True)
    sys.stdin.readline()
    late = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(late.pid, flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.1)
    """
)))  # fmt: skip


def by_pid(pid: int) -> set[tuple[int, int]]:
    start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return {(pid, int(start))}


def test_a_killed_driver_s_ray_processes_are_ended_by_its_reaper():
    """What "ray.init" started, what that forked before and after the block (with or without
    the token in its environment), is ended once the driver is SIGKILLed; a process the
    driver started outside the block, or did not start, is left alone."""
    from sedsweep.processes import REAP_POLL_S

    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    own: set = set()
    try:
        raylet, early, own_pid = map(int, driver.stdout.readline().split())
        own = by_pid(own_pid)
        ray = by_pid(raylet) | by_pid(early)
        time.sleep(3 * REAP_POLL_S)  # the reaper's polls have seen the early worker
        driver.stdin.write("go\n")
        driver.stdin.flush()
        ray |= by_pid(int(driver.stdout.readline()))
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 30
        while alive(ray) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(ray), f"the killed driver's processes outlived it by 30 s: {alive(ray)}"
        assert alive(own), "the reaper ended a process the driver started after ray.init"
        assert bystander.poll() is None
    finally:
        for proc in (driver, bystander):
            proc.kill()
            proc.wait()
        for pid, _ in alive(own):
            os.kill(pid, signal.SIGKILL)


def test_a_reaper_leaves_once_its_processes_ended_with_the_driver_alive():
    """A driver that shuts Ray down and goes on (tests, `best`'s confirmation sweeps) keeps no
    reaper per Ray session it started."""
    from sedsweep.processes import Reaper, reaped_if_killed

    with reaped_if_killed():
        short = subprocess.Popen(["sleep", "1.5"])
    reaper = Reaper.running[-1]
    short.wait()
    assert reaper.proc.wait(timeout=15) == 0
