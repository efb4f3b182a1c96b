"""Deterministic synthetic corpora, the embedded default data.

Three kinds emulate the seed papers' datasets: `lowres` (NIPS4B birds, Morfi & Stowell),
`noisy` (FSDKaggle2019 curated + noisy labels, He et al.) and `remix` (isolated events mixed
into scenes at fixed SNRs, the 2APAE protocol of Deshmukh et al.). Sound classes are
parametric signatures (bird-like chirps, harmonic tones, band-limited noise bursts, resonant
click trains) whose instances jitter around the class parameters; backgrounds are
non-stationary coloured noise with wind-like modulation, rain-like impulses, rumble and hum.
Every random draw comes from `np.random.default_rng([seed, kind, stream, index])`, so a clip
depends only on the seed, its index and the class set, never on generation order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special
from scipy.fft import next_fast_len

from sedsweep.data.audio import write_wav
from sedsweep.data.corpus import Clip, Corpus, Event
from sedsweep.data.mixing import (
    DEFAULT_ONSETS_S,
    SCENE_RMS,
    PlacedEvent,
    SnrCorpora,
    mix_scene,
    snr_values,
    trim_event,
)
from sedsweep.errors import UserError, unknown_name
from sedsweep.fsio import atomic_dir

# bumped per kind when its output changes for the same arguments
GENERATOR_VERSION = {"lowres": 2, "noisy": 1, "remix": 1}
FAMILIES = ("chirp", "harmonic", "noise_band", "impulses")
CHIRP_SHAPES = ("up", "down", "U", "cap", "trill")
MAX_HARMONIC = 0.45  # tones at or above this fraction of the sample rate are dropped (no aliasing)
SIBLING_P = 0.3  # chance that a class is a near copy of an earlier class of the same family
# (absolute Hz, fraction of the sample rate): the upper limit of each family's band
_TOP = {
    "chirp": (8000.0, 0.4),
    "harmonic": (1200.0, 0.1),
    "noise_band": (12000.0, 0.4),
    "impulses": (6000.0, 0.35),
}
_STREAM = {"lowres": 1, "noisy": 2, "remix": 3}
_EPS = 1e-12

LOWRES_CARDINALITY = (0.42, 0.30, 0.15, 0.08, 0.035, 0.015)  # P(1..6 labels | positive clip)
NOISY_CARDINALITY = (0.84, 0.12, 0.04)  # P(1..3 labels), mean ≈ 1.2
REMIX_DURATION_S = 10.0

SCALES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "lowres": {"clips": 687, "chunk_s": 5.0039},
        "noisy": {"clips": 24785, "classes": 80},
        "remix": {"clips": 8000, "classes": 41},
    },
    "small": {
        "lowres": {"clips": 300, "chunk_s": 5.0039},
        "noisy": {"clips": 800, "classes": 20},
        "remix": {"clips": 400, "classes": 20},
    },
    "tiny": {
        "lowres": {"clips": 32, "chunk_s": 2.5},
        "noisy": {"clips": 40, "classes": 6},
        "remix": {"clips": 32, "classes": 6},
    },
}


# -- sound classes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """A sound class: a family and the parameters its instances jitter around.

    `f_lo`..`f_hi` holds the fundamental: a chirp's sweep range, a harmonic note's f0 glide,
    a noise burst's pass band, a click's resonance band. A bout is `reps` units (syllable,
    note, burst or click) of `unit_s` seconds at `rate_hz` units per second. `mod_hz` and
    `mod_depth` are the trill rate (chirp), vibrato (harmonic, depth as a fraction of f0),
    amplitude modulation (noise_band) or timing irregularity (impulses, depth only).
    """

    family: str
    f_lo: float
    f_hi: float
    unit_s: float
    rate_hz: float
    reps: tuple[int, int]
    harmonics: tuple[float, ...] = (1.0,)
    shape: str = "flat"
    mod_hz: float = 0.0
    mod_depth: float = 0.0
    attack_s: float = 0.01
    decay: float = 0.0


def _top(family: str, sr: int) -> float:
    hz, fraction = _TOP[family]
    return min(hz, fraction * sr)


def _band(
    rng: np.random.Generator, floor: float, top: float, ratio: tuple[float, float]
) -> tuple[float, float]:
    """A band [lo, hi] inside [floor, top] whose width ratio hi/lo is log-uniform in `ratio`."""
    r = min(math.exp(rng.uniform(*np.log(ratio))), top / floor)
    centre = math.exp(rng.uniform(math.log(floor * r**0.5), math.log(top / r**0.5)))
    return centre / r**0.5, centre * r**0.5


def _reps(rng: np.random.Generator, lo: tuple[int, int], extra: int) -> tuple[int, int]:
    first = int(rng.integers(lo[0], lo[1] + 1))
    return first, first + int(rng.integers(0, extra + 1))


def draw_signature(rng: np.random.Generator, family: str, sr: int) -> Signature:
    """Draw a random sound class of `family`, its band kept below the family's limit at `sr`."""
    u = rng.uniform
    top = _top(family, sr)
    if family == "chirp":
        lo, hi = _band(rng, 1000.0, top, (1.15, 2.5))
        unit = u(0.04, 0.25)
        overtones = u(0.05, 0.5, int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2])))
        shape = str(rng.choice(CHIRP_SHAPES))
        return Signature(
            family, lo, hi, unit_s=unit, rate_hz=min(u(2.0, 12.0), 1 / (1.3 * unit)),
            reps=_reps(rng, (2, 5), 6), harmonics=(1.0, *sorted(overtones.tolist(), reverse=True)),
            shape=shape, mod_hz=u(15.0, 60.0) if shape == "trill" else 0.0,
        )  # fmt: skip
    if family == "harmonic":
        f0 = math.exp(u(math.log(80.0), math.log(top)))
        shape = str(rng.choice(["flat", "rise", "fall"]))
        glide = 0.0 if shape == "flat" else u(0.03, 0.15)
        unit = u(0.15, 1.2)
        tilt = u(0.5, 2.0)
        amps = (1.0, *(k**-tilt * u(0.5, 1.0) for k in range(2, int(rng.integers(3, 13)) + 1)))
        return Signature(
            family, f0, f0 * (1 + glide), unit_s=unit, rate_hz=1 / (unit * u(1.15, 2.0)),
            reps=_reps(rng, (1, 3), 3), harmonics=amps, shape=shape, mod_hz=u(3.0, 8.0),
            mod_depth=u(0.0, 0.03), attack_s=u(0.005, 0.1), decay=u(0.0, 4.0),
        )  # fmt: skip
    if family == "noise_band":
        lo, hi = _band(rng, 150.0, top, (1.3, 3.0))
        unit = u(0.1, 0.9)
        return Signature(
            family, lo, hi, unit_s=unit, rate_hz=1 / (unit * u(1.05, 1.8)),
            reps=_reps(rng, (1, 3), 3), harmonics=(), mod_hz=u(2.0, 30.0), mod_depth=u(0.0, 0.9),
            attack_s=u(0.005, 0.05), decay=u(0.0, 3.0),
        )  # fmt: skip
    if family == "impulses":
        fc = math.exp(u(math.log(200.0), math.log(top)))
        half = fc / (2 * u(4.0, 30.0))  # half the resonance bandwidth, from Q in [4, 30]
        return Signature(
            family, fc - half, fc + half, unit_s=u(0.0005, 0.003), rate_hz=u(2.0, 25.0),
            reps=_reps(rng, (3, 8), 10), harmonics=(), mod_depth=u(0.0, 0.3),
        )  # fmt: skip
    raise ValueError(f"unknown family {family!r}")


