"""The 2APAE mixing procedure: isolated events placed into a background scene at a given SNR.

Deshmukh, Raj & Singh (2020), section on data: three non-overlapping events of at most 2 s
are mixed into a 10 s acoustic scene; the scene is normalised and each event is scaled so
that its energy over its own span is `snr_db` above the scene's energy over that span.
The published code places the events at 0.5, 3.0 and 5.5 s (the default slots here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sedsweep.errors import UserError

DEFAULT_ONSETS_S = (0.5, 3.0, 5.5)
SCENE_RMS = 0.05  # the normalised scene level (about -26 dBFS), leaving headroom for events
_EPS = 1e-12


@dataclass(frozen=True)
class PlacedEvent:
    """An isolated event to mix: its (trimmed) audio, label and onset in the scene."""

    audio: np.ndarray
    label: str
    onset_s: float


def trim_event(y: np.ndarray, sr: int, max_s: float = 2.0, top_db: float = 60.0) -> np.ndarray:
    """Strip leading/trailing silence (librosa.effects.trim) and truncate to `max_s` seconds."""
    import librosa

    if y.size == 0:
        return y
    trimmed, _ = librosa.effects.trim(y, top_db=top_db)
    return trimmed[: round(max_s * sr)]


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Loop or cut a background recording to exactly `n` samples."""
    if y.size >= n:
        return y[:n]
    reps = int(np.ceil(n / max(y.size, 1)))
    return np.tile(y, reps)[:n]


def mix_scene(
    background: np.ndarray, sr: int, events: Sequence[PlacedEvent], snr_db: float
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Mix events into a normalised scene at `snr_db` (event vs scene energy over the event span).

    Returns the mixture (peak-limited to 1 by a global gain, which keeps every SNR) and the exact
    strong events (onset_s, offset_s, label) of what was placed. Events must not overlap.
    """
    scene = np.asarray(background, dtype=np.float64)
    rms = np.sqrt(np.mean(scene**2))
    scene = scene * (SCENE_RMS / rms) if rms > _EPS else scene
    mixture = scene.copy()
    strong: list[tuple[float, float, str]] = []
    last_end = -1
    for ev in sorted(events, key=lambda e: e.onset_s):
        start = round(ev.onset_s * sr)
        audio = np.asarray(ev.audio, dtype=np.float64)[: max(len(scene) - start, 0)]
        if audio.size == 0:
            continue
        if start < last_end:
            raise ValueError(f"event {ev.label!r} at {ev.onset_s:g} s overlaps the previous event")
        span = slice(start, start + audio.size)
        scene_energy = max(np.mean(scene[span] ** 2), _EPS)
        event_energy = max(np.mean(audio**2), _EPS)
        gain = np.sqrt(scene_energy / event_energy * 10.0 ** (snr_db / 10.0))
        mixture[span] += gain * audio
        last_end = start + audio.size
        strong.append((start / sr, last_end / sr, ev.label))
    peak = np.max(np.abs(mixture))
    if peak > 0.99:
        mixture *= 0.99 / peak
    return mixture.astype(np.float32), strong


def snr_values(values: Iterable[Any]) -> tuple[float, ...]:
    """Validated SNRs in dB: finite numbers, at least one, none repeated (option --snr)."""
    snrs = []
    for value in values:
        try:
            snr = float(value)
        except (TypeError, ValueError):
            snr = math.nan
        if not math.isfinite(snr):
            raise UserError(f"SNR {value!r} is not a finite number (dB)", where="--snr")
        snrs.append(snr)
    if not snrs:
        raise UserError("give at least one SNR value (dB)", where="--snr")
    if len(set(snrs)) != len(snrs):
        raise UserError(f"SNR values repeat: {snrs}", where="--snr")
    return tuple(snrs)
