"""Reading and writing audio files, with one-line errors for unreadable or empty files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from sedsweep.errors import UserError
from sedsweep.fsio import atomic_file


def audio_info(path: str | Path) -> tuple[int, int]:
    """Return (frames, sample rate) of an audio file, raising UserError if it is unusable."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        raise UserError(f"unreadable audio file ({_reason(exc, path)})", where=path) from None
    if info.frames <= 0:
        raise UserError("audio file has zero length", where=path)
    return int(info.frames), int(info.samplerate)


def read_audio(path: str | Path, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32, resampled to `sr` when given."""
    try:
        y, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        raise UserError(f"unreadable audio file ({_reason(exc, path)})", where=path) from None
    if y.shape[0] == 0:
        raise UserError("audio file has zero length", where=path)
    mono = y.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise UserError("audio file contains NaN or infinite samples", where=path)
    if sr is not None and sr != file_sr:
        import librosa

        mono = librosa.resample(mono, orig_sr=file_sr, target_sr=sr).astype(np.float32)
        file_sr = sr
    return mono, int(file_sr)


def write_wav(path: str | Path, y: np.ndarray, sr: int) -> None:
    """Write mono float audio as 16-bit PCM WAV, atomically; clips to [-1, 1]."""
    data = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0)
    encoded = io.BytesIO()  # soundfile meets a short write with an assert, not an OSError
    sf.write(encoded, data, sr, format="WAV", subtype="PCM_16")
    with atomic_file(path, "wb") as handle:
        handle.write(encoded.getbuffer())


def _reason(exc: BaseException, path: str | Path) -> str:
    lines = str(exc).replace(f"Error opening {str(path)!r}: ", "").strip().splitlines()
    return lines[-1].rstrip(".") if lines else type(exc).__name__