def _sibling(rng: np.random.Generator, parent: Signature, sr: int) -> Signature:
    """A confusable class: the parent's band shifted by 8–25 % and one trait redrawn."""
    factor = rng.uniform(1.08, 1.25)
    if parent.f_hi * factor > _top(parent.family, sr):
        factor = 1 / factor
    sig = replace(parent, f_lo=parent.f_lo * factor, f_hi=parent.f_hi * factor)
    trait = rng.integers(3)
    if trait == 0 and sig.family == "chirp":
        return replace(
            sig,
            shape=str(rng.choice([s for s in CHIRP_SHAPES if s != sig.shape])),
            mod_hz=rng.uniform(15.0, 60.0),
        )
    scale = rng.uniform(0.6, 0.85) ** rng.choice([-1, 1])
    if trait == 1:
        return replace(sig, rate_hz=min(sig.rate_hz * scale, 1 / (1.05 * sig.unit_s)))
    unit = sig.unit_s * scale
    return replace(sig, unit_s=unit, rate_hz=min(sig.rate_hz, 1 / (1.05 * unit)))


def class_signatures(
    seed: int, kind: str, n: int, families: Sequence[str], sr: int
) -> list[Signature]:
    """The `n` class signatures of a corpus; class i has family families[i % len(families)]."""
    sigs: list[Signature] = []
    for i in range(n):
        rng = _rng(seed, kind, 0, i)
        parent = i - len(families)
        if parent >= 0 and rng.random() < SIBLING_P:
            sigs.append(_sibling(rng, sigs[parent], sr))
        else:
            sigs.append(draw_signature(rng, families[i % len(families)], sr))
    return sigs


# -- synthesis -----------------------------------------------------------------------------------
def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return x / rms if rms > _EPS else x


def _tones(rng: np.random.Generator, f: np.ndarray, amps: Sequence[float], sr: int) -> np.ndarray:
    """Harmonics of the instantaneous frequency `f` by phase integration; none above 0.45·sr."""
    phase = 2 * np.pi * np.cumsum(f) / sr
    top = float(f.max())
    y = np.zeros_like(f)
    for k, a in enumerate(amps, start=1):
        if k * top >= MAX_HARMONIC * sr:
            break
        y += a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return y


def _envelope(tau: np.ndarray, unit: float, attack: float, decay: float) -> np.ndarray:
    release = min(0.02, unit / 4)
    return (
        np.clip(tau / max(attack, _EPS), 0, 1)
        * np.exp(-decay * tau / unit)
        * np.clip((unit - tau) / release, 0, 1)
    )


def synth_event(
    sig: Signature,
    rng: np.random.Generator,
    sr: int,
    max_s: float | None = None,
    fill: bool = False,
) -> np.ndarray:
    """One instance of a class: a bout of jittered units, peak 1 (float64).

    The unit count is drawn from `sig.reps`, capped to fit `max_s`; with `fill`, as many units
    as fit in `max_s`. The instance never exceeds `max_s` seconds.
    """
    pitch = rng.uniform(0.95, 1.05)
    lo, hi = sig.f_lo * pitch, sig.f_hi * pitch
    unit = sig.unit_s * rng.uniform(0.9, 1.1)
    period = max(1.0 / (sig.rate_hz * rng.uniform(0.9, 1.1)), 1.05 * unit)
    impulses = sig.family == "impulses"
    tail = min(5 / (np.pi * (hi - lo)), 0.3) if impulses else 0.0
    count = int(rng.integers(sig.reps[0], sig.reps[1] + 1))
    if max_s is not None:
        unit = min(unit, max_s)
        fit = 1 + max(int((max_s - unit - tail) / period), 0)
        count = fit if fill else min(count, fit)
    irregular = sig.mod_depth if impulses else 0.05
    starts = (np.arange(count) + rng.uniform(0, irregular, count)) * period
    starts -= starts[0]
    n = max(1, round((starts[-1] + unit + tail) * sr))
    if max_s is not None:
        n = min(n, max(1, int(max_s * sr)))
    amps = rng.uniform(0.6, 1.0, count)
    t = np.arange(n) / sr
    if impulses:
        y = _impulses(rng, sr, n, starts, unit, lo, hi, amps)
    else:
        j = np.searchsorted(starts, t, side="right") - 1
        tau = t - starts[j]
        y = _unit_wave(sig, rng, sr, t, tau, unit, lo, hi) * amps[j] * (tau < unit)
    fade = min(n, int(0.005 * sr))
    y[n - fade :] *= np.linspace(1.0, 0.0, fade)
    peak = float(np.max(np.abs(y)))
    return y / peak if peak > _EPS else y


