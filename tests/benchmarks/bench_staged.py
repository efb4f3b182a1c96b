"""Benchmark: the Table 1 grid of He et al. (2020) on a synthetic `noisy` corpus, on CPU.

Rows: sigmoid / sig_softmax / sig_sparsemax. Columns: verified data only (stages 1 + 3),
staged training with top-k masking, staged training with the updatable threshold η.
Cells: test lwlrap (the verified test fold), mean ± std over seeds; the corpus is fixed and the
seed moves initialisation, batches, crops and augmentation. Stages are split 40/40/20 % of
`--iterations` (the paper's 10k/10k/5k shape).

Run from the repository root (defaults: 27 runs of 45-75 s, 20-30 min on 2 shared cores):
    nice -n 10 .venv/bin/python tests/benchmarks/bench_staged.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sedsweep.data.synth import make_noisy
from sedsweep.features import build_features, resolve_params
from sedsweep.loop import run_epochs
from sedsweep.methods.staged import Staged, StagedConfig

ACTIVATIONS = ("sigmoid", "sig_softmax", "sig_sparsemax")
COLUMNS = {
    "verified_only": {"verified_only": True},
    "topk": {"selection": "topk"},
    "threshold": {"selection": "threshold"},
}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    corpus = ap.add_argument_group("corpus (make_noisy)")
    corpus.add_argument("--clips", type=int, default=1200)
    corpus.add_argument("--classes", type=int, default=20)
    corpus.add_argument("--noise-rate", type=float, default=0.6, help="unverified clips corrupted")
    corpus.add_argument("--verified-fraction", type=float, default=0.2)
    corpus.add_argument("--test-fraction", type=float, default=0.4, help="of the verified clips")
    corpus.add_argument("--max-duration", type=float, default=4.0, help="s (min 0.5 s)")
    corpus.add_argument("--corpus-seed", type=int, default=0)
    feats = ap.add_argument_group("features (he2020 preset, scaled down)")
    feats.add_argument("--n-mels", type=int, default=40)
    feats.add_argument("--frames", type=int, default=128, help="fixed_frames (20 ms hop)")
    feats.add_argument("--crop", type=int, default=64, help="crop_frames")
    train = ap.add_argument_group("training")
    train.add_argument("--seeds", type=int, default=3)
    train.add_argument("--iterations", type=int, default=800, help="all stages together")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--k", type=int, default=5, help="paper: 10 of a batch of 64")
    train.add_argument("--alpha", type=float, default=0.9)
    train.add_argument("--lr", type=float, default=2e-3, help="paper: 1e-3 over 25k iterations")
    train.add_argument("--channels", type=int, nargs=4, default=[8, 16, 16, 32])
    train.add_argument("--gru", type=int, default=32)
    train.add_argument("--dense", type=int, default=32)
    train.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    return ap.parse_args()


def _config(args: argparse.Namespace, activation: str, column: str, seed: int) -> StagedConfig:
    """One cell's configuration."""
    n = args.iterations
    stages = [round(0.4 * n), round(0.4 * n), n - 2 * round(0.4 * n)]
    return StagedConfig.model_validate(
        {
            "seed": seed,
            "activation": activation,
            "batch_size": args.batch_size,
            "crop_frames": args.crop,
            "iterations_per_epoch": n,
            "epochs": 1,
            "staged": {"stages": stages, "k": args.k, "alpha": args.alpha, **COLUMNS[column]},
            "specaugment": {"freq_width": 5, "time_width": 12, "time_warp": 8},
            "model": {"channels": args.channels, "gru_units": args.gru, "dense_units": args.dense},
            "optim": {"lr": args.lr},
            "split": {"train_folds": [1], "test_folds": [2], "val_fraction": 0.0},
        }
    )


