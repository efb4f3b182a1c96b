"""Benchmark: memory and trial start of a sweep over a large corpus, before and after issue 17's
memory-mapped feature cache.

Run from the repository root:
    .venv/bin/python tests/benchmarks/bench_paper_scale.py --clips 2000 --concurrency 1,2,4

Builds one `noisy` corpus (staged, tiny model) whose clips are repeated to `--frames` frames of
80 mel bins, so the features weigh clips × frames × 80 × 4 bytes in float32 whatever the audio
length. Then, for each concurrency C, runs a C-trial sweep (1 epoch, C at once) in a child
process, once per way of handing trials their features:

- before: float32 cache, a copy in the driver put through Ray's object store, and each trial
  z-scoring all clips into its own float32 tensor (the code before issue 17 item 5);
- after: float16 cache mapped read-only, sent by reference; trials gather each batch from the
  map (`ClipInputs`) because the z-scored copy would exceed `SEDSWEEP_RESIDENT_MAX_MB`.

Printed per row: the driver's peak RSS (the child's ru_maxrss; the cache is warm, so no
extraction in it), the largest trial worker's peak private (anon), file-backed and shared
(object store) resident memory, sampled from /proc every 0.2 s among the child's own
descendants, the bytes `tune.with_parameters` puts in the object store, and the trial start
(a trial's first `time_this_iter_s` minus its second: getting features, building the method,
normalising). The driver's own private and file-backed peaks are sampled the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

MODES = {
    "before": {"dtype": "float32", "features": "object_store", "resident_mb": "1000000"},
    "after": {"dtype": "float16", "features": "map", "resident_mb": None},
}


def spec(args: argparse.Namespace, mode: str, concurrency: int) -> dict:
    """The sweep file of one row."""
    m = MODES[mode]
    return {
        "name": f"scale-{mode}-{concurrency}",
        "method": "staged",
        "scale": "tiny",
        "data": {
            "synthetic": "noisy",
            "options": {
                "scale": "tiny",
                "clips": args.clips,
                "classes": 20,
                "sr": 16000,
                "min_duration": 0.3,
                "max_duration": 1.0,
            },
        },
        "features": {"overrides": {"fixed_frames": args.frames, "dtype": m["dtype"]}},
        "objective": {"metric": "val/lwlrap"},
        "budget": {"trials": concurrency, "max_concurrent": concurrency, "max_epochs": 2},
        "search": {"algorithm": "random"},
        "scheduler": {"type": "none"},
        "resources": {"cpu": round(2 / concurrency, 3), "features": m["features"]},
    }


def child(path: Path, workdir: Path, warm: bool) -> None:
    """One sweep (or only its features, with `warm`); prints one JSON line."""
    from ray import cloudpickle

    from sedsweep.sweep.runner import _features, run_sweep, transported
    from sedsweep.sweep.spec import load_sweep

    plan = load_sweep(path)
    started = time.perf_counter()
    features = _features(plan, workdir)
    if warm:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fs = next(iter(features.values()))
        print(json.dumps({"extract_s": time.perf_counter() - started, "peak_mib": peak,
                          "bytes": fs.nbytes, "dtype": str(fs.data.dtype)}))  # fmt: skip
        return
    payload = len(cloudpickle.dumps(transported(features, plan.spec.resources.features, True)))
    del features
    outcome = run_sweep(plan, workdir=workdir)
    assert outcome.complete, outcome.summary()
    starts = []
    for result in Path(outcome.path).glob("run_trial_*/result.json"):
        first, second = (json.loads(line) for line in result.read_text().splitlines()[:2])
        starts.append(first["time_this_iter_s"] - second["time_this_iter_s"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"driver_peak_mib": peak, "object_store_bytes": payload, "starts": starts}))


class WorkerSampler:
    """Peak VmRSS / RssAnon / RssFile / RssShmem (MiB) of each Ray worker process descending
    from one PID (this benchmark's own child), sampled from /proc."""

    def __init__(self, root: int) -> None:
        self.root, self.peaks, self.driver = root, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in [self.root, *self._descendants()]:
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                except (OSError, UnicodeDecodeError):
                    continue
                if pid != self.root and (not title.startswith("ray::") or "IDLE" in title):
                    continue
                kb = {k: int(v.split()[0]) for k, _, v in (s.partition(":") for s in status)
                      if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}  # fmt: skip
                peaks = self.driver if pid == self.root else self.peaks.setdefault(pid, {})
                for key, value in kb.items():
                    peaks[key] = max(peaks.get(key, 0), value / 1024)

    def _descendants(self) -> list[int]:
        from sedsweep.processes import descendants

        return [pid for pid, _ in descendants(self.root)]

    def largest(self) -> dict[str, float]:
        """Each measure's peak over the trial workers (the largest worker)."""
        if not self.peaks:
            return {}
        return {k: max(p[k] for p in self.peaks.values()) for k in next(iter(self.peaks.values()))}


def run_child(args: argparse.Namespace, path: Path, workdir: Path, mode: str, warm: bool) -> tuple:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    if MODES[mode]["resident_mb"]:
        env["SEDSWEEP_RESIDENT_MAX_MB"] = MODES[mode]["resident_mb"]
    cmd = [sys.executable, __file__, "--child", str(path), "--workdir", str(workdir)]
    proc = subprocess.Popen(
        cmd + (["--warm"] if warm else []), env=env, stdout=subprocess.PIPE, text=True
    )
    started = time.perf_counter()
    with WorkerSampler(proc.pid) as sampler:
        out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd)}")
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    info = {**json.loads(line), "driver": sampler.driver}
    return info, sampler.largest(), time.perf_counter() - started


