"""Evidence for `whenwho` (Morfi & Stowell): MIL max vs MMM, and the six rows of Table 3.

Run from the repository root, e.g.
    .venv/bin/python tests/benchmarks/bench_whenwho.py --clips 200 --epochs 20 --seeds 0 1 2

Generates one `lowres` corpus, extracts morfi2018 features once, then trains every setting for
every seed (no Ray, no MLflow) and prints test-split WHEN frame AUC and WHO clip AUC as
mean ± std over seeds, next to the paper's numbers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sedsweep.config import with_overrides
from sedsweep.data.synth import make_lowres
from sedsweep.features import PRESETS, build_features
from sedsweep.loop import run_epochs
from sedsweep.methods.whenwho import WhenWho, WhenWhoConfig

# Table 3 of the paper: (label, overrides, paper WHEN AUC, paper WHO AUC)
TABLE3: list[tuple[str, dict[str, Any], float, float]] = [
    ("separate (HnH / random)", {"mode": "separate"}, 0.90, 0.94),
    ("joint 0.5/0.5 HnH", {"mode": "joint", "input.joint": "hnh"}, 0.89, 0.52),
    ("joint 0.5/0.5 random", {"mode": "joint", "input.joint": "random"}, 0.47, 0.57),
    ("joint 0.5/5.0 HnH", {"mode": "joint", "input.joint": "hnh", "joint.w_who": 5.0}, 0.90, 0.50),
    (
        "joint 0.5/5.0 random",
        {"mode": "joint", "input.joint": "random", "joint.w_who": 5.0},
        0.82,
        0.75,
    ),
    ("tied (HnH / random)", {"mode": "tied"}, 0.87, 0.77),
]
LOSSES = [("max (eq. 2)", {"when_loss": "max"}), ("MMM (eq. 5)", {"when_loss": "mmm"})]


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> None:
    """Train every setting for every seed and print the two tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--width", type=int, default=16, help="conv channels = GRU = dense units")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["losses", "table3"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_lowres(
            Path(tmp) / "lowres", scale="small", clips=args.clips, seed=args.data_seed
        )
        fs = build_features(corpus, PRESETS["morfi2018"], Path(tmp) / "cache", progress=False)
        info = corpus.summary()
        print(
            f"corpus: lowres, {info['clips']} clips ({info['negative_clips']} negative), "
            f"{info['classes']} classes, {info['duration_s']['total']:.0f} s audio, "
            f"folds {info['folds']}; model width {args.width}, {args.epochs} epochs, "
            f"lr {args.lr}, seeds {args.seeds}"
        )
        base = {
            "epochs": args.epochs,
            "model": {"channels": args.width, "gru_units": args.width, "dense_units": args.width},
            "optim": {"lr": args.lr, "halve_every": max(args.epochs // 2, 1)},
        }

        def run(overrides: dict[str, Any], seed: int) -> dict[str, float]:
            cfg = WhenWhoConfig.model_validate(with_overrides(base, {**overrides, "seed": seed}))
            method = WhenWho(cfg, fs, torch.device("cpu"))
            run_epochs(method, cfg.epochs, eval_splits=())
            return method.evaluate("test")

        started = time.perf_counter()
        results: dict[str, list[dict[str, float]]] = {}
        todo = (LOSSES if args.only != "table3" else []) + (
            [(label, ov) for label, ov, *_ in TABLE3] if args.only != "losses" else []
        )
        for label, overrides in todo:
            results[label] = [run(overrides, s) for s in args.seeds]
            print(f"  done {label:<26} {time.perf_counter() - started:7.0f} s", flush=True)

        def col(label: str, key: str) -> list[float]:
            return [r[key] for r in results[label] if key in r]

        if args.only != "table3":
            print("\nWHEN loss (separate training, WHEN on HnH)   test WHEN frame AUC")
            for label, _ in LOSSES:
                print(f"  {label:<42} {_fmt(col(label, 'when_frame_auc'))}")
        if args.only != "losses":
            print(
                "\nTable 3 (test split)        WHEN frame AUC     WHO AUC macro      "
                "WHO AUC micro      paper WHEN/WHO"
            )
            for label, _, p_when, p_who in TABLE3:
                print(
                    f"  {label:<26} {_fmt(col(label, 'when_frame_auc')):<18} "
                    f"{_fmt(col(label, 'who_auc_macro')):<18} "
                    f"{_fmt(col(label, 'who_auc_micro')):<18} "
                    f"{p_when:.2f}/{p_who:.2f}"
                )
        print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