def _unit_wave(
    sig: Signature,
    rng: np.random.Generator,
    sr: int,
    t: np.ndarray,
    tau: np.ndarray,
    unit: float,
    lo: float,
    hi: float,
) -> np.ndarray:
    """The units of a chirp / harmonic / noise_band bout, before per-unit amplitudes."""
    u = np.minimum(tau / unit, 1.0)
    if sig.family == "chirp":
        if sig.shape == "trill":
            g = 0.5 + 0.5 * np.sin(2 * np.pi * sig.mod_hz * tau + rng.uniform(0, 2 * np.pi))
        else:
            g = {"up": u, "down": 1 - u, "U": (2 * u - 1) ** 2, "cap": 1 - (2 * u - 1) ** 2}[
                sig.shape
            ]
        return _tones(rng, lo * (hi / lo) ** g, sig.harmonics, sr) * np.sin(np.pi * u) ** 0.7
    env = _envelope(tau, unit, sig.attack_s, sig.decay)
    mod = np.sin(2 * np.pi * sig.mod_hz * t + rng.uniform(0, 2 * np.pi))
    if sig.family == "harmonic":
        start, end = (hi, lo) if sig.shape == "fall" else (lo, hi)
        f = (start + (end - start) * u) * (1 + sig.mod_depth * mod)
        return _tones(rng, f, sig.harmonics, sr) * env
    m = next_fast_len(t.size, real=True)
    freqs = np.maximum(np.fft.rfftfreq(m, 1 / sr), 1.0)
    edge = np.clip(np.maximum(np.log(lo / freqs), np.log(freqs / hi)) / 0.15, 0, 1)
    spec = np.fft.rfft(rng.standard_normal(m)) * np.cos(0.5 * np.pi * edge) ** 2
    noise = np.fft.irfft(spec, m)[: t.size]
    return _unit_rms(noise) * (1 - sig.mod_depth * (0.5 + 0.5 * mod)) * env


def _impulses(
    rng: np.random.Generator,
    sr: int,
    n: int,
    starts: np.ndarray,
    unit: float,
    lo: float,
    hi: float,
    amps: np.ndarray,
) -> np.ndarray:
    """Knocks: short noise bursts through a two-pole resonator at the class frequency."""
    from scipy import signal  # 1 s to import (it loads scipy.stats): only to make a corpus

    idx = np.round(starts * sr).astype(np.int64)
    keep = idx < n
    excitation = np.zeros(n)
    excitation[idx[keep]] = (amps * rng.choice([-1.0, 1.0], amps.size))[keep]
    k = max(2, round(unit * sr))
    excitation = signal.oaconvolve(excitation, rng.standard_normal(k) * np.hanning(k))[:n]
    r = math.exp(-np.pi * (hi - lo) / sr)
    w = 2 * np.pi * math.sqrt(lo * hi) / sr
    ring = signal.lfilter([1 - r], [1, -2 * r * math.cos(w), r * r], excitation)
    return _unit_rms(ring) + 0.2 * _unit_rms(excitation)


# -- backgrounds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneType:
    """Ranges and probabilities of the background components of one kind of scene."""

    beta: tuple[float, float]  # slope of the coloured noise, power ∝ 1/f^beta
    wind: tuple[float, float]  # depth of the slow log-amplitude modulation
    wind_hz: tuple[float, float]  # rate of the modulation's control points
    rain: float  # probability of rain-like sparse impulses
    rumble: float  # probability of a low-frequency rumble
    hum: float  # probability of mains hum


SCENES = {
    "park": SceneType((0.8, 1.5), (0.2, 0.6), (0.5, 2.0), 0.1, 0.2, 0.0),
    "wind": SceneType((1.4, 2.0), (0.6, 1.2), (0.3, 1.5), 0.0, 0.3, 0.0),
    "rain": SceneType((0.0, 0.8), (0.1, 0.4), (0.5, 2.0), 1.0, 0.2, 0.0),
    "stream": SceneType((0.2, 0.8), (0.05, 0.2), (1.0, 4.0), 0.5, 0.0, 0.0),
    "street": SceneType((1.0, 2.0), (0.3, 0.9), (0.2, 1.0), 0.1, 0.9, 0.1),
    "indoor": SceneType((0.5, 1.5), (0.0, 0.2), (0.2, 1.0), 0.0, 0.3, 0.8),
}
OUTDOOR = ("park", "wind", "rain", "stream")


