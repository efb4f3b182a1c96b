"""How reading a sweep back from MLflow scales: load, table, importance, dashboard, claims,
best's ranking, and the MLflow UI's run list.

Logs constructed sweeps of N trials (params as the engine writes them, E epochs of metrics) to
a fresh SQLite store, then times each step in this process: `load` (the sweep's runs read back,
as every report command starts), `table` (`sedsweep table`, rendered), `importance`,
`dashboard` (the whole page, `sedsweep dashboard`, with its size), `claims` (`sedsweep claims`
on one claim), `rank` (`sedsweep best`'s ranking on validation; best then re-trains one trial,
which does not grow with N) and `mlflow ui` (the run search the MLflow UI makes for its first
page of an experiment: 100 runs, newest first). Prints the cost per trial and its ratio to the
smallest sweep's (1.00: linear).

    .venv/bin/python tests/benchmarks/bench_report.py --trials 100 400 1000 --epochs 10
        [--store DIR [--log-only]]

`--store` keeps each logged sweep (logging 10,000 trials takes tens of minutes on SQLite) and
reuses it on the next run; `--log-only` only logs, so the timing can run later on a quiet
machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.sweeps import log_sweep  # noqa: E402

from sedsweep.report.best import rank_by_validation  # noqa: E402
from sedsweep.report.claims import check_claims  # noqa: E402
from sedsweep.report.dashboard import build_dashboard  # noqa: E402
from sedsweep.report.importance import param_importance  # noqa: E402
from sedsweep.report.runs import load_sweep_runs  # noqa: E402
from sedsweep.report.tables import build_table  # noqa: E402
from sedsweep.tracking import tracking_uri_for  # noqa: E402

QUICK = ROOT / "search_spaces" / "quickstart.yaml"


LRS = [3e-4, 1e-3, 3e-3, 6e-3, 1e-2]


def grid(n: int) -> tuple[dict, list[dict]]:
    """quickstart.yaml's space as a grid (when_loss × 5 learning rates) with enough replicate
    seeds for about `n` trials, a claim on it (claims compare grid cells), and its trials."""
    spec = yaml.safe_load(QUICK.read_text())
    seeds = list(range(max(1, round(n / (2 * len(LRS))))))
    spec["search"] = {"algorithm": "grid", "seed": 0}
    spec["scheduler"] = {"type": "none"}
    spec["space"] = {
        "when_loss": {"type": "grid", "values": ["mmm", "max"]},
        "optim.lr": {"type": "grid", "values": LRS},
    }
    spec["replicates"] = {"seed": seeds}
    spec["table"]["replicates"] = ["seed"]
    spec["claims"] = [
        {"name": "mmm beats max", "source": "bench", "metric": "val/when_frame_auc",
         "direction": "higher", "a": {"when_loss": "mmm", "optim.lr": 1e-3},
         "b": {"when_loss": "max", "optim.lr": 1e-3}, "min_effect": 0.01}
    ]  # fmt: skip
    rng = np.random.default_rng(n)
    trials = [
        {
            "overrides": {"when_loss": loss, "optim.lr": lr, "seed": seed},
            "metrics": {
                "val/when_frame_auc": float(
                    0.9 + np.log10(lr) / 50 + (loss == "mmm") * 0.01 + rng.normal(0, 0.01)
                ),
                "test/when_frame_auc": float(rng.uniform(0.6, 0.9)),
                "test/who_auc_macro": float(rng.uniform(0.4, 0.8)),
                "train/loss": float(rng.uniform(0.1, 1.0)),
            },
        }
        for loss in ("mmm", "max")
        for lr in LRS
        for seed in seeds
    ]
    return spec, trials


def record(n: int, epochs: int, store: Path) -> tuple[Path, str, int, float]:
    """A constructed sweep of about `n` trials in a SQLite store in `store/<n>-<epochs>`
    (reused when it is there). Returns the work folder, the parent run id, the trial count
    and the seconds logging took (0: reused)."""
    spec, trials = grid(n)
    workdir = store / f"{n}-{epochs}"
    done = workdir / "parent.txt"
    if done.is_file():
        return workdir, done.read_text().strip(), len(trials), 0.0
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parent = log_sweep(workdir, spec, trials, epochs=epochs)
    logged = time.perf_counter() - t0
    done.write_text(parent)
    return workdir, parent, len(trials), logged


def measure(workdir: Path, parent: str) -> tuple[float, dict[str, float]]:
    """Time each reading step on a logged sweep; returns the dashboard page's KB too."""
    uri = tracking_uri_for(workdir)
    timings: dict[str, float] = {}

    def timed(name: str, step):
        t = time.perf_counter()
        value = step()
        timings[name] = time.perf_counter() - t
        return value

    sweep = timed("load", lambda: load_sweep_runs(parent, uri))
    timed("table", lambda: build_table([sweep]).render("html"))
    timed("importance", lambda: param_importance(sweep))
    with tempfile.TemporaryDirectory() as tmp:
        page = timed("dashboard", lambda: build_dashboard(sweep, Path(tmp) / "dashboard"))
        kb = page.stat().st_size / 1024
    timed("claims", lambda: check_claims(sweep).render("md"))
    timed("rank", lambda: rank_by_validation(sweep))
    timed("mlflow ui", lambda: MlflowClient(uri).search_runs(
        [sweep.experiment_id], max_results=100, order_by=["attributes.start_time DESC"]
    ))  # fmt: skip
    return kb, timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--store", type=Path, help="keep the logged sweeps here (and reuse them)")
    parser.add_argument("--log-only", action="store_true", help="log the sweeps, time nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args, args.store or Path(tmp), Path(tmp))


def run(args: argparse.Namespace, store: Path, scratch: Path) -> None:
    """Log (or reuse) each sweep, time the reading steps, print the growth."""
    if not args.log_only:
        warm, parent, _, _ = record(10, 1, scratch)
        measure(warm, parent)  # imports and first-call caches, not counted
    rows = []
    for target in args.trials:
        workdir, parent, n, logged = record(target, args.epochs, store)
        if args.log_only:
            print(f"N={n:6d}  logged in {logged:.1f} s into {workdir}", flush=True)
            continue
        kb, timings = measure(workdir, parent)
        rows.append((n, timings))
        print(f"N={n:6d}  (logging {logged:7.1f} s; dashboard page {kb:6.0f} KB)  "
              + "  ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items()),
              flush=True)  # fmt: skip
    if not rows:
        return
    n0, base = rows[0]
    print("\nper-trial cost relative to the smallest sweep (1.00: linear scaling; the MLflow")
    print("UI's first page holds at most 100 runs, so its time should stay flat instead)")
    for n, timings in rows:
        ratio = "  ".join(
            f"{k} {(v / n) / (base[k] / n0):5.2f}" for k, v in timings.items() if base[k] > 0
        )
        print(f"N={n:6d}  {ratio}")


if __name__ == "__main__":
    main()
