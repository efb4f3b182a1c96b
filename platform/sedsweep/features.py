"""Log-mel features: paper presets, parallel extraction and a content-addressed on-disk cache."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sedsweep.data.audio import read_audio
from sedsweep.data.corpus import CLIPS_FILE, Clip, Corpus, check_duration
from sedsweep.errors import UserError, unknown_name
from sedsweep.fsio import temp_dir_for, write_json
from sedsweep.progress import Progress, phase

log = logging.getLogger(__name__)

# Bump when extraction changes numerically: old cache entries then stop matching.
FEATURE_CODE_VERSION = "2"  # 2: data in one raw memory-mapped file, float16 by default
ENTRY_FILE = "entry.json"
DATA_FILE = "data.bin"  # [frames, n_mels] in params.dtype, C order, no header (shape: entry.json)
_ARRAYS = ("offsets", "frame_times")  # small .npy files beside it, memory-mapped too
_CHUNK = 1 << 24  # bytes read at a time when checksumming a file
# Worker processes only pay off for long corpora: measured on 2 cores (tests/benchmarks/
# bench_features.py), spawning 2 workers costs ~5.5 s and one BLAS-single-threaded process
# extracts ~1400 s of 32 kHz audio per second, so 2 processes break even near 20 000 s of audio.
MIN_AUDIO_S_FOR_PROCESSES = 30_000.0


class FeatureParams(BaseModel):
    """Log-mel extraction settings; every field can be overridden on top of a preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # upper bounds: far beyond any audio front end, below what exhausts memory or time
    sr: int = Field(gt=0, le=384_000, description="sample rate the audio is resampled to")
    n_mels: int = Field(gt=0, le=1_024)
    n_fft: int = Field(gt=0, le=1 << 16)
    win_length: int = Field(gt=0, le=1 << 16, description="analysis window in samples (≤ n_fft)")
    hop_length: int = Field(gt=0, le=1 << 16)
    window: Literal["hann", "hamming"] = "hann"
    center: bool = Field(default=True, description="pad so frame t is centred at t·hop")
    fmin: float = Field(default=0.0, ge=0)
    fmax: float | None = Field(default=None, gt=0, description="None means sr / 2")
    power: float = Field(default=2.0, gt=0)
    log: Literal["log", "db"] = "log"
    log_offset: float = Field(default=1e-8, gt=0, description="log(mel + log_offset)")
    trim_silence: bool = False
    trim_top_db: float = Field(default=60.0, gt=0)
    fixed_frames: int | None = Field(default=None, gt=0, description="repeat/downsample to this")
    dtype: Literal["float16", "float32"] = Field(
        default="float16",
        description="how the cache stores the log-mels: float16 halves memory and disk "
        "(relative rounding ≤ 2^-11, far below the spread of a z-scored log-mel)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureParams:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be ≤ n_fft ({self.n_fft})")
        top = self.fmax if self.fmax is not None else self.sr / 2
        if top > self.sr / 2:
            raise ValueError(f"fmax ({top:g}) must be ≤ sr / 2 ({self.sr / 2:g})")
        if self.fmin >= top:
            raise ValueError(f"fmin ({self.fmin:g}) must be < fmax ({top:g})")
        return self

    @property
    def hop_s(self) -> float:
        """Frame hop in seconds."""
        return self.hop_length / self.sr


PRESETS: dict[str, FeatureParams] = {
    # Morfi & Stowell 2018: 40 log mel bands, 44.1 kHz, 1024-sample Hamming, hop 512.
    "morfi2018": FeatureParams(
        sr=44100, n_mels=40, n_fft=1024, win_length=1024, hop_length=512, window="hamming"
    ),
    # He et al. 2020: 80 bands, 40 ms frames with 50 % overlap, silence trimmed, 2000 frames.
    "he2020": FeatureParams(
        sr=44100,
        n_mels=80,
        n_fft=2048,
        win_length=1764,
        hop_length=882,
        window="hann",
        trim_silence=True,
        fixed_frames=2000,
    ),
    # Deshmukh et al. 2020 (code): 32 kHz, Hamming 2048, hop 1024, 64 bands 50 Hz-16 kHz.
    "deshmukh2020": FeatureParams(
        sr=32000,
        n_mels=64,
        n_fft=2048,
        win_length=2048,
        hop_length=1024,
        window="hamming",
        fmin=50.0,
        fmax=16000.0,
        center=False,  # the published code's framing: 311 frames per 10 s clip
    ),
}


