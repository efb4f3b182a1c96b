"""Wall time of the read-only commands on the README's quickstart sweep, and what they load.

Runs the quickstart sweep into a fresh work directory (or reuses one: --workdir), then times
`sedsweep table quickstart`, `sedsweep dashboard quickstart` and `sedsweep data info CORPUS`,
each as a fresh process (median of --repeats), beside the floor any command reading MLflow
pays: a fresh interpreter that opens the same store with MLflow's client and lists its
experiments (importing MLflow's SQL store is most of it). Prints seconds, the ratio to the
issue's 3 s target for `table`, the ratio to that floor, and which heavy packages each command
imported (torch and ray must not be among them).

    .venv/bin/python tests/benchmarks/bench_readonly.py [--workdir sedsweep-runs] [--repeats 5]

Run it with PYTHONPATH=OTHER_CHECKOUT/platform to measure another revision the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"
HEAVY = ("torch", "ray", "librosa", "optuna", "scipy", "matplotlib", "sklearn", "pandas")
TARGET_S = 3.0
PROBE = (
    "import sys\nfrom sedsweep.cli import main\ncode = main({argv!r})\n"
    "print('loaded:' + ','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})))\n"
)


def timed(cmd: list[str], repeats: int, cwd: Path) -> float:
    """Median wall seconds of `cmd` (stdout discarded), run `repeats` times."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def loaded(argv: list[str], cwd: Path) -> str:
    """Which heavy packages a command imported, run to the end in a fresh interpreter."""
    code = PROBE.format(argv=argv, heavy=set(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    last = out.stdout.splitlines()[-1] if out.stdout else ""
    return last.removeprefix("loaded:") or "none of them"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="an existing quickstart work directory")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env_note = os.environ.get("PYTHONPATH", "(installed sedsweep)")
    print(f"sedsweep from {env_note}; uptime: {os.popen('uptime').read().strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        workdir = args.workdir.resolve() if args.workdir else cwd / "sedsweep-runs"
        if args.workdir is None:
            started = time.perf_counter()
            cmd = [sys.executable, "-m", "sedsweep.cli", "sweep", str(QUICK)]
            subprocess.run([*cmd, "--workdir", str(workdir)], cwd=cwd, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            print(f"quickstart sweep: {time.perf_counter() - started:.1f} s")
        corpus = next((workdir / "corpora").glob("lowres-*"))
        dash = cwd / "dash"
        commands = {
            "table": ["table", "quickstart", "--workdir", str(workdir)],
            "dashboard": ["dashboard", "quickstart", "--workdir", str(workdir),
                          "--out", str(dash), "--overwrite"],
            "data info": ["data", "info", str(corpus)],
        }  # fmt: skip
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        opening = f"from mlflow import MlflowClient; MlflowClient({uri!r}).search_experiments()"
        floor = timed([sys.executable, "-c", opening], args.repeats, cwd)
        bare = timed([sys.executable, "-c", "pass"], args.repeats, cwd)
        print(f"floor: a fresh python opening the store with MlflowClient {floor:.2f} s (bare "
              f"interpreter {bare:.2f} s); median of {args.repeats} runs each")  # fmt: skip
        print(f"{'command':<12}{'wall s':>8}{'/ 3 s':>8}{'/ floor':>9}  heavy imports")
        for name, argv in commands.items():
            wall = timed([sys.executable, "-m", "sedsweep.cli", *argv], args.repeats, cwd)
            target = f"{wall / TARGET_S:8.2f}" if name == "table" else f"{'':>8}"
            print(f"{name:<12}{wall:8.2f}{target}{wall / floor:9.2f}  {loaded(argv, cwd)}")
            shutil.rmtree(dash, ignore_errors=True)


if __name__ == "__main__":
    main()
