"""What tracking costs a sweep: the journaled writer against synchronous writes, on SQLite and
on a real `mlflow server` backed by PostgreSQL (both started here).

A sweep of the `null` method (search_spaces/null_load.yaml: 200 trials × 20 epochs, 0.05 s per
epoch, 16 concurrent trials, FIFO) runs in this process once per configuration, all on one local
Ray (started once, so every configuration meets warm workers):

- offline:  the callback journals, nothing is sent (the baseline: no MLflow traffic at all);
- inline:   each event is sent to MLflow from the controller thread as it is journaled, which
            is how the tracking callback worked before the journal (a log_batch per result);
- async:    the journal with its background drainer (the default).

Printed per configuration: results per second through the controller, time inside the tracking
callback per result on the controller thread (p50/p99), the lag from the controller receiving a
result to the store acknowledging it (p50/p99; after the acknowledgement the metric is
committed, so the REST API serves it), wall time and its ratio to the offline sweep, and whether
the store holds every epoch of every trial once. The baseline runs first and last, to show
drift on a shared machine.

    .venv/bin/python tests/benchmarks/bench_tracking.py [--trials 200] [--epochs 20]
        [--sleep 0.05] [--concurrent 16] [--stores sqlite,server] [--modes inline,async]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NULL = ROOT / "search_spaces" / "null_load.yaml"


def sweep_once(plan, workdir: Path, uri: str | None, mode: str) -> dict:
    from sedsweep.sweep.runner import run_sweep

    started = time.perf_counter()
    outcome = run_sweep(
        plan, workdir=workdir, tracking_uri=uri, tracking=mode, notify=lambda line: None
    )
    wall = time.perf_counter() - started
    results = plan.n_trials * plan.epochs
    return {
        "wall": wall,
        "results": results,
        "counts": outcome.counts,
        "pending": outcome.tracking_pending,
        **outcome.tracking,
        "uri": outcome.tracking_uri,
        "parent": outcome.parent_run_id,
    }


def check_record(uri: str, parent: str, trials: int, epochs: int) -> str:
    """'complete' when the store has every epoch of every trial exactly once."""
    from sedsweep.tracking import PARENT_TAG, client_for

    client = client_for(uri)
    run = client.get_run(parent)
    children, token = [], None
    while True:
        page = client.search_runs(
            [run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'", max_results=1000,
            page_token=token,
        )  # fmt: skip
        children += page
        token = page.token
        if not token:
            break
    if len(children) != trials:
        return f"{len(children)} of {trials} children"
    for child in children[:: max(len(children) // 20, 1)]:  # a sample: history reads are slow
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/score")]
        if sorted(steps) != list(range(1, epochs + 1)):
            return f"{child.info.run_name}: steps {steps}"
    return "complete"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--stores", default="sqlite,server")
    parser.add_argument("--modes", default="inline,async")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import ray
    import torch

    from sedsweep.config import parse_overrides
    from sedsweep.sweep.spec import load_sweep

    overrides = parse_overrides([
        f"budget.trials={args.trials}", f"budget.max_epochs={args.epochs}",
        f"budget.max_concurrent={args.concurrent}", f"fixed.sleep_s={args.sleep}",
        f"resources.cpu={min(0.1, 2 / args.concurrent)}",
    ])  # fmt: skip
    plan = load_sweep(NULL, overrides, "small")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"null method: {plan.n_trials} trials × {plan.epochs} epochs at {args.sleep} s, "
        f"{args.concurrent} concurrent; torch threads in the driver {torch.get_num_threads()}, "
        f"1 per trial; {os.cpu_count()} CPUs"
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    services = []
    try:
        stores: dict[str, str | None] = {}
        for store in args.stores.split(","):
            if store == "sqlite":
                stores["sqlite"] = None  # the embedded store of each work directory
            elif store == "server":
                from tests.servers import MlflowServer, Postgres

                pg = Postgres.start()
                services.append(pg)
                db = pg.create_database("bench", "bench", uuid.uuid4().hex)
                server = MlflowServer.start(db, scratch / "server")
                services.append(server)
                stores["server"] = server.url
        ray.init(
            address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False
        )
        rows = []
        configs = []
        for _ in range(args.repeat):
            configs += [("-", "offline")]
            configs += [(s, m) for s in stores for m in args.modes.split(",")]
        configs += [("-", "offline")]
        workdir = scratch / "work"  # one corpus and feature cache for all
        from sedsweep.sweep.runner import _features

        _features(plan, workdir)  # built before the clock starts
        for store, mode in configs:
            uri = stores.get(store)
            if store == "sqlite":  # a fresh store per configuration
                uri = f"sqlite:///{scratch / f'{mode}-{len(rows)}.db'}"
            row = sweep_once(plan, workdir, uri, mode)
            row["store"], row["mode"] = store, mode
            if mode != "offline":
                row["record"] = check_record(row["uri"], row["parent"], plan.n_trials, plan.epochs)
            rows.append(row)
            print(f"  done: {store} {mode} in {row['wall']:.1f} s {row['counts']}", flush=True)
        base = min(r["fit_s"] for r in rows if r["mode"] == "offline")
        print()
        print("fit: Tune's fit() (the trials); end: waiting for the store to take the backlog, "
              "then logging the tables (an offline sweep does neither)")  # fmt: skip
        print("| store | tracking | results/s | callback p50 ms | callback p99 ms | lag p50 ms "
              "| lag p99 ms | fit s | fit / offline | end s | wall s | record |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            lag50 = f"{1000 * r['lag_p50_s']:.1f}" if "lag_p50_s" in r else "-"
            lag99 = f"{1000 * r['lag_p99_s']:.1f}" if "lag_p99_s" in r else "-"
            end = r.get("drain_s", 0.0) + r.get("tables_s", 0.0)
            print(
                f"| {r['store']} | {r['mode']} | {r['results'] / r['fit_s']:.1f} "
                f"| {1000 * r['callback_p50_s']:.3f} | {1000 * r['callback_p99_s']:.3f} "
                f"| {lag50} | {lag99} | {r['fit_s']:.1f} | {r['fit_s'] / base:.3f} "
                f"| {end:.1f} | {r['wall']:.1f} | {r.get('record', '-')} |"
            )
        after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"\nuptime after: {after}")
    finally:
        ray.shutdown()
        for service in reversed(services):
            service.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