def make_background(rng: np.random.Generator, n: int, sr: int, scene: str = "park") -> np.ndarray:
    """Non-stationary background noise of `n` samples for a scene type; RMS 1, float64."""
    st = SCENES[scene]
    m = next_fast_len(n, real=True)  # FFT at a fast length, then cut to n
    f = np.fft.rfftfreq(m, 1 / sr)
    shape = (np.maximum(f, 20.0) / 1000.0) ** (-rng.uniform(*st.beta) / 2)
    if rng.random() < st.rumble:
        fr = rng.uniform(30.0, 120.0)
        shape += rng.uniform(2.0, 10.0) * np.exp(
            -0.5 * (np.log(np.maximum(f, 1.0) / fr) / 0.35) ** 2
        )
    shape[0] = 0.0
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * shape
    x = _unit_rms(np.fft.irfft(spec, m)[:n])
    points = int(n / sr * rng.uniform(*st.wind_hz)) + 2
    gusts = np.interp(np.arange(n), np.linspace(0, n - 1, points), rng.standard_normal(points))
    x *= np.exp(rng.uniform(*st.wind) * gusts)
    if rng.random() < st.rain:
        x += rng.uniform(0.3, 1.5) * _rain(rng, n, sr)
    if rng.random() < st.hum:
        t = np.arange(n) / sr
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(
            rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, int(rng.integers(2, 5)) + 1)
        )
        x += rng.uniform(0.1, 0.5) * _unit_rms(hum)
    return _unit_rms(x)


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Sparse random drops: a Poisson spike train through a short decaying noise kernel."""
    count = rng.poisson(rng.uniform(20.0, 300.0) * n / sr)
    spikes = np.zeros(n)
    np.add.at(
        spikes, rng.integers(0, n, count), rng.lognormal(0, 0.8, count) * rng.choice([-1, 1], count)
    )
    from scipy import signal

    tau = rng.uniform(0.5e-3, 3e-3)
    k = max(4, int(5 * tau * sr))
    kernel = np.diff(rng.standard_normal(k + 1)) * np.exp(-np.arange(k) / (tau * sr))
    return _unit_rms(signal.oaconvolve(spikes, kernel)[:n])


# -- clip assembly -------------------------------------------------------------------------------
_Item = tuple[np.ndarray, int, float, int]  # audio, start sample, SNR (dB), class index


def _bouts(
    rng: np.random.Generator,
    sig: Signature,
    sr: int,
    n: int,
    k: int,
    cls: int,
    snr: tuple[float, float],
    fill: tuple[float, float] | None,
) -> list[_Item]:
    """`k` instances of one class, one per equal slot of the clip (so they never overlap)."""
    slot = n // k
    items = []
    for j in range(k):
        max_s = slot / sr * (1.0 if fill is None else rng.uniform(*fill))
        ev = synth_event(sig, rng, sr, max_s=max_s, fill=fill is not None)
        start = j * slot + int(rng.integers(0, slot - ev.size + 1))
        items.append((ev, start, rng.uniform(*snr), cls))
    return items


def _overlay(background: np.ndarray, items: list[_Item]) -> np.ndarray:
    """Add events (overlaps allowed), each `snr` dB above the background over its own span."""
    y = background.copy()
    for ev, start, snr, _ in items:
        span = slice(start, start + ev.size)
        ratio = max(np.mean(background[span] ** 2), _EPS) / max(np.mean(ev**2), _EPS)
        y[span] += math.sqrt(ratio * 10 ** (snr / 10)) * ev
    peak = float(np.max(np.abs(y)))
    return y * (0.99 / peak) if peak > 0.99 else y


def _scene_clip(
    rng: np.random.Generator,
    sr: int,
    n: int,
    scenes: Sequence[str],
    plan: list[tuple[int, int]],
    signatures: list[Signature],
    snr: tuple[float, float],
    fill: tuple[float, float] | None,
) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """A background (SCENE_RMS ± 6 dB) with `count` bouts of each (class, count) in `plan`."""
    bg = make_background(rng, n, sr, scenes[int(rng.integers(len(scenes)))])
    bg *= SCENE_RMS * 10 ** (rng.uniform(-6.0, 6.0) / 20)
    items = [it for c, k in plan for it in _bouts(rng, signatures[c], sr, n, k, c, snr, fill)]
    return _overlay(bg, items), [(s / sr, (s + ev.size) / sr, c) for ev, s, _, c in items]


# -- argument checks and shared bits -------------------------------------------------------------
def _rng(seed: int, kind: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[kind], *keys])


def _preset(scale: str, kind: str, seed: int, sr: int) -> dict[str, Any]:
    if scale not in SCALES:
        raise UserError(unknown_name("scale", scale, SCALES), where="--scale")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"must be a non-negative integer, not {seed!r}", where="--seed")
    if isinstance(sr, bool) or not isinstance(sr, int) or not 8000 <= sr <= 192000:
        raise UserError(
            f"must be an integer sample rate in [8000, 192000] Hz, not {sr!r}", where="--sr"
        )
    return SCALES[scale][kind]


def _count(value: int | None, default: int, minimum: int, option: str) -> int:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"must be an integer ≥ {minimum}, not {value!r}", where=option)
    return value


def _names(prefixes: Sequence[str], n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"{prefixes[i % len(prefixes)]}_{i:0{width}d}" for i in range(n)]


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python numbers, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


def _generator(
    kind: str, seed: int, scale: str, sr: int, names: list[str], sigs: list[Signature], **facts: Any
) -> dict[str, Any]:
    """The `Corpus.generator` record: parameters, measured facts and every class signature."""
    return _plain(
        {
            "kind": kind,
            "version": GENERATOR_VERSION[kind],
            "seed": seed,
            "scale": scale,
            "sample_rate": sr,
            "classes": len(names),
            **facts,
            "signatures": {name: asdict(s) for name, s in zip(names, sigs, strict=True)},
        }
    )


def _cardinalities(rng: np.random.Generator, p: Sequence[float], cap: int, size: int) -> np.ndarray:
    probs = np.asarray(p[:cap]) / np.sum(p[:cap])
    return rng.choice(np.arange(1, probs.size + 1), size=size, p=probs)


# -- lowres (NIPS4B) -----------------------------------------------------------------------------
def _lowres_labels(
    rng: np.random.Generator, n_clips: int, n_neg: int, n_classes: int
) -> tuple[list[list[int]], tuple[int, int]]:
    """Label sets with per-class occurrence targets in the (feasible) 7–20 range."""
    positives = np.sort(rng.permutation(n_clips)[n_neg:])
    kmax = min(6, n_classes)
    k = _cardinalities(rng, LOWRES_CARDINALITY, kmax, positives.size)
    total = int(k.sum())
    lo = min(7, total // n_classes)
    hi = min(positives.size, max(20, -(-total // n_classes)))
    target = rng.integers(lo, hi + 1, n_classes)
    while (diff := total - int(target.sum())) != 0:
        movable = np.flatnonzero(target < hi if diff > 0 else target > lo)
        pick = rng.choice(movable, min(abs(diff), movable.size), replace=False)
        target[pick] += int(np.sign(diff))
    remaining = target.copy()
    sets: list[set[int]] = [set() for _ in positives]
    for i in rng.permutation(positives.size):
        avail = np.flatnonzero(remaining > 0)
        p = remaining[avail] / remaining[avail].sum()
        chosen = avail if avail.size <= k[i] else rng.choice(avail, k[i], replace=False, p=p)
        sets[i].update(int(c) for c in chosen)
        remaining[chosen] -= 1
    for c in np.flatnonzero(remaining > 0):  # leftovers: add to clips short of their cardinality
        for _ in range(remaining[c]):
            short = [i for i, s in enumerate(sets) if c not in s and len(s) < k[i]]
            room = short or [i for i, s in enumerate(sets) if c not in s and len(s) < kmax]
            if room:
                sets[int(rng.choice(room))].add(int(c))
    labels: list[list[int]] = [[] for _ in range(n_clips)]
    for clip, s in zip(positives, sets, strict=True):
        labels[clip] = sorted(s)
    return labels, (lo, hi)


# NIPS4Bplus statistics of the NIPS4B 2013 training set (facts from the dataset's strong
# annotation), the targets of `lowres` at paper scale. Of the 687 recordings 100 are weakly
# labelled negative but 105 are annotated empty: 5 carry tags with no event in the annotation.
NIPS4B = {
    "recordings": 687, "with_events": 569, "annotated_empty": 105, "unannotated": 13,
    "weak_negatives": 100, "events": 5775, "classes": {"bird": 77, "insect": 9, "amphibian": 1},
    "chunk_s": 5.0039, "full_length_fraction": 0.62, "short_mean_s": 4.2,
    "call_median_s": (0.087, 0.090), "call_mean_s": (0.15, 0.20), "call_sigma": 0.96,
    "insect_median_s": 1.0, "train_recordings": 513,
}  # fmt: skip
# Event durations per kind of class: lognormal, median = class median · exp(σ_within·z) with the
# class medians lognormal around `median` (σ_between), so the pooled spread is
# sqrt(σ_between² + σ_within²) (0.96 for birds, NIPS4Bplus) and each class keeps a typical
# length. Insect and amphibian spreads are not in the dataset's facts: chosen, not measured.
_BIRD_WITHIN = math.sqrt(NIPS4B["call_sigma"] ** 2 - 0.6**2)
_LOWRES_KINDS = {
    "bird": {"family": "chirp", "median": 0.088, "between": 0.6, "within": _BIRD_WITHIN},
    "insect": {
        "family": "noise_band", "median": NIPS4B["insect_median_s"], "between": 0.3, "within": 0.5
    },
    "amphibian": {"family": "harmonic", "median": 0.3, "between": 0.3, "within": 0.4},
}  # fmt: skip
# Expected events per (clip, label) = 1 + Poisson(rate · clip duration / chunk). Birds: 5775
# events over 569 recordings is 10.15 per recording; at ≈ 2.06 labels per positive recording
# (LOWRES_CARDINALITY) and 0.939 of a chunk per recording (0.62·5.0039 + 0.38·4.2 s) with the
# insects' ≈ 1.9 events, the bird rate that gives it is ≈ 4.6. Insects call in few long events.
LOWRES_EVENT_RATE = {"bird": 4.6, "insect": 1.0, "amphibian": 2.0}
LOWRES_SHORT_LOW = 2 * NIPS4B["short_mean_s"] / NIPS4B["chunk_s"] - 1  # uniform(low, 1)·chunk
LOWRES_FIT = 0.9  # the events of one label take at most this share of their clip


@dataclass(frozen=True)
class LowresClip:
    """The plan of one lowres clip: length, weak labels and its events in samples.

    `events` are (start, length, class) of the sounds in the audio; `strong` False for a clip
    whose events are not annotated (NIPS4B recordings without a NIPS4Bplus file); a clip with
    labels and no events is a weak label the annotation contradicts.
    """

    samples: int
    labels: tuple[int, ...]
    events: tuple[tuple[int, int, int], ...]
    strong: bool


def _nips4b_share(fact: str, n_clips: int) -> int:
    """A NIPS4B count scaled to a corpus of `n_clips` recordings (687 in NIPS4B)."""
    return round(NIPS4B[fact] * n_clips / NIPS4B["recordings"])


def lowres_classes(n_classes: int) -> list[str]:
    """Class kinds in NIPS4B proportions (77 bird : 9 insect : 1 amphibian), birds first."""
    share = NIPS4B["classes"]
    insects = round(share["insect"] * n_classes / 87)
    amphibians = round(share["amphibian"] * n_classes / 87)
    return (
        ["bird"] * (n_classes - insects - amphibians)
        + ["insect"] * insects
        + ["amphibian"] * amphibians
    )


def _lowres_medians(seed: int, kinds: Sequence[str]) -> list[float]:
    """Each class's median call length: the classes of a kind take the normal quantiles at
    (j + ½)/n in a seeded order, so the pooled median sits on the target at any seed."""
    rng = _rng(seed, "lowres", 3)
    medians = [0.0] * len(kinds)
    for kind, spec in _LOWRES_KINDS.items():
        members = [i for i, k in enumerate(kinds) if k == kind]
        z = special.ndtri((np.arange(len(members)) + 0.5) / max(len(members), 1))
        for i, zi in zip(members, rng.permutation(z), strict=True):
            medians[i] = spec["median"] * math.exp(spec["between"] * zi)
    return medians


def _place(rng: np.random.Generator, lengths: list[int], n: int) -> list[int]:
    """Starts for non-overlapping sounds of `lengths` samples in `n`, in random order and gaps."""
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (n - sum(lengths))
    starts, t = [], 0.0
    for gap, length in zip(gaps, lengths, strict=False):
        t += gap
        starts.append(int(t))
        t += length
    return starts


def lowres_plan(
    seed: int, n_clips: int, n_classes: int, chunk_s: float, sr: int
) -> list[LowresClip]:
    """Lengths, labels and events of every clip of a lowres corpus, without the audio.

    NIPS4B proportions scaled to `n_clips`: round(100·N/687) clips weakly negative, a further
    round(105·N/687) − that tagged but annotated empty, round(13·N/687) training clips with
    events but no annotation. 62 % of clips are one full chunk long, the rest uniform in
    [LOWRES_SHORT_LOW, 1) chunks (mean 4.2 s at the 5.0039 s chunk).
    """
    n_neg = _nips4b_share("weak_negatives", n_clips)
    n_mislabelled = _nips4b_share("annotated_empty", n_clips) - n_neg
    n_train = _nips4b_share("train_recordings", n_clips)
    labels, _ = _lowres_labels(_rng(seed, "lowres", 1), n_clips, n_neg, n_classes)
    order = _rng(seed, "lowres", 4).permutation(n_clips)
    positives = [int(i) for i in order if labels[i]]
    n_unannotated = _nips4b_share("unannotated", n_clips)
    unannotated = set([i for i in positives if i < n_train][:n_unannotated])
    mislabelled = set([i for i in positives if i not in unannotated][:n_mislabelled])
    kinds = lowres_classes(n_classes)
    medians = _lowres_medians(seed, kinds)
    plan = []
    for i, clip_labels in enumerate(labels):
        rng = _rng(seed, "lowres", 5, i)
        full = rng.random() < NIPS4B["full_length_fraction"]
        n = round(chunk_s * (1.0 if full else rng.uniform(LOWRES_SHORT_LOW, 1.0)) * sr)
        events: list[tuple[int, int, int]] = []
        for c in [] if i in mislabelled else clip_labels:
            kind = _LOWRES_KINDS[kinds[c]]
            count = 1 + rng.poisson(LOWRES_EVENT_RATE[kinds[c]] * n / (sr * chunk_s))
            sd = kind["within"]
            lengths = [
                max(1, min(round(medians[c] * math.exp(sd * rng.standard_normal()) * sr), n))
                for _ in range(count)
            ]
            while len(lengths) > 1 and sum(lengths) > LOWRES_FIT * n:
                lengths.pop()
            lengths[0] = min(lengths[0], int(LOWRES_FIT * n))
            events += [(s, k, c) for s, k in zip(_place(rng, lengths, n), lengths, strict=True)]
        plan.append(LowresClip(n, tuple(clip_labels), tuple(sorted(events)), i not in unannotated))
    return plan


def synth_call(sig: Signature, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """One call of exactly `n` samples: a single unit of a chirp / harmonic / noise_band class
    (pitch jittered ±5 %) stretched over the whole call, peak 1 (float64)."""
    pitch = rng.uniform(0.95, 1.05)
    t = np.arange(n) / sr
    y = _unit_wave(sig, rng, sr, t, t, max(n / sr, _EPS), sig.f_lo * pitch, sig.f_hi * pitch)
    fade = min(n, int(0.002 * sr))
    y[n - fade :] *= np.linspace(1.0, 0.0, fade)
    peak = float(np.max(np.abs(y)))
    return y / peak if peak > _EPS else y


def _lowres_signatures(
    seed: int, kinds: Sequence[str], medians: Sequence[float], sr: int
) -> list[Signature]:
    """Birds: chirp classes (siblings included); insects: buzzing noise bands above 2 kHz with
    15–60 Hz pulsing; amphibians: harmonic notes. `unit_s` = the class's median call length."""
    n_birds = kinds.count("bird")
    sigs = class_signatures(seed, "lowres", n_birds, ("chirp",), sr)
    for i in range(n_birds, len(kinds)):
        rng = _rng(seed, "lowres", 0, i)
        sig = draw_signature(rng, _LOWRES_KINDS[kinds[i]]["family"], sr)
        if kinds[i] == "insect":
            top = _top("noise_band", sr)
            lo, hi = _band(rng, min(2000.0, top / 2), top, (1.2, 2.0))
            sig = replace(
                sig, f_lo=lo, f_hi=hi, mod_hz=rng.uniform(15.0, 60.0),
                mod_depth=rng.uniform(0.5, 0.95), decay=0.0,
            )  # fmt: skip
        sigs.append(sig)
    return [replace(s, unit_s=m, reps=(1, 1)) for s, m in zip(sigs, medians, strict=True)]


