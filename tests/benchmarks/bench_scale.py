"""Short trials: sedsweep against stock Ray Tune + OptunaSearch on the same workload, and how
TPE's suggestion time grows with the study.

The workload is the `null` method's landscape (search_spaces/null_load.yaml): `--trials`
trials of `--epochs` epochs, each epoch sleeping `--sleep` s, `--concurrent` at once, 0.1 CPU
each, TPE (seed 0), no scheduler. Arms, each a separate process started from here:

- stock:         a plain Ray Tune 2.60 script (`Tuner` + `OptunaSearch`, default settings, no
                 tracking, no checkpoints), the same landscape computed inline (not
                 imported from sedsweep: that would load torch into stock's driver);
- stock-mlflow:  the same with Ray's `MLflowLoggerCallback` on a SQLite store;
- stock-reuse:   stock with `reuse_actors=True` (as sedsweep sets it; Tune's default is False);
- stock-torch:   stock-reuse whose trainable also imports torch and builds an Adam optimiser
                 per trial, as every torch trainable does: an actor's first trial then pays
                 torch's import and the `torch._dynamo` import a first optimiser triggers
                 (3 s of CPU together on this machine), as sedsweep's trials do (its
                 trainable imports torch for every method, the null one included);
- sedsweep:      `sedsweep sweep search_spaces/null_load.yaml --set ...` (journaled tracking
                 on SQLite, checkpoints, tables, figures, dashboard: everything it does).

The arms run interleaved (A B C A B C ...: `--rounds` times) so that drift on a shared machine
lands on every arm alike. Printed per run: the load average before and after, process wall,
trials/s, results/s (trials × epochs / wall), the driver's CPU seconds and peak RSS, and the
CPU seconds of the run's whole process tree (all sampled from /proc every 0.2 s), the journal
bytes per result (sedsweep's tracking journal and Optuna live journal) and the size of Tune's
newest experiment snapshot; then the
medians per arm, each arm's wall over the first arm's and over the ideal (trials × epochs ×
sleep / concurrent), the same for its trial loop (from the first trial's start to the last
result, read from the trials' results; the rest of the wall is start-up, Ray and the
end-of-sweep work, and `actors` counts the worker processes that ran trials), and its CPU
per trial by process (`proctree.CpuSampler`: driver, trial workers, idle workers, GCS,
raylet, Ray's agents, and the rest: sedsweep's tracking drainer, Ray's log monitor). Every
run's process tree is its own: a run's Ray is started and stopped by it.

`--tpe-growth 100,1000,10000` also times Optuna's TPE `ask` on this search space with a study
already holding that many finished trials (added without running them), since TPE reads every
finished trial at each suggestion.

    .venv/bin/python tests/benchmarks/bench_scale.py [--trials 200] [--epochs 1] [--sleep 1.0]
        [--concurrent 8] [--rounds 2] [--arms stock,stock-mlflow,stock-reuse,stock-torch,sedsweep]
        [--tpe-growth 100,1000,10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proctree import KINDS, CpuSampler

ROOT = Path(__file__).resolve().parents[2]
NULL = ROOT / "search_spaces" / "null_load.yaml"
ARMS = ("stock", "stock-mlflow", "stock-reuse", "stock-torch", "sedsweep")


def null_space() -> dict:
    """search_spaces/null_load.yaml's space as Optuna distributions."""
    import optuna

    return {
        "optim.lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "quality": optuna.distributions.FloatDistribution(0.0, 1.0),
        "choice": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    }


