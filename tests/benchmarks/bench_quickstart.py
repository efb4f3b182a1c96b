"""Wall time of the README's main job (its sweep, after the install) against issue 17's target.

Reads the sweep command from the README's `main-command` block, runs it as a fresh process in a
fresh work directory (`--workdir`, so the repository stays clean; the corpus is generated and
its features extracted inside the run, as on a first use) `--repeats` times, and prints each
wall time, the median and its ratio to the 90 s target, with the machine's load.

    .venv/bin/python tests/benchmarks/bench_quickstart.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 90.0


def readme_sweep() -> list[str]:
    """The `sedsweep sweep …` part of the README's main command, as argv."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- main-command -->\s*```\s*\n(.*?)\n```", text, re.S)
    if block is None:
        raise SystemExit("README.md has no main-command block")
    for part in block.group(1).split("&&"):
        argv = shlex.split(part)
        if len(argv) > 1 and argv[0].endswith("sedsweep") and argv[1] == "sweep":
            return [str(ROOT / argv[0]), *argv[1:]]
    raise SystemExit("the README's main command runs no `sedsweep sweep`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cmd = readme_sweep()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    print(f"load before: {os.getloadavg()} on {os.cpu_count()} CPUs; command: {shlex.join(cmd)}")
    walls = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run(
                [*cmd, "--workdir", tmp], cwd=ROOT, env=env, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            walls.append(time.perf_counter() - started)
            print(f"  run {len(walls)}: {walls[-1]:.1f} s", flush=True)
    median = statistics.median(walls)
    ratio = median / TARGET_S
    print(f"quickstart sweep: median {median:.1f} s = {ratio:.2f} × the {TARGET_S:.0f} s target")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