DISTRACTOR_FAMILIES = ("harmonic", "noise_band", "impulses")  # never a lowres label's family
DISTRACTOR_CLASSES = 8  # distinct unlabelled sound classes a corpus draws its distractors from
# Named variants of the recordings (`make_lowres(variant=...)`); counts, labels and annotation
# are the calibrated ones in every variant. "hard" (issue 31: the calibrated corpus let one
# epoch reach 0.97 frame AUC): every call at or below the background's level, as many
# unlabelled sounds per chunk as NIPS4Bplus has annotated events per recording, and only the
# most non-stationary outdoor backgrounds (wind gusts, rain).
LOWRES_VARIANTS: dict[str, dict[str, Any]] = {
    "calibrated": {"snr_db": (-5.0, 15.0), "distractors": 0.0, "scenes": OUTDOOR},
    "hard": {
        "snr_db": (-15.0, 0.0),
        "distractors": round(NIPS4B["events"] / NIPS4B["with_events"], 2),
        "scenes": ("wind", "rain"),
    },
}


def _span_range(value: Sequence[float], option: str) -> tuple[float, float]:
    """A (low, high) SNR range in dB from an option: two finite numbers, low ≤ high."""
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    if (
        len(pair) != 2
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in pair
        )
        or pair[0] > pair[1]
    ):
        raise UserError(f"must be [low, high] in dB with low ≤ high, not {value!r}", where=option)
    return float(pair[0]), float(pair[1])