# -- the stock arm, run in its own process ---------------------------------------------------
def stock_main(args: argparse.Namespace) -> None:
    """A stock Ray Tune + OptunaSearch sweep of the null landscape; prints a JSON summary."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    bonus = {"a": 0.0, "b": 0.04, "c": -0.04}

    def trainable(config: dict) -> None:
        if args.torch:  # a model's optimiser (imports torch, and torch._dynamo, once per actor)
            import torch

            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        peak = math.exp(-((math.log10(config["optim.lr"]) + 3.0) ** 2) / 2.0)
        final = 0.55 + 0.3 * peak + 0.1 * config["quality"] + bonus[config["choice"]]
        for epoch in range(1, args.epochs + 1):
            time.sleep(args.sleep)
            tune.report({"score": final * (1.0 - math.exp(-epoch / 3.0)), "epoch": epoch})

    space = null_space()
    search = OptunaSearch(
        space, metric="score", mode="max", sampler=optuna.samplers.TPESampler(seed=0)
    )
    callbacks = []
    if args.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=f"sqlite:///{args.workdir}/mlflow.db", experiment_name="stock"
            )
        )
    ray.init(include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.1}),
        tune_config=tune.TuneConfig(
            search_alg=search,
            num_samples=args.trials,
            max_concurrent_trials=args.concurrent,
            reuse_actors=args.reuse,
        ),
        run_config=tune.RunConfig(
            storage_path=str(Path(args.workdir) / "ray"), callbacks=callbacks, verbose=0
        ),
    )
    grid = tuner.fit()
    done = sum(1 for r in grid if r.metrics and r.metrics.get("epoch") == args.epochs)
    print("STOCK " + json.dumps({"trials": done}), flush=True)
    ray.shutdown()


# -- measuring one run -----------------------------------------------------------------------
def run_arm(arm: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Start one arm's process, wait for it, and return what was measured."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT / "platform"))
    if arm == "sedsweep":
        sets = {"budget.trials": args.trials, "budget.max_epochs": args.epochs,
                "budget.max_concurrent": args.concurrent, "fixed.sleep_s": args.sleep,
                "fixed.epochs": args.epochs}  # fmt: skip
        cmd = [str(Path(sys.executable).parent / "sedsweep"), "sweep", str(NULL)]
        cmd += ["--workdir", str(workdir)]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
    else:
        cmd = [sys.executable, __file__, "--_stock", "--workdir", str(workdir),
               "--trials", str(args.trials), "--epochs", str(args.epochs),
               "--sleep", str(args.sleep), "--concurrent", str(args.concurrent)]  # fmt: skip
        cmd += {"stock-mlflow": ["--_mlflow"], "stock-reuse": ["--_reuse"],
                "stock-torch": ["--_reuse", "--_torch"]}.get(arm, [])  # fmt: skip
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    log = workdir / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        with CpuSampler(proc.pid) as sampler:
            code = proc.wait()
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if arm == "sedsweep":
        found = re.search(r"sweep null_load: (\d+) completed", text)
        trials = int(found.group(1)) if found else 0
    else:
        found = re.search(r"^STOCK (.*)$", text, re.M)
        trials = json.loads(found.group(1))["trials"] if found else 0
    if code != 0 or trials != args.trials:
        print(f"  {arm}: exit {code}, {trials} of {args.trials} trials:\n{text[-2000:]}")
    return {
        "arm": arm,
        "wall": wall,
        **trial_loop(workdir),
        **record_bytes(workdir),
        "trials": trials,
        "cpu": sampler.driver_s(),
        "tree": sampler.by_kind(),
        "rss": sampler.peak_mb,
        "load": (load_before, os.getloadavg()[0]),
    }


def trial_loop(workdir: Path) -> dict:
    """From the trials' own results (both arms store them under `workdir/ray`): the span from
    the first trial's start to the last result (`loop`; Tune's timestamps are whole seconds;
    the wall outside it is start-up, Ray and the end-of-sweep work), and how many worker
    processes ran trials (`actors`)."""
    starts, ends, pids = [], [], set()
    for path in workdir.glob("ray/*/*/result.json"):
        for line in path.read_text().splitlines():
            result = json.loads(line)
            starts.append(result["timestamp"] - result["time_total_s"])
            ends.append(result["timestamp"])
            pids.add(result["pid"])
    return {"loop": max(ends) - min(starts) if ends else math.nan, "actors": len(pids)}


def record_bytes(workdir: Path) -> dict:
    """Bytes a run left on disk that grow with its trials: sedsweep's tracking journal and
    Optuna live journal (`journal`; none for stock) and Tune's newest experiment snapshot
    (`snapshot`, rewritten whole as the sweep goes)."""
    journal = [
        *workdir.glob("ray/*/tracking/journal.jsonl"),
        *workdir.glob("ray/*/optuna-journal.log"),
    ]
    snapshots = sorted(
        workdir.glob("ray/*/experiment_state-*.json"), key=lambda p: p.stat().st_mtime
    )
    return {
        "journal": sum(p.stat().st_size for p in journal),
        "snapshot": snapshots[-1].stat().st_size if snapshots else 0,
    }


def tpe_growth(sizes: list[int]) -> None:
    """Time TPE's ask on the null space with a study holding n finished trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = null_space()
    print("\nTPE ask time with n finished trials in the study (seed 0, default settings)")
    print(f"{'n':>7} {'ask ms (median of 20)':>22} {'vs n=' + str(sizes[0]):>10}")
    first = None
    for n in sizes:
        rng = optuna.samplers.RandomSampler(seed=n)
        study = optuna.create_study(direction="maximize", sampler=rng)
        study.add_trials(
            optuna.trial.create_trial(
                params={k: rng.sample_independent(study, None, k, d) for k, d in space.items()},
                distributions=space,
                value=float(i % 97) / 97,
            )
            for i in range(n)
        )
        study.sampler = optuna.samplers.TPESampler(seed=0)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            trial = study.ask(space)
            times.append(time.perf_counter() - t0)
            study.tell(trial, 0.5)
        ms = statistics.median(times) * 1e3
        first = first or ms
        print(f"{n:>7} {ms:>22.1f} {ms / first:>9.1f}×", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--tpe-growth", default="", help="e.g. 100,1000,10000")
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--_stock", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_mlflow", dest="mlflow", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_reuse", dest="reuse", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_torch", dest="torch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._stock:
        stock_main(args)
        return
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        ap.error(f"--arms: unknown {sorted(unknown)} (known: {', '.join(ARMS)})")
    ideal = args.trials * args.epochs * args.sleep / args.concurrent
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{args.trials} trials × {args.epochs} epoch(s) × {args.sleep} s, "
          f"{args.concurrent} at once: ideal {ideal:.0f} s; "
          f"OMP_NUM_THREADS={threads}; {os.cpu_count()} CPUs")  # fmt: skip
    header = f"{'run':<16} {'load':>11} {'wall s':>7} {'×ideal':>7} {'trials/s':>8} "
    header += f"{'results/s':>9} {'drv CPU s':>9} {'all CPU s':>9} {'drv RSS MB':>10} "
    header += f"{'loop s':>6} {'fixed s':>7} {'actors':>6} {'jrnl B/res':>10} {'snap KB':>7}"
    print(header, flush=True)
    runs: list[dict] = []
    for r in range(args.rounds):
        for arm in arms:
            with tempfile.TemporaryDirectory(prefix=f"bench_scale_{arm}_") as tmp:
                m = run_arm(arm, args, Path(tmp))
            runs.append(m)
            results = m["trials"] * args.epochs
            print(f"{arm + ' #' + str(r + 1):<16} {m['load'][0]:>5.1f}→{m['load'][1]:<5.1f} "
                  f"{m['wall']:>7.1f} {m['wall'] / ideal:>7.2f} {m['trials'] / m['wall']:>8.2f} "
                  f"{m['trials'] * args.epochs / m['wall']:>9.2f} {m['cpu']:>9.1f} "
                  f"{sum(m['tree'].values()):>9.1f} "
                  f"{m['rss']:>10.0f} {m['loop']:>6.0f} {m['wall'] - m['loop']:>7.0f} "
                  f"{m['actors']:>6} {m['journal'] / max(results, 1):>10.0f} "
                  f"{m['snapshot'] / 1e3:>7.0f}", flush=True)  # fmt: skip
    if runs:
        print("\nmedians per arm, and wall against the first arm")
        base = statistics.median(m["wall"] for m in runs if m["arm"] == arms[0])
        loop_base = statistics.median(m["loop"] for m in runs if m["arm"] == arms[0])
        for arm in arms:
            mine = [m for m in runs if m["arm"] == arm]
            wall = statistics.median(m["wall"] for m in mine)
            cpu = statistics.median(m["cpu"] for m in mine)
            rss = max(m["rss"] for m in mine)
            loop = statistics.median(m["loop"] for m in mine)
            print(f"{arm:<14} wall {wall:7.1f} s  ({wall / base:.2f} × {arms[0]}, "
                  f"{wall / ideal:.2f} × ideal)  driver CPU {cpu:6.1f} s "
                  f"({cpu / args.trials * 1e3:.0f} ms/trial)  peak RSS {rss:.0f} MB")  # fmt: skip
            print(f"{'':<14} trial loop {loop:5.0f} s ({loop / loop_base:.2f} × {arms[0]}'s, "
                  f"{loop / ideal:.2f} × ideal); outside it {wall - loop:5.1f} s")  # fmt: skip
        print("\nCPU ms per trial by process (medians per arm; all: the run's whole process tree)")
        print(f"{'arm':<14} " + " ".join(f"{k:>10}" for k in (*KINDS, "all")))
        for arm in arms:
            mine = [m for m in runs if m["arm"] == arm]
            cols = [statistics.median(m["tree"][k] for m in mine) for k in KINDS]
            cols.append(statistics.median(sum(m["tree"].values()) for m in mine))
            print(f"{arm:<14} " + " ".join(f"{c / args.trials * 1e3:>10.0f}" for c in cols))
    if args.tpe_growth:
        tpe_growth([int(n) for n in args.tpe_growth.split(",")])


if __name__ == "__main__":
    main()