def resolve_params(
    preset: str, overrides: Mapping[str, Any] | None = None, where: str = "--set"
) -> FeatureParams:
    """A preset with field overrides applied and validated; bad names/values are UserErrors
    naming `where` (the option, or the file's `features` key)."""
    if preset not in PRESETS:
        raise UserError(unknown_name("preset", preset, PRESETS), where="--preset")
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in FeatureParams.model_fields]
    if unknown:
        raise UserError(
            unknown_name("feature field", unknown[0], FeatureParams.model_fields), where=where
        )
    try:
        return FeatureParams.model_validate({**PRESETS[preset].model_dump(), **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "params"
        raise UserError(f"feature field {name!r}: {err['msg']}", where=where) from None


# -- extraction --------------------------------------------------------------------------------
def frame_index_map(n_frames: int, target: int) -> np.ndarray:
    """Indices that repeat a short clip or evenly downsample a long one to `target` frames."""
    if n_frames >= target:
        return np.round(np.linspace(0, n_frames - 1, target)).astype(np.int64)
    return np.arange(target, dtype=np.int64) % n_frames


def log_mel(y: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Log-mel spectrogram [frames, n_mels] (float32) of mono audio at params.sr."""
    import librosa

    if not params.center and y.size < params.n_fft:  # uncentred framing needs one full window
        y = np.pad(y, (0, params.n_fft - y.size))
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=params.sr,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        win_length=params.win_length,
        window=params.window,
        center=params.center,
        power=params.power,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
    )
    if params.log == "db":
        out = librosa.power_to_db(mel, ref=1.0, amin=params.log_offset, top_db=None)
    else:
        out = np.log(mel + params.log_offset)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def extract_clip(path: str | Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """Features [T, n_mels] and each frame's centre time (s, in the original clip) for one file,
    bit for bit as the cache stores them: on one BLAS thread, as `build_features` extracts (the
    mel filterbank's matrix product rounds differently in the last bit on two threads)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        feats, times, _ = _extract(path, params)
    return feats, times


def _extract(path: str | Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray, int]:
    """`extract_clip`, and how many samples (at `params.sr`) the audio has."""
    import librosa

    y, sr = read_audio(path, sr=params.sr)
    samples = int(y.size)
    start = 0
    if params.trim_silence:
        _, (start, end) = librosa.effects.trim(y, top_db=params.trim_top_db)
        if end > start:
            y = y[start:end]
        else:
            start = 0
    feats = log_mel(y, params)
    first_centre = 0 if params.center else params.n_fft // 2
    times = (start + first_centre + np.arange(feats.shape[0]) * params.hop_length) / sr
    if params.fixed_frames is not None:
        idx = frame_index_map(feats.shape[0], params.fixed_frames)
        feats, times = feats[idx], times[idx]
    return feats, times.astype(np.float32), samples


def _extract_job(args: tuple[str, FeatureParams]) -> tuple[np.ndarray, np.ndarray, int]:
    return _extract(*args)


def check_audio_length(clip: Clip, samples: int, params: FeatureParams, where: Path) -> None:
    """The audio of `clip` lasts its declared duration (`check_duration`) and at least one
    analysis window."""
    check_duration(clip, samples / params.sr, where)
    if samples < params.n_fft:
        raise UserError(
            f"the audio lasts {samples} samples at {params.sr} Hz, shorter than one analysis "
            f"window (n_fft {params.n_fft})",
            where=f"{where}: {clip.path}",
        )


def _one_blas_thread() -> None:
    """Worker initialiser: small per-clip matrix products run ~5x faster on one BLAS thread."""
    from threadpoolctl import threadpool_limits

    global _BLAS_LIMIT
    _BLAS_LIMIT = threadpool_limits(limits=1)


_BLAS_LIMIT = None


# -- the feature set ---------------------------------------------------------------------------
@dataclass
class FeatureSet:
    """Per-clip log-mel arrays with weak targets, strong events, folds and verified flags."""

    params: FeatureParams
    classes: list[str]
    clip_ids: list[str]
    data: np.ndarray  # [sum of frames, n_mels] float16 or float32 (params.dtype)
    offsets: np.ndarray  # [n_clips + 1] int64: clip i is data[offsets[i]:offsets[i+1]]
    frame_times: np.ndarray  # [sum of frames] float32, frame centres in the original clip
    weak: np.ndarray  # [n_clips, n_classes] float32
    folds: np.ndarray  # [n_clips] int64
    verified: np.ndarray  # [n_clips] bool
    durations: np.ndarray  # [n_clips] float64
    events: list[list[tuple[float, float, int]]] | None  # per clip (onset, offset, class index)
    corpus_fingerprint: str
    key: str
    cache_path: Path | None = None
    cache_hit: bool = False
    snr_db: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # [n_clips] bool: whose strong annotation is complete (None: all of them, or no events)
    strong: np.ndarray | None = None
    # data, offsets and frame_times are read-only memory maps of the entry at cache_path
    mapped: bool = False

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getstate__(self) -> dict[str, Any]:
        """A mapped set pickles by reference: the arrays stay in the cache entry and the
        receiving process (a trial, on any node that sees `cache_path`) maps them again."""
        state = dict(self.__dict__)
        if self.mapped:
            for name in ("data", *_ARRAYS):
                state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if not self.mapped:
            return
        path = Path(str(self.cache_path))
        try:
            meta = json.loads((path / ENTRY_FILE).read_text())
            arrays = _map_entry(path, meta)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(
                f"this node cannot read the feature cache entry ({type(exc).__name__}): put "
                "--workdir on storage every node sees, or set resources.features: object_store",
                where=str(path),
            ) from None
        self.__dict__.update(arrays)

    def in_memory(self) -> FeatureSet:
        """This set with its arrays copied into memory (pickled by value, e.g. through Ray's
        object store, to nodes that do not see the cache)."""
        if not self.mapped:
            return self
        arrays = {name: np.array(getattr(self, name)) for name in ("data", *_ARRAYS)}
        return dataclasses.replace(self, mapped=False, **arrays)

    @property
    def nbytes(self) -> int:
        """Bytes of the frame arrays (features and frame times)."""
        return int(self.data.nbytes + self.frame_times.nbytes + self.offsets.nbytes)

    @property
    def n_mels(self) -> int:
        """Number of mel bins."""
        return int(self.data.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip."""
        return np.diff(self.offsets)

    @property
    def fixed_length(self) -> int | None:
        """The common frame count when every clip has the same length, else None."""
        lengths = self.lengths
        return int(lengths[0]) if len(lengths) and np.all(lengths == lengths[0]) else None

    @property
    def has_strong(self) -> bool:
        """Whether strong (onset/offset) annotations are available."""
        return self.events is not None

    def clip(self, i: int) -> np.ndarray:
        """Features [T_i, n_mels] of clip i (a view)."""
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def times(self, i: int) -> np.ndarray:
        """Frame centre times (s) of clip i."""
        return self.frame_times[self.offsets[i] : self.offsets[i + 1]]

    def stacked(self, indices: Sequence[int]) -> np.ndarray:
        """Clips [n, T, n_mels] stacked; needs a fixed length (use fixed_frames)."""
        if self.fixed_length is None:
            raise ValueError("clips have different lengths; set fixed_frames to stack them")
        t = self.fixed_length
        return self.data.reshape(len(self), t, self.n_mels)[np.asarray(indices, dtype=np.int64)]

    def indices(
        self, folds: Sequence[int] | None = None, verified: bool | None = None
    ) -> np.ndarray:
        """Indices of the clips in `folds` (all when None), optionally filtered by verified flag."""
        mask = np.ones(len(self), dtype=bool)
        if folds is not None:
            mask &= np.isin(self.folds, np.asarray(list(folds)))
        if verified is not None:
            mask &= self.verified == verified
        return np.flatnonzero(mask)

    def strong_targets(self, i: int) -> np.ndarray:
        """Frame-level targets [T_i, n_classes] (uint8): 1 where a frame centre lies in an event."""
        t = self.times(i)
        y = np.zeros((t.shape[0], len(self.classes)), dtype=np.uint8)
        for onset, offset, c in (self.events or [[]] * len(self))[i]:
            y[(t >= onset) & (t < offset), c] = 1
        return y

    def norm_stats(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-mel-bin mean and std over every frame of the given (training) clips only."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("normalisation needs at least one training clip")
        count, total, total_sq = 0, np.zeros(self.n_mels), np.zeros(self.n_mels)
        for i in idx:
            x = self.clip(int(i)).astype(np.float64)
            count += x.shape[0]
            total += x.sum(axis=0)
            total_sq += (x**2).sum(axis=0)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32)


# -- cache -------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """$SEDSWEEP_CACHE_DIR, else $XDG_CACHE_HOME/sedsweep/features, else ~/.cache/…"""
    if os.environ.get("SEDSWEEP_CACHE_DIR"):
        return Path(os.environ["SEDSWEEP_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sedsweep" / "features"


def cache_key(fingerprint: str, params: FeatureParams) -> str:
    """Content address of a feature set: corpus fingerprint, parameters, code version."""
    import librosa

    blob = json.dumps(
        {
            "corpus": fingerprint,
            "params": params.model_dump(mode="json"),
            "code": FEATURE_CODE_VERSION,
            "librosa": librosa.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _file_digest(path: Path) -> str:
    """blake2b of a file's bytes, read in chunks (a mapped corpus is never read whole)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_entry(path: Path, key: str, n_clips: int) -> dict[str, np.ndarray]:
    """Verify a cache entry and map its arrays read-only; raises ValueError naming any defect.

    Every file's size and checksum are checked (streamed, so the driver holds none of it); the
    arrays returned are memory maps, so whoever uses them reads only the pages it touches."""
    try:
        meta = json.loads((path / ENTRY_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable {ENTRY_FILE}: {exc}") from None
    if meta.get("key") != key or meta.get("n_clips") != n_clips:
        raise ValueError("entry does not match its key")
    files = [DATA_FILE, *(f"{name}.npy" for name in _ARRAYS)]
    for name in files:
        try:
            if (path / name).stat().st_size != meta["sizes"][name]:
                raise ValueError(f"{name} has the wrong size")
            if _file_digest(path / name) != meta["digests"][name]:
                raise ValueError(f"{name} does not match its recorded checksum")
        except OSError as exc:
            raise ValueError(f"{name} unreadable: {exc}") from None
    return _map_entry(path, meta)


def _map_entry(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a written entry, memory-mapped read-only (no checks: see `_read_entry`)."""
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    shape = tuple(meta["data_shape"])
    if shape[0] == 0:  # numpy cannot map an empty file
        arrays["data"] = np.zeros(shape, dtype=meta["dtype"])
    else:
        arrays["data"] = np.memmap(path / DATA_FILE, dtype=meta["dtype"], mode="r", shape=shape)
    return arrays


def _extract_entry(
    corpus: Corpus, params: FeatureParams, jobs: int, progress: bool, folder: Path
) -> dict[str, Any]:
    """Extract every clip into `folder`: the frames streamed into `DATA_FILE` in `params.dtype`
    as each clip is done (the driver never holds the corpus's features, in any precision),
    offsets and frame times as .npy files. Returns the entry's description (shapes, sizes,
    checksums). Each clip's audio length is checked as it arrives (`check_audio_length`)."""
    tasks = [(str(corpus.audio_path(c)), params) for c in corpus.clips]
    bar = Progress(len(tasks), f"log-mel {corpus.name}", "clip", enabled=progress)
    lengths, times = [], []
    where = corpus.root / CLIPS_FILE
    dtype = np.dtype(params.dtype)
    try:
        with open(folder / DATA_FILE, "wb") as out:
            for clip, (feats, frame_times, samples) in zip(
                corpus.clips, _extracted(tasks, jobs, corpus), strict=True
            ):
                check_audio_length(clip, samples, params, where)
                out.write(np.ascontiguousarray(feats, dtype=dtype).tobytes())
                lengths.append(feats.shape[0])
                times.append(frame_times)
                bar.advance()
            out.flush()
            os.fsync(out.fileno())
    finally:
        bar.close()
    arrays = {
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "frame_times": np.concatenate(times).astype(np.float32, copy=False),
    }
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr, allow_pickle=False)
    files = [DATA_FILE, *(f"{name}.npy" for name in _ARRAYS)]
    return {
        "dtype": dtype.name,
        "data_shape": [int(arrays["offsets"][-1]), params.n_mels],
        "sizes": {name: (folder / name).stat().st_size for name in files},
        "digests": {name: _file_digest(folder / name) for name in files},
    }


def _extracted(
    tasks: list[tuple[str, FeatureParams]], jobs: int, corpus: Corpus
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Each task's `_extract` result, in order: in this process for short corpora, else in
    `jobs` worker processes (`MIN_AUDIO_S_FOR_PROCESSES`)."""
    audio_s = sum(c.duration_s for c in corpus.clips)
    if jobs <= 1 or audio_s < MIN_AUDIO_S_FOR_PROCESSES:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            yield from map(_extract_job, tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_one_blas_thread
    ) as pool:
        yield from pool.map(_extract_job, tasks, chunksize=max(1, len(tasks) // (jobs * 8)))


def build_features(
    corpus: Corpus,
    params: FeatureParams,
    cache_dir: str | Path | None = None,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Load the corpus's features from the cache, extracting (in parallel) and caching on a miss.

    A partial or corrupt cache entry is detected (missing files, shape or checksum mismatch),
    removed and rebuilt.
    """
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).absolute()
    fingerprint = corpus.fingerprint()
    key = cache_key(fingerprint, params)
    path = root / key
    arrays, hit = None, False
    if path.exists():
        try:
            arrays, hit = _read_entry(path, key, len(corpus.clips)), True
        except ValueError as exc:
            log.warning("feature cache entry %s is damaged (%s); rebuilding", path, exc)
            shutil.rmtree(path, ignore_errors=True)
    if arrays is None:
        jobs = jobs or os.cpu_count() or 1
        what = f"extracting log-mel features of {corpus.name} ({len(corpus.clips)} clips)"
        with phase(what) if progress else contextlib.nullcontext():
            path = _write_entry(corpus, params, key, fingerprint, root, jobs, progress)
        arrays = _map_entry(path, json.loads((path / ENTRY_FILE).read_text()))
    return _feature_set(corpus, params, arrays, fingerprint, key, path, hit)


def _write_entry(
    corpus: Corpus,
    params: FeatureParams,
    key: str,
    fingerprint: str,
    root: Path,
    jobs: int,
    progress: bool,
) -> Path:
    """Extract into a temporary folder and rename it into place (the first writer wins)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = temp_dir_for(final)
    try:
        started = time.perf_counter()
        written = _extract_entry(corpus, params, jobs, progress, tmp)
        info = {
            "corpus": corpus.name,
            "corpus_root": str(corpus.root),
            "corpus_fingerprint": fingerprint,
            "params": params.model_dump(mode="json"),
            "code_version": FEATURE_CODE_VERSION,
            "n_clips": len(corpus.clips),
            "extract_seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(tmp / ENTRY_FILE, {**info, "key": key, **written})
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _feature_set(
    corpus: Corpus,
    params: FeatureParams,
    arrays: dict[str, np.ndarray],
    fingerprint: str,
    key: str,
    path: Path,
    hit: bool,
) -> FeatureSet:
    index = {name: i for i, name in enumerate(corpus.classes)}
    events = None
    if corpus.has_strong:
        events = [
            [(e.onset, e.offset, index[e.label]) for e in clip_events]
            for clip_events in corpus.events_by_clip()
        ]
    snr = [c.snr_db for c in corpus.clips]
    return FeatureSet(
        params=params,
        classes=list(corpus.classes),
        clip_ids=[c.path for c in corpus.clips],
        data=arrays["data"],
        offsets=arrays["offsets"],
        frame_times=arrays["frame_times"],
        weak=corpus.weak_labels().astype(np.float32),
        folds=np.array([c.fold for c in corpus.clips], dtype=np.int64),
        verified=np.array([c.verified for c in corpus.clips], dtype=bool),
        durations=np.array([c.duration_s for c in corpus.clips], dtype=np.float64),
        events=events,
        corpus_fingerprint=fingerprint,
        key=key,
        cache_path=path,
        cache_hit=hit,
        mapped=True,
        snr_db=None if all(s is None for s in snr) else np.array(snr, dtype=np.float64),
        strong=corpus.strong_clips(),
    )
