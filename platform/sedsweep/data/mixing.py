"""The 2APAE mixing procedure: isolated events placed into a background scene at a given SNR.

Deshmukh, Raj & Singh (2020), section on data: three non-overlapping events of at most 2 s
are mixed into a 10 s acoustic scene; the scene is normalised and each event is scaled so
that its energy over its own span is `snr_db` above the scene's energy over that span.
The published code places the events at 0.5, 3.0 and 5.5 s (the default slots here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sedsweep.data.audio import write_wav
from sedsweep.data.corpus import Clip, Corpus, Event
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


LAYOUTS = ("subdirs", "column")


@dataclass
class SnrCorpora:
    """Mixtures of the same draws at several SNRs, gathered and written as corpora.

    One SNR gives one corpus at the output folder; several give one corpus per SNR in
    `snr_{v:g}db/` sub-folders (layout "subdirs"), or one corpus holding each mixture once per
    SNR, with an `snr_db` column and audio under `audio/snr_{v:g}db/` ("column").
    """

    snrs: tuple[float, ...]
    layout: str = "subdirs"
    rows: dict[float, tuple[list[Clip], list[Event]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"must be 'subdirs' or 'column', not {self.layout!r}", where="--layout")
        self.rows = {snr: ([], []) for snr in self.snrs}

    @property
    def subdirs(self) -> bool:
        """One corpus per SNR, each in its own sub-folder."""
        return len(self.snrs) > 1 and self.layout == "subdirs"

    @property
    def column(self) -> bool:
        """One corpus with an snr_db column."""
        return len(self.snrs) > 1 and self.layout == "column"

    def folder(self, root: Path, snr: float) -> Path:
        """The corpus folder that holds the SNR's mixtures."""
        return root / f"snr_{snr:g}db" if self.subdirs else root

    def add(
        self,
        root: Path,
        i: int,
        snr: float,
        audio: np.ndarray,
        sr: int,
        labels: tuple[str, ...],
        fold: int,
        strong: Sequence[tuple[float, float, str]],
    ) -> None:
        """Write mixture `i` at `snr` under `root` and record its clip and strong events."""
        path = f"audio/snr_{snr:g}db/{i:05d}.wav" if self.column else f"audio/{i:05d}.wav"
        write_wav(self.folder(root, snr) / path, audio, sr)
        clips, events = self.rows[snr]
        clips.append(Clip(path, labels, fold, True, audio.size / sr, snr))
        events.extend(Event(path, on, off, label) for on, off, label in strong)

    def write(
        self,
        root: Path,
        name: str,
        classes: list[str],
        sr: int,
        generator: Callable[[list[float]], dict[str, Any]],
    ) -> None:
        """Write each corpus's manifest under `root`; `generator(snrs)` describes one corpus."""
        for group in [[s] for s in self.snrs] if self.subdirs else [list(self.snrs)]:
            label = name if self.column else f"{name}_snr{group[0]:g}db"
            clips = [c for s in group for c in self.rows[s][0]]
            events = [e for s in group for e in self.rows[s][1]]
            corpus = Corpus(root, label, classes, clips, events, sr, generator(group))
            corpus.write(self.folder(root, group[0]))

    def load(self, out: Path) -> list[Corpus]:
        """The written corpora, read back from their final folder `out`."""
        return [Corpus.load(p) for p in dict.fromkeys(self.folder(Path(out), s) for s in self.snrs)]
