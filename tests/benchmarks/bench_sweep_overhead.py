"""Benchmark: platform overhead of a sweep against a plain `sedsweep train` of the same config.

Run from the repository root:
    .venv/bin/python tests/benchmarks/bench_sweep_overhead.py --epochs 6 --trials 8

Trains one whenwho config without Ray, then as a 1-trial and an N-trial sweep (FIFO scheduler,
every trial the same config, so all should take the same time), and prints per-trial wall-time
ratios, the sweep's fixed cost (wall minus the ideal), the driver's peak memory and how many
times features were extracted. Each sweep runs under each `--checkpoint` policy: `epoch`
(a checkpoint every epoch, the behaviour before issue 17) and `policy` (the default: at most
one per 30 s, the rungs and the last epoch).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from proctree import CpuSampler

from sedsweep import features as F
from sedsweep.runspec import RunSpec, resolve
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.train import train


def main() -> None:
    """Run the three measurements and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--checkpoint", choices=["epoch", "policy", "both"], default="both")
    args = ap.parse_args()
    policies = ["epoch", "policy"] if args.checkpoint == "both" else [args.checkpoint]

    extractions = 0
    original = F._extract_entry

    def counting(*a, **k):
        nonlocal extractions
        extractions += 1
        return original(*a, **k)

    F._extract_entry = counting
    config = {
        "epochs": args.epochs,
        "mode": "separate",
        "model": {"channels": args.width, "gru_units": args.width, "dense_units": args.width},
    }
    data = {"synthetic": "lowres", "options": {"scale": "tiny", "clips": args.clips}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spec = RunSpec(method="whenwho", scale="tiny", data=data, config=config)
        resolved = resolve(spec)
        train(resolved, workdir=workdir, progress=False)  # warm: corpus, features, MLflow tables
        started = time.perf_counter()
        result = train(resolved, workdir=workdir, progress=False)
        train_wall = time.perf_counter() - started
        train_loop = sum(
            m.value for m in _history(result.tracking_uri, result.run_id, "epoch_time_s")
        )
        print(f"train (no Ray): wall {train_wall:.1f} s, epoch loop {train_loop:.1f} s")
        slots = min(args.trials, os.cpu_count() or 1)
        together = _trains_at_once(resolved, workdir, slots)
        print(
            f"train ×{slots} at once (no Ray, own processes): epoch loops "
            + ", ".join(f"{t:.1f} s" for t in together)
            + f"; mean / alone = {statistics.mean(together) / train_loop:.3f} (what sharing "
            "the machine's cores and memory costs without any platform)"
        )

        rows, others = [], []
        for policy, trials in [(p, t) for t in (1, args.trials) for p in policies]:
            sweep = {
                "name": f"overhead{trials}-{policy}",
                "method": "whenwho",
                "scale": "tiny",
                "data": data,
                "objective": {"metric": "val/when_frame_auc"},
                "budget": {"trials": trials, "max_epochs": args.epochs},
                "search": {"algorithm": "random"},
                "scheduler": {"type": "none"},
                "resources": {"cpu": 1},
                "fixed": config,
                "checkpoint": {"every_epochs": 1} if policy == "epoch" else {},
            }
            path = workdir / f"s{trials}-{policy}.yaml"
            path.write_text(yaml.safe_dump(sweep))
            plan = load_sweep(path)
            started = time.perf_counter()
            with CpuSampler() as cpu:
                outcome = run_sweep(plan, workdir=workdir)
            wall = time.perf_counter() - started
            assert outcome.complete, outcome.summary()
            loops = _trial_loop_times(outcome.path)
            saved = _checkpoints_written(outcome.path)
            rows.append((policy, trials, wall, statistics.mean(loops), saved, cpu.by_kind()))
            others.append((policy, trials, cpu.top_other()))
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"\n{'checkpoint':>10} {'trials':>6} {'sweep wall':>10} {'trial loop':>10} "
            f"{'loop ratio':>10} {'wall ratio':>10} {'fixed cost':>10} {'ckpts':>6}"
        )
        for policy, trials, wall, loop, saved, _ in rows:
            ideal = train_wall * trials / min(trials, cpus)
            print(
                f"{policy:>10} {trials:>6} {wall:>9.1f}s {loop:>9.1f}s {loop / train_loop:>10.3f} "
                f"{wall / ideal:>10.3f} {wall - ideal:>9.1f}s {saved:>6}"
            )
        for policy, trials, _, loop, _, _ in rows:
            if trials >= slots:
                print(
                    f"{policy}/{trials}: trial loop / the loop of {slots} trains at once = "
                    f"{loop / statistics.mean(together):.3f} (the platform's share)"
                )
        print(f"\nCPU seconds during each sweep ({cpus} CPUs × its wall available):")
        print(f"{'checkpoint':>10} {'trials':>6} " + " ".join(f"{k:>10}" for k in rows[0][5]))
        for policy, trials, wall, _, _, used in rows:
            cells = " ".join(f"{v:>9.1f}s" for v in used.values())
            print(
                f"{policy:>10} {trials:>6} {cells}   (non-trial share of the cores: "
                f"{(sum(used.values()) - used['trials']) / (cpus * wall):.1%})"
            )
        for policy, trials, top in others:
            print(f"  'other' in {policy}/{trials}: " + "; ".join(f"{t} {c:.1f}s" for t, c in top))
        print(
            "\nloop ratio = a trial's epoch loop inside Ray / the same loop in `sedsweep train`;"
            f"\nwall ratio = sweep wall / (train wall × trials / min(trials, {cpus} CPUs));"
            "\nfixed cost = sweep wall − that ideal; ckpts = checkpoints the sweep's trials wrote"
        )
        print(f"driver peak RSS: {peak_mib:.0f} MiB")
        print(
            f"feature extractions in the driver: {extractions} "
            f"(cache entries: {len(list((workdir / 'feature-cache').iterdir()))})"
        )


def _train_loop(job: tuple[object, Path]) -> float:
    """One `train` in a worker process, in its own copy of the work directory (MLflow on
    SQLite takes one writer well): the sum of its epoch times."""
    resolved, workdir = job
    result = train(resolved, workdir=workdir, progress=False)
    return sum(m.value for m in _history(result.tracking_uri, result.run_id, "epoch_time_s"))


def _trains_at_once(resolved: object, workdir: Path, n: int) -> list[float]:
    """Epoch-loop seconds of `n` plain trains of the same config run at the same time."""
    import multiprocessing
    import shutil

    copies = []
    for i in range(n):
        copy = workdir / f"together-{i}"
        shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("together-*", "mlflow.db*"))
        copies.append(copy)
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        return pool.map(_train_loop, [(resolved, c) for c in copies])


def _history(uri: str, run_id: str, key: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_metric_history(run_id, key)


def _checkpoints_written(experiment: Path) -> int:
    """Results that came with a checkpoint, over every trial's result.json."""
    import json

    return sum(
        bool(json.loads(line).get("checkpoint_dir_name"))
        for result in experiment.glob("run_trial*/result.json")
        for line in result.read_text().splitlines()
        if line.strip()
    )


def _trial_loop_times(experiment: Path) -> list[float]:
    """Sum of epoch_time_s per trial, from each trial's result.json written by Tune."""
    import json

    totals = []
    for result in experiment.glob("run_trial*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        totals.append(sum(r["epoch_time_s"] for r in lines))
    return totals


if __name__ == "__main__":
    main()