def main() -> None:
    """Warm both caches, run every row, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--modes", default="before,after")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workdir, args.warm)
        return
    levels = [int(c) for c in args.concurrency.split(",")]
    modes = args.modes.split(",")
    print(f"uptime: {os.getloadavg()} (load 1/5/15 min) on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = []
        for mode in modes:
            path = workdir / f"{mode}-warm.yaml"
            path.write_text(yaml.safe_dump(spec(args, mode, 1)))
            info, _, wall = run_child(args, path, workdir, mode, warm=True)
            print(f"{mode}: features {info['bytes'] / 2**20:.0f} MiB ({info['dtype']}), built in "
                  f"{wall:.0f} s, extraction peak RSS {info['peak_mib']:.0f} MiB")  # fmt: skip
        for concurrency in levels:
            for mode in modes:
                path = workdir / f"{mode}-{concurrency}.yaml"
                path.write_text(yaml.safe_dump(spec(args, mode, concurrency)))
                info, workers, wall = run_child(args, path, workdir, mode, warm=False)
                rows.append((mode, concurrency, info, workers, wall))
                print(f"  done {mode} C={concurrency} in {wall:.0f} s", flush=True)
    print(
        f"\n{'mode':>6} {'C':>2} {'wall':>6} {'driver':>10} {'(anon':>10} {'file)':>10} "
        f"{'trial anon':>10} {'trial file':>10} {'trial shm':>10} {'obj store':>10} "
        f"{'trial start':>11}"
    )
    for mode, concurrency, info, workers, wall in rows:
        start = sum(info["starts"]) / max(len(info["starts"]), 1)
        mib = [
            info["driver_peak_mib"],
            info["driver"].get("RssAnon", 0),
            info["driver"].get("RssFile", 0),
            *(workers.get(k, 0) for k in ("RssAnon", "RssFile", "RssShmem")),
            info["object_store_bytes"] / 2**20,
        ]
        cells = " ".join(f"{v:>6.0f} MiB" for v in mib)
        print(f"{mode:>6} {concurrency:>2} {wall:>5.0f}s {cells} {start:>10.1f}s")
    print(
        "\ndriver peak: ru_maxrss (private and mapped file pages); (anon file): its sampled "
        "private and file-backed peaks\ntrial anon/file/shm: the largest trial worker's peak "
        "private, file-backed (mapped cache pages, shared with every process mapping them) and "
        "shared-memory (Ray's object store) resident set; obj store: bytes "
        "tune.with_parameters puts in the object store"
    )


if __name__ == "__main__":
    main()