def _distractors(
    rng: np.random.Generator,
    sigs: Sequence[Signature],
    rate: float,
    n: int,
    sr: int,
    chunk_s: float,
    snr: tuple[float, float],
) -> list[_Item]:
    """Unlabelled sounds anywhere in a clip (overlapping calls and each other):
    Poisson(`rate` · clip length / chunk) bouts of the corpus's distractor classes, class index
    -1 (in no label set and no annotation)."""
    items: list[_Item] = []
    for _ in range(int(rng.poisson(rate * n / (sr * chunk_s)))):
        sig = sigs[int(rng.integers(len(sigs)))]
        ev = synth_event(sig, rng, sr, max_s=min(rng.uniform(0.1, 1.5), n / sr))
        items.append((ev, int(rng.integers(0, n - ev.size + 1)), rng.uniform(*snr), -1))
    return items


def event_activity(plan: Sequence[LowresClip]) -> dict[str, float]:
    """The share of each clip's samples inside at least one of its events (their union): mean
    and median over the clips that hold events. MMM's mean term (Morfi & Stowell, eq. 5)
    pulls a positive bag's mean frame probability towards 0.5."""
    shares = []
    for clip in plan:
        if clip.events:
            active = np.zeros(clip.samples, dtype=bool)
            for start, length, _ in clip.events:
                active[start : start + length] = True
            shares.append(float(active.mean()))
    if not shares:
        return {"mean": math.nan, "median": math.nan}
    return {"mean": float(np.mean(shares)), "median": float(np.median(shares))}


