"""What a new embedded SQLite store costs a fresh process: created from the migrated template
(`tracking.new_sqlite_store`) against MLflow migrating it, interleaved (ABAB) so that load
drifts hit both sides alike. Each run is a new interpreter that opens the client of a new
work directory and creates one experiment, as a sweep's first step does.

    .venv/bin/python tests/benchmarks/bench_new_store.py [--runs 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPET = (
    "import sys\n"
    "from sedsweep.tracking import client_for, ensure_experiment, tracking_uri_for\n"
    "ensure_experiment(client_for(tracking_uri_for(sys.argv[1])), 'bench')\n"
)


def one(workdir: Path, cache: str) -> float:
    """Wall seconds of one fresh process creating a store in `workdir`."""
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNIPPET, str(workdir)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blocked = root / "no-cache"  # a file where the cache folder would be: no template
        blocked.write_text("")
        cache = str(root / "cache")
        one(root / "warm", cache)  # makes the template once, as a machine's first store does
        times: dict[str, list[float]] = {"template": [], "migrate": []}
        for n in range(args.runs):
            for side, where in (("template", cache), ("migrate", str(blocked))):
                folder = root / f"{side}{n}"
                folder.mkdir()
                times[side].append(one(folder, where))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    for side, values in times.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"{side:9s} median {statistics.median(values):.2f} s  ({each})")
    ratio = statistics.median(times["template"]) / statistics.median(times["migrate"])
    print(f"template / migrate: {ratio:.2f}")


if __name__ == "__main__":
    main()
