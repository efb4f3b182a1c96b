"""Evaluation metrics for weakly-labelled sound event detection and audio tagging (numpy only).

Conventions: ``y`` holds binary targets in {0, 1} and ``s`` real-valued scores, both shaped
[n_items, n_classes] unless stated otherwise. Ranking metrics reproduce scikit-learn exactly,
ties included; segment-based metrics follow sed_eval (Mesaros, Heittola & Virtanen 2016).

A metric that is not defined on the data it is given (no positives, one class only) raises
`UndefinedMetric`; any other error (a shape mismatch, non-binary targets) is a plain
ValueError, a bug to be reported, never a metric to leave out. This module also holds each
metric's direction (`lower_is_better`), which reports and importance use.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Event = tuple[float, float, int]
"""A sound event: (onset_s, offset_s, class_index)."""
Clip = tuple[float, Sequence[Event]]
"""An annotated clip: (duration_s, events)."""

# Metric names (the part after `split/`) ending so are minimised; every other one is maximised.
LOWER_IS_BETTER = ("loss", "_er", "error", "deletion", "insertion", "substitution")


def lower_is_better(metric: str) -> bool:
    """Direction of a metric by its name (`val/when_segment_er`, `loss`): errors and losses."""
    name = metric.rsplit("/", 1)[-1]
    return name.endswith(LOWER_IS_BETTER) or name == "er"


# The value of each validation metric at the epoch whose weights the method delivers (its own
# selection rule; the last epoch for a method that does not select), logged every epoch beside
# the per-epoch `val/...` history: ranking, tables, importance and `best` all read these.
SELECTED_PREFIX = "best_val/"
SELECTED_EPOCH = "selected_epoch"


def selected_key(metric: str) -> str:
    """The key a metric is ranked and tabulated by: `val/x` → `best_val/x`; others unchanged."""
    return SELECTED_PREFIX + metric[4:] if metric.startswith("val/") else metric


class UndefinedMetric(ValueError):
    """The metric is not defined on this data (no positives, a single class present, ...)."""


class SkippedClassWarning(UserWarning):
    """A class was left out of a macro average because the metric is undefined for it."""


def rankdata(a: ArrayLike, method: str = "average", axis: int | None = None) -> NDArray:
    """scipy.stats.rankdata, imported on first use (scipy.stats takes ~0.7 s to import)."""
    from scipy.stats import rankdata as scipy_rankdata

    return scipy_rankdata(a, method=method, axis=axis)


def _targets_scores(y: ArrayLike, s: ArrayLike, ndim: int | None = None) -> tuple[NDArray, NDArray]:
    """Validate and convert targets/scores: same shape, y binary, s finite."""
    y_arr, s_arr = np.asarray(y), np.asarray(s, dtype=np.float64)
    if y_arr.shape != s_arr.shape:
        raise ValueError(f"targets shape {y_arr.shape} != scores shape {s_arr.shape}")
    if ndim is not None and y_arr.ndim != ndim:
        raise ValueError(f"expected {ndim}-d arrays, got shape {y_arr.shape}")
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError("targets must be binary (0/1)")
    if not np.isfinite(s_arr).all():
        raise ValueError("scores must be finite")
    return y_arr.astype(bool), s_arr


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Binary ROC AUC as the Mann–Whitney U statistic with average ranks for ties."""
    y, s = _targets_scores(y_true, scores, ndim=1)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetric("ROC AUC is undefined when only one class is present")
    rank_sum = rankdata(s)[y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Average precision Σ_n (R_n − R_{n−1}) P_n over distinct thresholds (sklearn definition)."""
    y, s = _targets_scores(y_true, scores, ndim=1)
    if not y.any():
        raise UndefinedMetric("average precision is undefined without positives")
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(y[order])[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _macro(
    metric: Callable[[NDArray, NDArray], float],
    y: NDArray,
    s: NDArray,
    evaluable: NDArray,
    reason: str,
    classes: Sequence[str] | None,
) -> float:
    """Mean of a binary metric over evaluable classes, warning once about the skipped ones."""
    if classes is not None and len(classes) != y.shape[1]:
        raise ValueError(f"{len(classes)} class names for {y.shape[1]} classes")
    skipped = np.flatnonzero(~evaluable)
    if skipped.size:
        names = [classes[i] for i in skipped] if classes is not None else skipped.tolist()
        warnings.warn(
            f"skipped {skipped.size} class(es) {reason}: {names}", SkippedClassWarning, stacklevel=3
        )
    if not evaluable.any():
        return float("nan")
    return float(np.mean([metric(y[:, c], s[:, c]) for c in np.flatnonzero(evaluable)]))


def clip_auc(
    y: ArrayLike,
    s: ArrayLike,
    average: Literal["micro", "macro"] = "macro",
    classes: Sequence[str] | None = None,
) -> float:
    """Clip-level ROC AUC, micro (flattened) or macro (mean over classes with both labels)."""
    y_arr, s_arr = _targets_scores(y, s, ndim=2)
    if average == "micro":
        return roc_auc(y_arr.ravel(), s_arr.ravel())
    if average != "macro":
        raise ValueError(f"unknown average {average!r}")
    n_pos = y_arr.sum(axis=0)
    evaluable = (n_pos > 0) & (n_pos < y_arr.shape[0])
    return _macro(roc_auc, y_arr, s_arr, evaluable, "lacking positives or negatives", classes)


def mean_average_precision(
    y: ArrayLike,
    s: ArrayLike,
    average: Literal["micro", "macro"] = "macro",
    classes: Sequence[str] | None = None,
) -> float:
    """Micro-/macro-averaged AP (the micro-P / macro-P of Deshmukh et al. 2020, sklearn-equal)."""
    y_arr, s_arr = _targets_scores(y, s, ndim=2)
    if average == "micro":
        return average_precision(y_arr.ravel(), s_arr.ravel())
    if average != "macro":
        raise ValueError(f"unknown average {average!r}")
    evaluable = y_arr.any(axis=0)
    return _macro(average_precision, y_arr, s_arr, evaluable, "without positives", classes)


def frame_auc(
    frame_scores: ArrayLike | Sequence[ArrayLike], frame_targets: ArrayLike | Sequence[ArrayLike]
) -> float:
    """Frame-level micro ROC AUC over all frames of all clips pooled together."""
    scores = np.concatenate([np.asarray(a, dtype=np.float64) for a in _as_list(frame_scores)])
    targets = np.concatenate([np.asarray(a) for a in _as_list(frame_targets)])
    if scores.shape != targets.shape:
        raise ValueError(f"frame scores {scores.shape} and targets {targets.shape} differ")
    return roc_auc(targets.ravel(), scores.ravel())


def _as_list(arrays: ArrayLike | Sequence[ArrayLike]) -> list[ArrayLike]:
    """Wrap a single array in a list; pass a list of per-clip arrays through."""
    return list(arrays) if isinstance(arrays, list | tuple) else [arrays]


def _label_precisions(y: ArrayLike, s: ArrayLike) -> tuple[NDArray, NDArray]:
    """Precision at each (clip, positive label) and the targets, over clips with ≥1 label."""
    y_arr, s_arr = _targets_scores(y, s, ndim=2)
    labelled = y_arr.any(axis=1)
    if not labelled.any():
        raise UndefinedMetric("lwlrap is undefined when no clip has a positive label")
    y_arr, s_arr = y_arr[labelled], s_arr[labelled]
    # rank = number of labels scored >= this one (ties ranked above, as in sklearn's LRAP)
    rank_all = rankdata(-s_arr, method="max", axis=1)
    rank_pos = rankdata(np.where(y_arr, -s_arr, np.inf), method="max", axis=1)
    return np.where(y_arr, rank_pos / rank_all, 0.0), y_arr


def lwlrap_per_class(y: ArrayLike, s: ArrayLike) -> tuple[NDArray, NDArray]:
    """Per-class lwlrap (nan for classes without positives) and weights (share of positives)."""
    precisions, y_arr = _label_precisions(y, s)
    n_pos = y_arr.sum(axis=0)
    per_class = np.full(n_pos.shape, np.nan)
    np.divide(precisions.sum(axis=0), n_pos, out=per_class, where=n_pos > 0)
    return per_class, n_pos / n_pos.sum()


def lwlrap(y: ArrayLike, s: ArrayLike) -> float:
    """Label-weighted label-ranking average precision (DCASE2019 task 2; He et al. 2020)."""
    precisions, y_arr = _label_precisions(y, s)
    return float(precisions.sum() / y_arr.sum())


def _segment_activity(
    duration: float, events: Sequence[Event], segment_length: float, n_classes: int
) -> NDArray:
    """Boolean [n_segments, n_classes]: class has an event overlapping the segment by > 0."""
    n_segments = max(0, math.ceil(duration / segment_length - 1e-9))
    starts = np.arange(n_segments) * segment_length
    ends = np.minimum(starts + segment_length, duration)
    activity = np.zeros((n_segments, n_classes), dtype=bool)
    if events:
        onsets, offsets, labels = (np.asarray(v) for v in zip(*events, strict=True))
        overlap = np.minimum(offsets[:, None], ends) - np.maximum(onsets[:, None], starts) > 0
        event_idx, segment_idx = np.nonzero(overlap)
        activity[segment_idx, labels[event_idx].astype(int)] = True
    return activity


def _ratio(num: int, den: int, empty: float) -> float:
    """num / den, or ``empty`` when the denominator is zero."""
    return num / den if den else empty


def segment_based_scores(
    reference: Sequence[Clip], estimated: Sequence[Clip], *, segment_length: float = 1.0
) -> dict[str, float]:
    """Overall (micro) segment-based F1/P/R and error rates of Mesaros et al. 2016 (sed_eval)."""
    if len(reference) != len(estimated):
        raise ValueError(f"{len(reference)} reference clips but {len(estimated)} estimated")
    if segment_length <= 0:
        raise ValueError("segment_length must be positive")
    labels = [int(e[2]) for _, events in (*reference, *estimated) for e in events]
    if labels and min(labels) < 0:
        raise ValueError("class indices must be non-negative")
    n_classes = max(labels, default=-1) + 1
    totals = dict.fromkeys(("tp", "fp", "fn", "s", "d", "i", "n", "segments"), 0)
    for (duration, ref_events), (est_duration, est_events) in zip(
        reference, estimated, strict=True
    ):
        if not math.isclose(duration, est_duration, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"clip durations differ: {duration} vs {est_duration}")
        ref = _segment_activity(duration, ref_events, segment_length, n_classes)
        est = _segment_activity(duration, est_events, segment_length, n_classes)
        fn = (ref & ~est).sum(axis=1)
        fp = (~ref & est).sum(axis=1)
        totals["tp"] += int((ref & est).sum())
        totals["fp"] += int(fp.sum())
        totals["fn"] += int(fn.sum())
        totals["s"] += int(np.minimum(fn, fp).sum())
        totals["d"] += int(np.maximum(0, fn - fp).sum())
        totals["i"] += int(np.maximum(0, fp - fn).sum())
        totals["n"] += int(ref.sum())
        totals["segments"] += ref.shape[0]
    tp, fp, fn, n = totals["tp"], totals["fp"], totals["fn"], totals["n"]
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        "precision": _ratio(tp, tp + fp, 0.0),
        "recall": _ratio(tp, tp + fn, 0.0),
        "error_rate": _ratio(totals["s"] + totals["d"] + totals["i"], n, math.nan),
        "substitution_rate": _ratio(totals["s"], n, math.nan),
        "deletion_rate": _ratio(totals["d"], n, math.nan),
        "insertion_rate": _ratio(totals["i"], n, math.nan),
        "n_segments": totals["segments"],
    }


def frames_to_events(activity: ArrayLike, frame_times: ArrayLike, hop_s: float) -> list[Event]:
    """Turn a binary [T] or [T, C] frame activity into events, one per run of active frames."""
    act = np.asarray(activity).astype(bool)
    act = act[:, None] if act.ndim == 1 else act
    times = np.asarray(frame_times, dtype=np.float64)
    if act.ndim != 2 or times.shape != (act.shape[0],):
        raise ValueError(f"activity {act.shape} does not match frame_times {times.shape}")
    events: list[Event] = []
    for c in range(act.shape[1]):
        edges = np.diff(np.r_[0, act[:, c].astype(np.int8), 0])
        firsts, lasts = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        for first, last in zip(firsts, lasts, strict=True):
            onset = max(0.0, float(times[first]) - hop_s / 2)
            events.append((onset, float(times[last]) + hop_s / 2, c))
    return events


def segment_f1_from_frames(
    frame_probs_list: Sequence[ArrayLike],
    frame_times_list: Sequence[ArrayLike],
    hop_s: float,
    reference: Sequence[Clip],
    *,
    threshold: float = 0.5,
    segment_length: float = 1.0,
) -> dict[str, float]:
    """Segment-based scores of frame probabilities thresholded (≥ threshold) into events."""
    if not len(frame_probs_list) == len(frame_times_list) == len(reference):
        raise ValueError("frame_probs_list, frame_times_list and reference differ in length")
    estimated = [
        (duration, frames_to_events(np.asarray(probs) >= threshold, times, hop_s))
        for probs, times, (duration, _) in zip(
            frame_probs_list, frame_times_list, reference, strict=True
        )
    ]
    return segment_based_scores(reference, estimated, segment_length=segment_length)


def f1_macro(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Mean per-class F-score of s ≥ threshold over the classes with a positive (He et al. 4.3)."""
    pred, pos = s >= threshold, y.astype(bool)
    tp, fp, fn = (pred & pos).sum(0), (pred & ~pos).sum(0), (~pred & pos).sum(0)
    has = pos.any(axis=0)
    if not has.any():
        raise UndefinedMetric("F-score is undefined without positives")
    return float(np.mean(2 * tp[has] / (2 * tp + fp + fn)[has]))


def defined_metrics(candidates: Mapping[str, Callable[[], float]]) -> dict[str, float]:
    """Evaluate each candidate metric, keeping those defined and finite on this data.

    A metric that raises `UndefinedMetric` (no positives, a single class present, ...) or is
    not finite is left out; every other exception propagates (a bug must not silently drop a
    metric). SkippedClassWarning is silenced: leaving classes out is expected on small splits.
    """
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedClassWarning)
        for key, compute in candidates.items():
            try:
                value = compute()
            except UndefinedMetric:
                continue
            if math.isfinite(value):
                out[key] = value
    return out
