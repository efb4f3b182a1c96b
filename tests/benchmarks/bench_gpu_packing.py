"""Benchmark: trials packed on one GPU with fractional `gpu` requests (issue 17).

Run from the repository root on a GPU node (one GPU visible, e.g. CUDA_VISIBLE_DEVICES=0):
    .venv/bin/python tests/benchmarks/bench_gpu_packing.py --method whenwho --scale small

For each packing p in --packings (default 1, 0.5, 0.25) it runs a sweep of round(1/p) × --rounds
identical trials (FIFO, same config) that each ask for `gpu: p`, so Ray runs 1/p of them at
once on the GPU. The methods keep their z-scored clips in one tensor on the trial's device,
so the features are resident there. It prints, per packing: GPU utilisation and memory
(nvidia-smi sampled every 0.5 s while the sweep runs), the mean epoch time of a trial,
trial-epochs per hour on the GPU, and the speed-up over one trial per GPU.

Without a CUDA device it says so and measures nothing (exit 0): it runs unchanged here on a
CPU-only machine and on a GPU node.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--method", default="whenwho", choices=sorted(OBJECTIVES))
    ap.add_argument("--scale", default="small")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="trials per slot at each packing")
    ap.add_argument("--packings", default="1,0.5,0.25")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    args = ap.parse_args()
    objective = OBJECTIVES[args.method]
    if not torch.cuda.is_available():
        print(
            "no CUDA device here (torch.cuda.is_available() is False): GPU packing not "
            "measured; run this script unchanged on a GPU node"
        )
        return 0
    from sedsweep.sweep.runner import run_sweep
    from sedsweep.sweep.spec import load_sweep

    packings = [float(p) for p in args.packings.split(",")]
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"{args.method} at --scale {args.scale}, {args.epochs} epochs")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for packing in packings:
            slots = max(1, round(1 / packing))
            trials = slots * args.rounds
            spec = {
                "name": f"packing{str(packing).replace('.', '_')}",
                "method": args.method,
                "scale": args.scale,
                "objective": {"metric": objective},
                "budget": {"trials": trials, "max_epochs": args.epochs},
                "search": {"algorithm": "random"},
                "scheduler": {"type": "none"},
                "resources": {"cpu": args.cpus_per_trial, "gpu": packing},
            }
            path = workdir / f"{spec['name']}.yaml"
            path.write_text(yaml.safe_dump(spec))
            plan = load_sweep(path)
            with GpuSampler() as gpu:
                started = time.perf_counter()
                outcome = run_sweep(plan, workdir=workdir)
                wall = time.perf_counter() - started
            if not outcome.complete:
                print(f"packing {packing}: sweep incomplete ({outcome.summary()})")
                continue
            epoch_s = _epoch_times(outcome.path)
            per_hour = trials * args.epochs / wall * 3600
            rows.append((packing, slots, trials, wall, statistics.mean(epoch_s), per_hour, gpu))
    if not rows:
        return 1
    base = next((r[5] for r in rows if r[0] == 1.0), rows[0][5])
    print(f"\n{'gpu/trial':>9} {'at once':>7} {'trials':>6} {'wall':>8} {'epoch':>8} "
          f"{'util %':>7} {'mem MiB':>8} {'trial-ep/h':>10} {'speed-up':>8}")  # fmt: skip
    for packing, slots, trials, wall, epoch, per_hour, gpu in rows:
        speed_up = per_hour / base
        print(f"{packing:>9g} {slots:>7} {trials:>6} {wall:>7.1f}s {epoch:>7.2f}s "
              f"{gpu.util():>7} {gpu.memory():>8} {per_hour:>10.0f} {speed_up:>8.2f}")  # fmt: skip
    print("\nepoch = mean epoch time of a trial; trial-ep/h = trials × epochs / wall × 3600 on "
          "the one GPU; speed-up against one trial per GPU")  # fmt: skip
    return 0


OBJECTIVES = {
    "whenwho": "val/when_frame_auc",
    "staged": "val/lwlrap",
    "mtl_attention": "val/ap_micro",
    "null": "val/score",
}


def _epoch_times(experiment: Path) -> list[float]:
    return [
        json.loads(line)["epoch_time_s"]
        for result in experiment.glob("run_trial*/result.json")
        for line in result.read_text().splitlines()
        if line.strip()
    ]


class GpuSampler:
    """nvidia-smi utilisation and memory of GPU 0, every 0.5 s, from a process it started
    (and stops by its own handle); 'n/a' where nvidia-smi is not installed."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        smi = shutil.which("nvidia-smi")
        if smi:
            self._proc = subprocess.Popen(
                [smi, "--id=0", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.samples.append((util, mem))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def util(self) -> str:
        return f"{statistics.mean(u for u, _ in self.samples):.0f}" if self.samples else "n/a"

    def memory(self) -> str:
        return f"{max(m for _, m in self.samples):.0f}" if self.samples else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
