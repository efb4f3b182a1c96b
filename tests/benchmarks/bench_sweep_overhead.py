"""Benchmark: platform overhead of a sweep against a plain `sedsweep train` of the same config.

Run from the repository root:
    .venv/bin/python tests/benchmarks/bench_sweep_overhead.py --epochs 6 --trials 8

Trains one whenwho config without Ray, then as a 1-trial and an N-trial sweep (FIFO scheduler,
every trial the same config, so all should take the same time), and prints per-trial wall-time
ratios, the sweep's fixed cost (wall minus the ideal), the driver's peak memory and how many
times features were extracted. Each sweep runs under each `--checkpoint` policy: `epoch`
(a checkpoint every epoch, the behaviour before issue 17) and `policy` (the default: at most
one per 30 s, the rungs and the last epoch). `--rounds R` runs the plain trains and the
sweeps R times, alternating, and compares each sweep with its own round's trains: on a shared
machine whose speed drifts, a baseline measured once flatters or penalises every ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from proctree import CpuSampler

from sedsweep import features as F
from sedsweep.runspec import RunSpec, resolve
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.train import train


def main() -> None:
    """Run the measurements, `--rounds` times, and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--checkpoint", choices=["epoch", "policy", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=1)
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
        slots = min(args.trials, os.cpu_count() or 1)
        rows, others = [], []
        for rnd in range(1, args.rounds + 1):
            base = _baseline(resolved, workdir, slots)
            print(
                f"round {rnd}: train (no Ray): wall {base.wall:.1f} s, epoch loop {base.loop:.1f} s"
                f"; ×{slots} at once (own processes): epoch loops "
                + ", ".join(f"{t:.1f} s" for t in base.together)
                + f"; mean / alone = {statistics.mean(base.together) / base.loop:.3f} (what "
                "sharing the machine's cores and memory costs without any platform)"
            )
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
                loop = statistics.mean(_trial_loop_times(outcome.path))
                saved = _checkpoints_written(outcome.path)
                rows.append(_Row(rnd, policy, trials, wall, loop, saved, cpu.by_kind(), base))
                others.append((rnd, policy, trials, cpu.top_other()))
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"\n{'round':>5} {'checkpoint':>10} {'trials':>6} {'sweep wall':>10} "
            f"{'trial loop':>10} {'loop ratio':>10} {'wall ratio':>10} {'fixed cost':>10} "
            f"{'ckpts':>6} {'vs at once':>10}"
        )
        for r in rows:
            print(
                f"{r.round:>5} {r.policy:>10} {r.trials:>6} {r.wall:>9.1f}s {r.loop:>9.1f}s "
                f"{r.loop_ratio:>10.3f} {r.wall_ratio(cpus):>10.3f} {r.fixed(cpus):>9.1f}s "
                f"{r.saved:>6} {r.share:>10.3f}"
            )
        if args.rounds > 1:
            print("\nmedians over the rounds")
            for policy, trials in dict.fromkeys((r.policy, r.trials) for r in rows):
                mine = [r for r in rows if (r.policy, r.trials) == (policy, trials)]
                med = {
                    name: statistics.median(getattr(r, name)(cpus) for r in mine)
                    for name in ("wall_ratio", "fixed")
                }
                shares = [r.share for r in mine if r.trials >= slots]
                print(
                    f"{policy:>10} {trials:>6}: loop ratio "
                    f"{statistics.median(r.loop_ratio for r in mine):.3f}, wall ratio "
                    f"{med['wall_ratio']:.3f}, fixed cost {med['fixed']:.1f} s"
                    + (f", trial loop / trains at once {statistics.median(shares):.3f}"
                       if shares else "")
                )  # fmt: skip
        print(f"\nCPU seconds during each sweep ({cpus} CPUs × its wall available):")
        kinds = rows[0].used
        print(
            f"{'round':>5} {'checkpoint':>10} {'trials':>6} " + " ".join(f"{k:>10}" for k in kinds)
        )
        for r in rows:
            cells = " ".join(f"{v:>9.1f}s" for v in r.used.values())
            print(
                f"{r.round:>5} {r.policy:>10} {r.trials:>6} {cells}   (non-trial share of the "
                f"cores: {(sum(r.used.values()) - r.used['trials']) / (cpus * r.wall):.1%})"
            )
        for rnd, policy, trials, top in others:
            print(
                f"  'other' in {rnd}/{policy}/{trials}: "
                + "; ".join(f"{t} {c:.1f}s" for t, c in top)
            )
        print(
            "\nloop ratio = a trial's epoch loop inside Ray / the same loop in `sedsweep train`"
            " (the round's own);"
            f"\nwall ratio = sweep wall / (train wall × trials / min(trials, {cpus} CPUs));"
            "\nfixed cost = sweep wall − that ideal; ckpts = checkpoints the sweep's trials wrote;"
            f"\nvs at once = trial loop / the mean loop of {slots} trains at once (the platform's"
            " share, for sweeps that fill the slots); the first sweep of round 1 starts Ray"
        )
        print(f"driver peak RSS: {peak_mib:.0f} MiB")
        print(
            f"feature extractions in the driver: {extractions} "
            f"(cache entries: {len(list((workdir / 'feature-cache').iterdir()))})"
        )


@dataclass
class _Baseline:
    """A round's plain trains: one alone (wall, epoch loop) and `slots` at once (epoch loops)."""

    wall: float
    loop: float
    together: list[float]


def _baseline(resolved: object, workdir: Path, slots: int) -> _Baseline:
    started = time.perf_counter()
    loop = _train_loop((resolved, workdir))
    wall = time.perf_counter() - started
    return _Baseline(wall, loop, _trains_at_once(resolved, workdir, slots))


@dataclass
class _Row:
    """One sweep, measured against the baseline of its round."""

    round: int
    policy: str
    trials: int
    wall: float
    loop: float  # a trial's epoch loop (mean over its trials)
    saved: int
    used: dict[str, float]
    base: _Baseline

    @property
    def loop_ratio(self) -> float:
        return self.loop / self.base.loop

    def ideal(self, cpus: int) -> float:
        return self.base.wall * self.trials / min(self.trials, cpus)

    def wall_ratio(self, cpus: int) -> float:
        return self.wall / self.ideal(cpus)

    def fixed(self, cpus: int) -> float:
        return self.wall - self.ideal(cpus)

    @property
    def share(self) -> float:
        return self.loop / statistics.mean(self.base.together)


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
        shutil.rmtree(copy, ignore_errors=True)  # an earlier round's
        skip = shutil.ignore_patterns("together-*", "mlflow.db*", "ray", "mlartifacts")
        shutil.copytree(workdir, copy, ignore=skip)
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
