"""CPU seconds of a process and everything started under it, by kind, sampled from /proc: what a
sweep costs beside its trials (its driver, Ray's GCS, raylet and agents, sedsweep's tracking
drainer), on the cores the trials share. Shared by the benchmarks that report it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

KINDS = ("driver", "trials", "idle_work", "gcs_server", "raylet", "agents", "other")
_NAMED = ("ray::", "gcs_server", "raylet", "agent", "dashboard")


class CpuSampler:
    """Samples the process tree under `root` (default: this process) every 0.2 s while inside:
    each process's CPU seconds (a process's last reading before it ends counts, so one that
    lives under 0.2 s is missed) and the root's peak RSS. A worker's title is the last one
    seen (a trial's worker reads ray::IDLE between trials), so the trial/idle split is
    approximate. Inside this process, CPU spent before entering is not counted."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.seen: dict[tuple[int, str], tuple[str, float]] = {}  # (pid, start): (title, CPU s)
        self.baseline: dict[tuple[int, str], float] = {}
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self.baseline = {key: cpu for key, (_, cpu) in self.seen.items() if key[0] == self.root}
        self.seen.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        stats: dict[int, tuple[str, str, float]] = {}  # pid: (start, title, CPU s)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            title = " ".join(a.decode(errors="replace") for a in argv[:3] if a)
            fields = raw[raw.rindex(")") + 2 :].split()
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            stats[pid] = (fields[19], title, (int(fields[11]) + int(fields[12])) / tick)
        for pid, (start, title, cpu) in stats.items():
            p, depth = pid, 0
            while p not in (self.root, 0, 1) and depth < 64:
                p, depth = parents.get(p, 0), depth + 1
            if p == self.root:  # an exiting process's cmdline reads empty: keep its last title
                last_title, last_cpu = self.seen.get((pid, start), ("", 0.0))
                self.seen[pid, start] = (title or last_title, max(cpu, last_cpu))
        try:
            for line in Path(f"/proc/{self.root}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = int(line.split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            pass

    def driver_s(self) -> float:
        """CPU seconds of the root process itself."""
        return self.by_kind()["driver"]

    def by_kind(self) -> dict[str, float]:
        """CPU seconds by kind of process (`KINDS`)."""
        out = dict.fromkeys(KINDS, 0.0)
        for key, (title, cpu) in self.seen.items():
            out[_kind(key[0] == self.root, title)] += cpu - self.baseline.get(key, 0.0)
        return out

    def top_other(self, n: int = 4) -> list[tuple[str, float]]:
        """The busiest processes that are none of the named kinds (title, CPU seconds)."""
        other = [
            (title[:90], cpu)
            for (pid, _), (title, cpu) in self.seen.items()
            if pid != self.root and not any(k in title for k in _NAMED)
        ]
        return sorted(other, key=lambda x: -x[1])[:n]


def _kind(root: bool, title: str) -> str:
    if root:
        return "driver"
    if title.startswith("ray::IDLE"):
        return "idle_work"  # a worker starting (imports) or waiting for a task
    if title.startswith("ray::"):
        return "trials"
    if "gcs_server" in title:
        return "gcs_server"
    if "raylet" in title:
        return "raylet"
    if "agent" in title or "dashboard" in title:
        return "agents"
    return "other"