def make_lowres(
    out: str | Path,
    *,
    scale: str = "paper",
    clips: int | None = None,
    classes: int | None = None,
    seed: int = 0,
    sr: int = 44100,
    variant: str = "calibrated",
    snr_db: Sequence[float] | None = None,
    distractors: float | None = None,
    scenes: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Corpus:
    """A NIPS4B-like low-resource bird corpus calibrated to NIPS4Bplus (Morfi & Stowell).

    Paper scale: 687 clips in 5.0039 s chunks (62 % full length, the rest shorter, mean 4.2 s),
    87 classes (77 bird calls, 9 insects, 1 amphibian; bird_00…, insect_…, amphibian_…), each
    tagged in 7–20 clips, 0–6 per clip; 100 weak negatives, 5 tagged clips annotated empty
    (the weak labels disagree), 13 training clips with events but no strong annotation
    (`strong` 0); ≈ 5,775 events, bird calls lognormal (median 0.088 s, σ 0.96 in log space),
    insects long (median 1 s), at −5…+15 dB over the background, calls of one class never
    overlapping each other (`lowres_plan`). Fold 1 (train) = the first round(N·513/687) clips,
    fold 2 the rest. A smaller `clips` scales classes (round(87·N/687), at least 3) and the
    counts in proportion; `tiny` shortens the chunk to 2.5 s.

    Harder recordings, with the counts, labels and annotation unchanged: a `variant` of
    `LOWRES_VARIANTS` sets the three knobs, and each may be given on its own: `snr_db`, the
    calls' SNR range; `distractors`, unlabelled sounds per chunk on average (Poisson), bouts
    of `DISTRACTOR_CLASSES` harmonic / noise-band / click classes at the calls' SNRs,
    overlapping the calls and each other anywhere in the clip; `scenes`, the background
    types (`SCENES`). The record's `event_activity` is the measured share of a clip's time
    inside its events (`event_activity`).
    """
    preset = _preset(scale, "lowres", seed, sr)
    if variant not in LOWRES_VARIANTS:
        raise UserError(unknown_name("variant", variant, LOWRES_VARIANTS), where="--variant")
    knobs = LOWRES_VARIANTS[variant]
    snr_db = knobs["snr_db"] if snr_db is None else snr_db
    distractors = knobs["distractors"] if distractors is None else distractors
    scenes = knobs["scenes"] if scenes is None else scenes
    snr = _span_range(snr_db, "data.options.snr_db")
    if (
        isinstance(distractors, bool)
        or not isinstance(distractors, int | float)
        or not (0 <= distractors <= 100)
    ):
        raise UserError(f"must be a rate in [0, 100] per chunk, not {distractors!r}",
                        where="data.options.distractors")  # fmt: skip
    scenes = [scenes] if isinstance(scenes, str) else list(scenes)
    unknown = [x for x in scenes if x not in SCENES]
    if unknown or not scenes:
        raise UserError(f"must name scene types among {', '.join(SCENES)}, not {unknown or scenes}",
                        where="data.options.scenes")  # fmt: skip
    n_clips = _count(clips, preset["clips"], 4, "--clips")
    n_classes = _count(classes, max(3, round(87 * n_clips / 687)), 1, "--classes")
    n_train = _nips4b_share("train_recordings", n_clips)
    kinds = lowres_classes(n_classes)
    width = max(2, len(str(n_classes - 1)))
    names = [f"{kind}_{i:0{width}d}" for i, kind in enumerate(kinds)]
    medians = _lowres_medians(seed, kinds)
    sigs = _lowres_signatures(seed, kinds, medians, sr)
    chunk = preset["chunk_s"]
    plan = lowres_plan(seed, n_clips, n_classes, chunk, sr)
    distractor_sigs = [
        draw_signature(_rng(seed, "lowres", 6, j), DISTRACTOR_FAMILIES[j % 3], sr)
        for j in range(DISTRACTOR_CLASSES if distractors else 0)
    ]
    out_clips, events = [], []
    with atomic_dir(out, overwrite) as tmp:
        for i, clip in enumerate(plan):
            rng = _rng(seed, "lowres", 2, i)
            bg = make_background(rng, clip.samples, sr, scenes[int(rng.integers(len(scenes)))])
            bg *= SCENE_RMS * 10 ** (rng.uniform(-6.0, 6.0) / 20)
            items = [
                (synth_call(sigs[c], rng, sr, k), s, rng.uniform(*snr), c)
                for s, k, c in clip.events
            ]
            if distractors:  # their own stream: the calls and backgrounds stay as without
                items += _distractors(_rng(seed, "lowres", 7, i), distractor_sigs, distractors,
                                      clip.samples, sr, chunk, snr)  # fmt: skip
            path = f"audio/{i:05d}.wav"
            write_wav(tmp / path, _overlay(bg, items), sr)
            fold = 1 if i < n_train else 2
            labels = tuple(names[c] for c in clip.labels)
            out_clips.append(Clip(path, labels, fold, True, clip.samples / sr, strong=clip.strong))
            if clip.strong:
                events += [Event(path, s / sr, (s + k) / sr, names[c]) for s, k, c in clip.events]
        generator = _generator(
            "lowres", seed, scale, sr, names, sigs, clips=n_clips, chunk_s=chunk,
            full_length_fraction=NIPS4B["full_length_fraction"], short_low=LOWRES_SHORT_LOW,
            train_clips=n_train, negatives=sum(not c.labels for c in plan),
            tagged_but_empty=sum(bool(c.labels and not c.events) for c in plan),
            unannotated=sum(not c.strong for c in plan), events=len(events),
            event_rate_per_chunk=LOWRES_EVENT_RATE, variant=variant, snr_db_range=snr,
            distractors_per_chunk=distractors, scenes=scenes, event_activity=event_activity(plan),
            distractor_signatures=[asdict(d) for d in distractor_sigs],
            label_cardinality=float(np.mean([len(c.labels) for c in plan])),
            duration_model={k: dict(v) for k, v in _LOWRES_KINDS.items()}, targets=NIPS4B,
        )  # fmt: skip
        Corpus(tmp, "lowres", names, out_clips, events, sr, generator).write(tmp)
    return Corpus.load(out)


# -- noisy (FSDKaggle2019) -----------------------------------------------------------------------
def _corrupt(rng: np.random.Generator, true: list[int], n_classes: int) -> tuple[list[int], str]:
    """Swap one label for a wrong one, drop one (only if several) or add a wrong one."""
    op = str(rng.choice(["swap", "drop", "add"]))
    if op == "drop" and len(true) < 2:
        op = "swap"
    labels = list(true)
    wrong = int(rng.choice([c for c in range(n_classes) if c not in true]))
    if op == "swap":
        labels[int(rng.integers(len(labels)))] = wrong
    elif op == "drop":
        labels.pop(int(rng.integers(len(labels))))
    else:
        labels.append(wrong)
    return sorted(labels), op


def make_noisy(
    out: str | Path,
    *,
    scale: str = "paper",
    clips: int | None = None,
    classes: int | None = None,
    noise_rate: float = 0.4,
    verified_fraction: float = 0.2,
    min_duration: float = 0.3,
    max_duration: float = 30.0,
    test_fraction: float = 0.3,
    seed: int = 0,
    sr: int = 44100,
    overwrite: bool = False,
) -> Corpus:
    """An FSDKaggle2019-like tagging corpus with verified and noisily labelled clips (He et al.).

    Paper scale: 24785 clips (the original has 4970 curated + 19815 noisy; here
    round(verified_fraction·N) are verified), 80 classes of all families, durations
    log-uniform in [min_duration, max_duration], 84 % / 12 % / 4 % of clips with 1 / 2 / 3
    labels (mean ≈ 1.2), each label's sound filling a good part of the clip (verified clips
    at 5…25 dB over the background, unverified at −5…+20 dB). Each unverified clip's written
    labels are corrupted with probability `noise_rate` (swap / drop / add a label); audio and
    events.tsv always hold the true labels. Fold 2 (test) = a `test_fraction` share of the
    verified clips; fold 1 (train) = all other clips.
    """
    preset = _preset(scale, "noisy", seed, sr)
    n_clips = _count(clips, preset["clips"], 3, "--clips")
    n_classes = _count(classes, preset["classes"], 2, "--classes")
    for value, option, lo_ok in (
        (noise_rate, "--noise-rate", True),
        (verified_fraction, "--verified-fraction", False),
        (test_fraction, "--test-fraction", False),
    ):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not (0 <= value <= 1 if lo_ok else 0 < value < 1):
            bounds = "0 ≤ value ≤ 1" if lo_ok else "0 < value < 1"
            raise UserError(f"must be a number with {bounds}, not {value!r}", where=option)
    if not 0 < min_duration < max_duration:
        raise UserError(
            f"must be > 0 and < --max-duration, not {min_duration!r}", where="--min-duration"
        )
    if max_duration > 600:
        raise UserError(f"must be at most 600 s, not {max_duration!r}", where="--max-duration")
    names = _names(FAMILIES, n_classes)
    sigs = class_signatures(seed, "noisy", n_classes, FAMILIES, sr)
    n_ver = min(max(round(verified_fraction * n_clips), 2), n_clips - 1)
    n_test = min(max(round(test_fraction * n_ver), 1), n_ver - 1)
    order = _rng(seed, "noisy", 1).permutation(n_clips)
    verified, test = set(order[:n_ver].tolist()), set(order[:n_test].tolist())
    log_lo, log_hi = math.log(min_duration), math.log(max_duration)
    out_clips, events, true_counts, ops = [], [], [], {"swap": 0, "drop": 0, "add": 0}
    with atomic_dir(out, overwrite) as tmp:
        for i in range(n_clips):
            rng = _rng(seed, "noisy", 2, i)
            n = max(1, round(math.exp(rng.uniform(log_lo, log_hi)) * sr))
            k = int(_cardinalities(rng, NOISY_CARDINALITY, n_classes - 1, 1)[0])
            true = sorted(int(c) for c in rng.choice(n_classes, k, replace=False))
            true_counts.append(k)
            most = max(1, min(3, int(n / sr / 0.3)))
            plan = [(c, int(rng.integers(1, most + 1))) for c in true]
            snr = (5, 25) if i in verified else (-5, 20)
            y, spans = _scene_clip(rng, sr, n, tuple(SCENES), plan, sigs, snr, (0.5, 0.95))
            written = true
            if i not in verified and rng.random() < noise_rate:
                written, op = _corrupt(rng, true, n_classes)
                ops[op] += 1
            path = f"audio/{i:05d}.wav"
            write_wav(tmp / path, y, sr)
            fold = 2 if i in test else 1
            out_clips.append(
                Clip(path, tuple(names[c] for c in written), fold, i in verified, n / sr)
            )
            events += [Event(path, on, off, names[c]) for on, off, c in spans]
        generator = _generator(
            "noisy", seed, scale, sr, names, sigs, clips=n_clips, verified_clips=n_ver,
            test_clips=n_test, noise_rate=noise_rate, verified_fraction=verified_fraction,
            test_fraction=test_fraction, duration_s=(min_duration, max_duration),
            cardinality_p=NOISY_CARDINALITY, label_cardinality_true=float(np.mean(true_counts)),
            snr_db_range={"verified": (5, 25), "unverified": (-5, 20)},
            corrupted_clips=sum(ops.values()), corruptions=ops,
            label_noise_rate_realised=sum(ops.values()) / (n_clips - n_ver),
        )  # fmt: skip
        Corpus(tmp, "noisy", names, out_clips, events, sr, generator).write(tmp)
    return Corpus.load(out)


# -- remix (2APAE) -------------------------------------------------------------------------------
def make_remix(
    out: str | Path,
    *,
    scale: str = "paper",
    clips: int | None = None,
    classes: int | None = None,
    snr_db: Sequence[float] = (0.0,),
    layout: str = "subdirs",
    seed: int = 0,
    sr: int = 32000,
    folds: int = 4,
    overwrite: bool = False,
) -> list[Corpus]:
    """2APAE-style mixtures (Deshmukh et al.): 3 isolated events per 10 s scene at fixed SNRs.

    Paper scale: 8000 clips per SNR, 41 classes of all families; each clip holds 3 events of
    3 distinct classes (0.5–2 s, trimmed with `trim_event`) at `DEFAULT_ONSETS_S`, mixed by
    `mix_scene` into a background drawn per clip from several scene types; clips go round-robin
    to folds 1..`folds` after a seeded shuffle. Every SNR mixes the same event and background
    draws (paired design). One SNR: a corpus at `out`; several: `layout="subdirs"` writes one
    corpus per SNR at `out/snr_{value:g}db`, `layout="column"` one corpus at `out` holding each
    mixture once per SNR (`Clip.snr_db` set, audio under `audio/snr_{value:g}db/`).
    """
    preset = _preset(scale, "remix", seed, sr)
    n_clips = _count(clips, preset["clips"], 1, "--clips")
    n_classes = _count(classes, preset["classes"], len(DEFAULT_ONSETS_S), "--classes")
    n_folds = _count(folds, 4, 1, "--folds")
    corpora = SnrCorpora(snr_values(np.atleast_1d(snr_db).tolist()), layout)
    if n_folds > n_clips:
        raise UserError(f"must be at most --clips ({n_clips}), not {n_folds}", where="--folds")
    names = _names(FAMILIES, n_classes)
    sigs = class_signatures(seed, "remix", n_classes, FAMILIES, sr)
    fold_of = np.empty(n_clips, dtype=np.int64)
    fold_of[_rng(seed, "remix", 1).permutation(n_clips)] = np.arange(n_clips) % n_folds + 1
    n = round(REMIX_DURATION_S * sr)
    with atomic_dir(out, overwrite) as tmp:
        for i in range(n_clips):
            rng = _rng(seed, "remix", 2, i)
            background = make_background(rng, n, sr, str(rng.choice(list(SCENES))))
            chosen = rng.choice(n_classes, len(DEFAULT_ONSETS_S), replace=False)
            placed = []
            for c, onset in zip(chosen, DEFAULT_ONSETS_S, strict=True):
                event = synth_event(sigs[c], rng, sr, max_s=rng.uniform(0.5, 2.0), fill=True)
                placed.append(PlacedEvent(trim_event(event, sr), names[c], onset))
            for s in corpora.snrs:
                y, strong = mix_scene(background, sr, placed, s)
                labels = tuple(sorted((lab for _, _, lab in strong), key=names.index))
                corpora.add(tmp, i, s, y, sr, labels, int(fold_of[i]), strong)

        facts = {
            "clips": n_clips, "snr_db_all": corpora.snrs, "layout": layout, "folds": n_folds,
            "duration_s": REMIX_DURATION_S, "onsets_s": DEFAULT_ONSETS_S, "event_s": (0.5, 2.0),
            "scenes": list(SCENES),
        }  # fmt: skip
        corpora.write(
            tmp, "remix", names, sr,
            lambda group: _generator("remix", seed, scale, sr, names, sigs, snr_db=group, **facts),
        )  # fmt: skip
    return corpora.load(Path(out))


GENERATORS: dict[str, Callable[..., Corpus | list[Corpus]]] = {
    "lowres": make_lowres,
    "noisy": make_noisy,
    "remix": make_remix,
}
