"""Benchmark: log-mel extraction rate (serial vs processes) and cache-hit load time.

Run from the repository root:  .venv/bin/python tests/benchmarks/bench_features.py --clips 40
Prints clips/s, audio-seconds per wall-second, and the extraction / cache-hit time ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sedsweep import features as F
from sedsweep.data.synth import GENERATORS


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    """Generate a corpus, extract its features with 1..N processes, then time cache hits."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", default="remix", choices=sorted(GENERATORS))
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--preset", default="deshmukh2020", choices=sorted(F.PRESETS))
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hits", type=int, default=5, help="cache-hit repetitions")
    args = ap.parse_args()

    import librosa

    librosa.feature.melspectrogram(y=np.zeros(4096, dtype=np.float32), sr=16000)  # numba warm-up
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made, gen_s = _timed(
            lambda: GENERATORS[args.kind](root / "corpus", clips=args.clips, seed=0)
        )
        corpus = made[0] if isinstance(made, list) else made
        audio_s = sum(c.duration_s for c in corpus.clips)
        print(
            f"corpus: {args.kind}, {len(corpus.clips)} clips, {audio_s:.0f} s of audio "
            f"at {corpus.sample_rate} Hz, generated in {gen_s:.1f} s"
        )
        params = F.PRESETS[args.preset]
        print(f"preset {args.preset}: {params.model_dump()}")
        print(f"{'processes':>9} {'seconds':>8} {'clips/s':>8} {'audio s/s':>10}")
        extract_times = {}
        for jobs in args.jobs:
            F.MIN_AUDIO_S_FOR_PROCESSES = 0.0 if jobs > 1 else float("inf")
            cache = root / f"cache-{jobs}"
            fs, secs = _timed(
                lambda c=cache, j=jobs: F.build_features(corpus, params, c, jobs=j, progress=False)
            )
            assert not fs.cache_hit
            extract_times[jobs] = secs
            print(f"{jobs:>9} {secs:>8.2f} {len(fs) / secs:>8.1f} {audio_s / secs:>10.0f}")
        hits = []
        for _ in range(args.hits):
            fs, secs = _timed(
                lambda: F.build_features(corpus, params, root / "cache-1", progress=False)
            )
            assert fs.cache_hit
            hits.append(secs)
        hit = statistics.median(hits)
        mb = fs.data.nbytes / 2**20
        print(f"cache hit: median {hit * 1000:.1f} ms over {args.hits} loads ({mb:.1f} MiB)")
        for jobs, secs in extract_times.items():
            print(f"ratio extraction({jobs} proc) / cache hit: {secs / hit:.0f}x")
        if len(extract_times) > 1:
            base = extract_times[min(extract_times)]
            for jobs, secs in extract_times.items():
                print(f"speed-up with {jobs} processes vs {min(extract_times)}: {base / secs:.2f}x")


if __name__ == "__main__":
    main()
