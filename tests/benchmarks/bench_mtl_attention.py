"""Benchmark: the 2APAE paper's Tables IV and V on synthetic `remix` corpora, sized for a CPU.

Run from the repository root, e.g.

    nice -n 10 .venv/bin/python tests/benchmarks/bench_mtl_attention.py

The defaults fit ~30 minutes on 2 shared CPU cores; the paper's full grid and batch size are
`--table5-snr 0 10 20 --batch-size 24` (with far more clips and epochs for its numbers).
One corpus per SNR (the same event and background draws at every SNR), folds 1–2 train,
3 validation (model selection, lr plateau), 4 test. Table IV: GAP, GMP, GWRP, atrous attention
(baselines, no decoder) and two-step attention with the decoder (α = 0.001); Table V: two-step
attention with α ∈ {0, 0.001, 0.01}. Each cell is micro-AP / macro-AP / macro AUC on the test
fold (selected weights), mean ± std over seeds; a second table gives frame AUC and segment F1.
Runs go to `--jobs` processes with one torch thread each (small convolutions run fastest so).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sedsweep.data.corpus import META_FILE, Corpus
from sedsweep.data.synth import make_remix
from sedsweep.features import FeatureSet, build_features, resolve_params
from sedsweep.methods.mtl_attention import MtlAttention, MtlAttentionConfig

PAPER_MAP = 311 * 64  # T × F values that GWRP ranks in the paper (r = 0.9998)
TABLE4 = {  # row -> config overrides
    "GAP": {"pooling": "gap", "mtl": {"alpha": 0.0}},
    "GMP": {"pooling": "gmp", "mtl": {"alpha": 0.0}},
    "GWRP": {"pooling": "gwrp", "mtl": {"alpha": 0.0}},
    "atrous AP": {"pooling": "atrous", "mtl": {"alpha": 0.0}},
    "2APAE (α=0.001)": {"pooling": "two_step", "mtl": {"alpha": 0.001}},
}
TABLE5 = {f"α = {a:g}": {"pooling": "two_step", "mtl": {"alpha": a}} for a in (0.0, 0.001, 0.01)}
FEATURES: dict[float, FeatureSet] = {}  # SNR -> FeatureSet, inherited by forked workers


def corpora(root: Path, args: argparse.Namespace) -> list[Corpus]:
    """The remix corpora (one per SNR), generated once into `root` and reused afterwards."""
    dirs = [root / f"snr_{s:g}db" for s in args.snr]
    if all((d / META_FILE).exists() for d in dirs):
        return [Corpus.load(d) for d in dirs]
    return make_remix(
        root, clips=args.clips, classes=args.classes, snr_db=args.snr, sr=args.sr, overwrite=True
    )


def run_one(job: tuple[float, str, int, dict[str, Any]]) -> tuple[float, str, int, dict, float]:
    """Train one configuration for the fixed epoch budget; test metrics of the selected model."""
    snr, row, seed, config = job
    torch.set_num_threads(1)
    started = time.perf_counter()
    method = MtlAttention(
        MtlAttentionConfig.model_validate(config), FEATURES[snr], torch.device("cpu")
    )
    while method.epoch < method.cfg.epochs:
        method.train_epoch()
    seconds = (time.perf_counter() - started) / method.cfg.epochs
    return snr, row, seed, method.evaluate("test"), seconds


def cell(values: list[float]) -> str:
    """mean ± std (sample std; 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f}±{std:.3f}"


def table(title: str, rows: list[str], snrs: list[float], results: dict, keys: list[str]) -> None:
    """Print rows × SNR cells of `keys` joined by ' / ', then each SNR's ordering by keys[0]."""
    width = max(len(r) for r in rows) + 2
    print(f"\n{title}  ({' / '.join(keys)}, mean±std over seeds)")
    print(" " * width + "".join(f"{f'SNR {s:g} dB':<42}" for s in snrs))
    for row in rows:
        cells = [" / ".join(cell([m[k] for m in results[(s, row)]]) for k in keys) for s in snrs]
        print(f"{row:<{width}}" + "".join(f"{c:<42}" for c in cells))
    for s in snrs:
        means = {r: statistics.fmean(m[keys[0]] for m in results[(s, r)]) for r in rows}
        order = " > ".join(sorted(rows, key=means.__getitem__, reverse=True))
        print(f"  ordering by {keys[0]} at {s:g} dB: {order}")