def main() -> None:
    """Build the corpus and features once, train every cell for every seed, print Table 1."""
    args = _args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        started = time.perf_counter()
        corpus = make_noisy(
            root / f"noisy-{args.clips}-{args.classes}-{args.noise_rate}-{args.corpus_seed}",
            clips=args.clips,
            classes=args.classes,
            noise_rate=args.noise_rate,
            verified_fraction=args.verified_fraction,
            test_fraction=args.test_fraction,
            min_duration=0.5,
            max_duration=args.max_duration,
            seed=args.corpus_seed,
            sr=16000,
            overwrite=True,
        )
        params = resolve_params(
            "he2020",
            {
                "sr": 16000,
                "n_fft": 1024,
                "win_length": 640,
                "hop_length": 320,
                "n_mels": args.n_mels,
                "fixed_frames": args.frames,
            },
        )
        fs = build_features(corpus, params, root / "feature-cache", progress=False)
        realised = corpus.generator["label_noise_rate_realised"]
        print(
            f"corpus: {len(fs)} clips, {len(fs.classes)} classes, "
            f"{int(fs.verified.sum())} verified ({int((fs.folds == 2).sum())} = the test fold), "
            f"{int((~fs.verified).sum())} unverified with label noise rate {args.noise_rate} "
            f"(realised {realised:.2f}), durations 0.5-{args.max_duration} s at 16 kHz; "
            f"features: {args.n_mels} mels, {args.frames} frames, crops of {args.crop}; "
            f"prepared in {time.perf_counter() - started:.0f} s"
        )
        cfg = _config(args, "sig_sparsemax", "threshold", 0)
        print(
            f"model: channels {args.channels}, BiGRU {args.gru}, dense {args.dense}, "
            f"{cfg.model.pooling} pooling; batch {args.batch_size}, stages {cfg.staged.stages} "
            f"iterations, k {args.k}, alpha {args.alpha}, lr {args.lr}, mixup + SpecAugment on; "
            f"{args.seeds} seeds, torch threads {args.threads}",
            flush=True,
        )
        scores: dict[tuple[str, str], list[float]] = {}
        for activation, column, seed in itertools.product(ACTIVATIONS, COLUMNS, range(args.seeds)):
            run_started = time.perf_counter()
            method = Staged(_config(args, activation, column, seed), fs, torch.device("cpu"))
            run_epochs(method, method.cfg.epochs, eval_splits=())
            value = method.evaluate("test")["lwlrap"]
            scores.setdefault((activation, column), []).append(value)
            print(
                f"  {activation:13s} {column:13s} seed {seed}: lwlrap {value:.4f} "
                f"({time.perf_counter() - run_started:.0f} s)",
                flush=True,
            )
        _report(scores, args.seeds)
        print(f"total {time.perf_counter() - started:.0f} s")


def _report(scores: dict[tuple[str, str], list[float]], seeds: int) -> None:
    """Table 1 (mean ± std), the orderings, and paired seed-wise differences between columns."""

    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"

    print(f"\ntest lwlrap, mean ± std over {seeds} seeds")
    print(f"{'':14s}" + "".join(f"{c:>19s}" for c in COLUMNS))
    for activation in ACTIVATIONS:
        print(f"{activation:14s}" + "".join(f"{cell(scores[activation, c]):>19s}" for c in COLUMNS))
    means = {key: statistics.mean(v) for key, v in scores.items()}
    print("\nordering within each row (best first):")
    for a in ACTIVATIONS:
        print(f"  {a:14s}", " > ".join(sorted(COLUMNS, key=lambda c, a=a: -means[a, c])))
    print("ordering within each column (best first):")
    for c in COLUMNS:
        print(f"  {c:14s}", " > ".join(sorted(ACTIVATIONS, key=lambda a, c=c: -means[a, c])))
    columns = {c: f"{np.mean([means[a, c] for a in ACTIVATIONS]):.4f}" for c in COLUMNS}
    rows = {a: f"{np.mean([means[a, c] for c in COLUMNS]):.4f}" for a in ACTIVATIONS}
    print(f"column means over rows: {columns}\nrow means over columns: {rows}")
    print("paired differences (same seed), mean ± std:")
    for a in ACTIVATIONS:
        for better, worse in (("threshold", "topk"), ("topk", "verified_only")):
            diff = list(np.subtract(scores[a, better], scores[a, worse]))
            print(f"  {a:14s} {better} − {worse}: {cell(diff)}")


if __name__ == "__main__":
    main()
