"""What the reproducible mode costs, and what the asynchronous default varies in.

Runs a search-space file with `sedsweep sweep` (a fresh driver each time, one shared work
directory so the corpus and features are built once, before the timed runs) `--repeats` times
in each mode: the asynchronous default and `search.reproducible=true`. Prints per run the wall
time of the command, the trial-epochs trained (from `reproducibility.json`), the trials
stopped early, the best configuration and the trace hash; then per mode the median wall and
how many distinct traces and best configurations the repeats gave, and the ratios
reproducible / asynchronous.

    .venv/bin/python tests/benchmarks/bench_reproducible.py search_spaces/quickstart.yaml
    .venv/bin/python tests/benchmarks/bench_reproducible.py search_spaces/whenwho_table3.yaml \
        --scale tiny --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECORD_FILE = "reproducibility.json"


def run(file: Path, workdir: Path, sets: list[str], scale: str | None) -> tuple[float, dict, str]:
    cmd = [sys.executable, "-c", "from sedsweep.cli import main; main()", "sweep", str(file)]
    cmd += ["--workdir", str(workdir)] + (["--scale", scale] if scale else [])
    cmd += [a for s in sets for a in ("--set", s)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    lines = done.stdout.splitlines()
    where = [
        ln.removeprefix("Ray results in ").strip()
        for ln in lines
        if ln.startswith("Ray results in")
    ]
    if done.returncode != 0 or not where:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    best = next((ln for ln in lines if ln.startswith("best:")), "best: none")
    return wall, json.loads((Path(where[0]) / RECORD_FILE).read_text()), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--scale", default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"cores: {os.cpu_count()}; file {args.file}; scale {args.scale}; sets {args.sets}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-repro-"))
    warm = [*args.sets, "budget.max_trials=1", "budget.max_epochs=1"]
    run(args.file, workdir, warm, args.scale)  # corpus and features, outside the timed runs
    modes = {"asynchronous": [], "reproducible": ["search.reproducible=true"]}
    summary = {}
    for mode, extra in modes.items():
        walls, traces, bests, epochs = [], set(), set(), []
        for n in range(args.repeats):
            wall, record, best = run(args.file, workdir, [*args.sets, *extra], args.scale)
            trace = record["trace"]
            trial_epochs = sum(len(v) for v in trace["objective"].values())
            stopped = sum(o["state"] == "PRUNED" for o in trace["outcomes"].values())
            walls.append(wall)
            epochs.append(trial_epochs)
            traces.add(record["trace_sha256"])
            bests.add(best)
            print(f"{mode:>12} run {n + 1}: wall {wall:6.1f} s; trial-epochs {trial_epochs}; "
                  f"trials {len(trace['outcomes'])}, stopped early {stopped}; "
                  f"trace {record['trace_sha256'][:12]}; {best[:150]}")  # fmt: skip
        summary[mode] = (statistics.median(walls), statistics.median(epochs))
        print(f"{mode:>12}: median wall {summary[mode][0]:.1f} s, median trial-epochs "
              f"{summary[mode][1]:g}; {len(traces)} distinct trace(s) and {len(bests)} distinct "
              f"best configuration(s) in {args.repeats} runs")  # fmt: skip
    (aw, ae), (rw, re_) = summary["asynchronous"], summary["reproducible"]
    print(f"ratio reproducible/asynchronous: wall {rw / aw:.3f}, trial-epochs {re_ / ae:.3f}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
