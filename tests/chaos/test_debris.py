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
from sedsweep.signals import alive, descendants


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


DRIVER = textwrap.dedent(
    """
    import subprocess, sys, time
    from sedsweep.signals import Reaper, descendants
    import os
    before = descendants(os.getpid())
    started = subprocess.Popen(["sleep", "300"], start_new_session=True)  # like Ray's agents
    Reaper(descendants(os.getpid()) - before).start()
    print(started.pid, flush=True)
    time.sleep(300)
    """
)


def test_a_killed_driver_s_processes_are_ended_by_its_reaper():
    """What ray.init started (here a `sleep` in its own session, as Ray's agents are) is ended
    once the driver is SIGKILLed; a process the driver did not start is left alone."""
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(driver.stdout.readline())
        started = {p for p in descendants(driver.pid) if p[0] == pid}
        assert alive(started), "the driver's process is not running"
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 20
        while alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(started), "the killed driver's process outlived it by 20 s"
        assert bystander.poll() is None
    finally:
        for proc in (driver, bystander):
            proc.kill()
            proc.wait()


def test_a_reaper_leaves_once_its_processes_ended_with_the_driver_alive():
    """A driver that shuts Ray down and goes on (tests, `best`'s confirmation sweeps) keeps no
    reaper per Ray session it started."""
    from sedsweep.signals import Reaper

    short = subprocess.Popen(["sleep", "1"])
    reaper = Reaper({p for p in descendants(os.getpid()) if p[0] == short.pid})
    reaper.start()
    short.wait()
    assert reaper.proc.wait(timeout=15) == 0