def main() -> None:
    """Generate corpora, extract features, train every (SNR, row, seed), print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=240, help="mixtures per SNR (4 folds)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    ap.add_argument("--table5-snr", type=float, nargs="+", default=[20.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=float, default=0.125, help="model.width (1 = paper)")
    ap.add_argument("--batch-size", type=int, default=8, help="paper: 24")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=10, help="ReduceLROnPlateau patience")
    ap.add_argument("--sr", type=int, default=16000)
    ap.add_argument("--n-mels", type=int, default=32)
    ap.add_argument("--hop", type=int, default=2048, help="hop = window = n_fft, in samples")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep corpora/features here")
    args = ap.parse_args()
    table5_snr = args.table5_snr
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        started = time.perf_counter()
        made = corpora(root / f"remix-{args.clips}x{args.classes}", args)
        params = resolve_params(
            "deshmukh2020",
            {"sr": args.sr, "n_fft": args.hop, "win_length": args.hop, "hop_length": args.hop,
             "n_mels": args.n_mels, "fmax": args.sr / 2},
        )  # fmt: skip
        for snr, corpus in zip(args.snr, made, strict=True):
            fs: FeatureSet = build_features(corpus, params, root / "features", progress=False)
            FEATURES[snr] = fs
        fs = FEATURES[args.snr[0]]
        t, f = fs.fixed_length, fs.n_mels
        r = 0.9998 ** (PAPER_MAP / (t * f))
        print(
            f"corpora: remix, {len(fs)} clips × {len(args.snr)} SNRs, {len(fs.classes)} classes, "
            f"label prevalence {fs.weak.mean():.2f} (= chance micro-AP), folds "
            f"{sorted(set(fs.folds.tolist()))} (train 1-2, val 3, test 4); features "
            f"{t} frames × {f} mel bands ({args.sr} Hz, hop {args.hop}); ready in "
            f"{time.perf_counter() - started:.0f} s"
        )
        base = {
            "epochs": args.epochs, "batch_size": args.batch_size, "model": {"width": args.width},
            "gwrp_r": r, "optim": {"lr": args.lr, "patience": args.patience},
        }  # fmt: skip
        rows = {(s, row): cfg for s in args.snr for row, cfg in TABLE4.items()}
        rows |= {(s, row): cfg for s in table5_snr for row, cfg in TABLE5.items()}
        jobs = [
            (s, row, seed, {**base, **cfg, "seed": seed})
            for seed in range(args.seeds)
            for (s, row), cfg in rows.items()
            if not (row == "α = 0.001" and (s, "2APAE (α=0.001)") in rows)  # the same runs
        ]
        print(
            f"model: width {args.width} (channels {MtlAttentionConfig(**base).model.channels}), "
            f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs, plateau patience "
            f"{args.patience}, GWRP r = 0.9998^({PAPER_MAP}/{t * f}) = {r:.5f}; "
            f"{len(jobs)} runs on {args.jobs} processes"
        )
        results: dict[tuple[float, str], list[dict[str, float]]] = {}
        epoch_s: dict[str, list[float]] = {}
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            for snr, row, _, metrics, seconds in pool.map(run_one, jobs):
                results.setdefault((snr, row), []).append(metrics)
                if row == "2APAE (α=0.001)":
                    results.setdefault((snr, "α = 0.001"), []).append(metrics)
                epoch_s.setdefault(row, []).append(seconds)
        print(f"\nall runs done in {time.perf_counter() - started:.0f} s wall")
        print("seconds per epoch (train + val, one thread): " + ", ".join(
            f"{row} {np.median(v):.2f}" for row, v in epoch_s.items()
        ))  # fmt: skip
        ap3 = ["ap_micro", "ap_macro", "auc_macro"]
        table("Table IV", list(TABLE4), args.snr, results, ap3)
        table(
            "Table IV, localisation", list(TABLE4), args.snr, results, ["frame_auc", "segment_f1"]
        )
        table("Table V", list(TABLE5), table5_snr, results, ap3)
        selected = {
            row: [m["selected_epoch"] for s in args.snr for m in results[(s, row)]]
            for row in TABLE4
        }
        print("selected epochs: " + ", ".join(f"{r} {np.mean(v):.1f}" for r, v in selected.items()))


if __name__ == "__main__":
    main()
