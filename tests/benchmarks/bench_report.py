"""How reading a sweep back from MLflow scales: load, table, importance, dashboard payload.

Logs constructed sweeps of N trials (params as the engine writes them, E epochs of metrics) to
a fresh SQLite store, then times each step of `sedsweep table` / `dashboard` and prints the
cost per trial and the ratio to the smallest sweep.

    .venv/bin/python tests/benchmarks/bench_report.py --trials 25 100 400 --epochs 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.sweeps import log_sweep  # noqa: E402

from sedsweep.report.dashboard import sweep_payload  # noqa: E402
from sedsweep.report.importance import param_importance  # noqa: E402
from sedsweep.report.runs import load_sweep_runs  # noqa: E402
from sedsweep.report.tables import build_table  # noqa: E402
from sedsweep.tracking import tracking_uri_for  # noqa: E402

QUICK = ROOT / "search_spaces" / "quickstart.yaml"


def constructed(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        lr = float(10 ** rng.uniform(np.log10(3e-4), -2))
        trials.append(
            {
                "overrides": {
                    "when_loss": str(rng.choice(["mmm", "max"])),
                    "optim.lr": lr,
                    "mmm.w_min": float(rng.uniform()),
                },
                "metrics": {
                    "val/when_frame_auc": float(0.9 + np.log10(lr) / 50 + rng.normal(0, 0.01)),
                    "test/when_frame_auc": float(rng.uniform(0.6, 0.9)),
                    "test/who_auc_macro": float(rng.uniform(0.4, 0.8)),
                    "train/loss": float(rng.uniform(0.1, 1.0)),
                },
            }
        )
    return trials


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, nargs="+", default=[25, 100, 400])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    spec = yaml.safe_load(QUICK.read_text())
    rows = []
    for n in args.trials:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            t0 = time.perf_counter()
            parent = log_sweep(workdir, spec, constructed(n, n), epochs=args.epochs)
            logged = time.perf_counter() - t0
            uri = tracking_uri_for(workdir)
            timings = {}
            t = time.perf_counter()
            sweep = load_sweep_runs(parent, uri)
            timings["load"] = time.perf_counter() - t
            t = time.perf_counter()
            build_table([sweep]).render("html")
            timings["table"] = time.perf_counter() - t
            t = time.perf_counter()
            param_importance(sweep)
            timings["importance"] = time.perf_counter() - t
            t = time.perf_counter()
            sweep_payload(sweep)
            timings["payload"] = time.perf_counter() - t
            rows.append((n, logged, timings))
            print(
                f"N={n:5d}  (logging {logged:6.1f} s)  "
                + "  ".join(f"{k} {v * 1000:8.1f} ms" for k, v in timings.items()),
                flush=True,
            )
    n0, _, base = rows[0]
    print("\nper-trial cost relative to the smallest sweep (1.00 = linear scaling):")
    for n, _, timings in rows:
        ratio = "  ".join(
            f"{k} {(v / n) / (base[k] / n0):5.2f}" for k, v in timings.items() if base[k] > 0
        )
        print(f"N={n:5d}  {ratio}")


if __name__ == "__main__":
    main()
