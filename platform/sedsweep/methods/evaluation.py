"""The metric sets methods report, computed once here for every method.

Each function returns *candidates*: metric name → a function computing it, for
`sedsweep.metrics.defined_metrics`, which keeps those defined on the split at hand (a split
without a class, or without strong labels, simply lacks the metrics that need them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from sedsweep.data.splits import Splits
from sedsweep.features import FeatureSet
from sedsweep.metrics import (
    UndefinedMetric,
    clip_auc,
    defined_metrics,
    frame_auc,
    lower_is_better,
    lwlrap,
    mean_average_precision,
    segment_f1_from_frames,
)

Candidates = dict[str, Callable[[], float]]

TAGGING = ("auc_micro", "auc_macro", "ap_micro", "ap_macro", "lwlrap")
"""The names `tagging_candidates` reports (before its prefix)."""
DETECTION = (
    "frame_auc", "frame_auc_pos", "segment_f1", "segment_er", "segment_f1_100ms",
    "strong_excluded",
)  # fmt: skip
"""The names `detection_candidates` reports (before its prefix); strong_excluded, the number
of the split's clips left out for lack of a complete strong annotation, only when some are."""
FINE_SEGMENT_S = 0.1  # the finer segment length of `segment_f1_100ms`


def names(prefix: str, family: tuple[str, ...]) -> set[str]:
    """A metric family's names with a prefix (`who_` + TAGGING)."""
    return {prefix + name for name in family}


def tagging_candidates(y: np.ndarray, s: np.ndarray, prefix: str = "") -> Candidates:
    """Clip-level tagging metrics of scores `s` against weak targets `y` ([clips, classes]):
    ROC AUC and average precision, micro and macro (the 2APAE paper's micro-P / macro-P),
    and lwlrap (He et al.); names get `prefix` (e.g. `who_`)."""
    metrics: list[Callable[[], float]] = [
        lambda: clip_auc(y, s, "micro"),
        lambda: clip_auc(y, s, "macro"),
        lambda: mean_average_precision(y, s, "micro"),
        lambda: mean_average_precision(y, s, "macro"),
        lambda: lwlrap(y, s),
    ]
    return {f"{prefix}{k}": v for k, v in zip(TAGGING, metrics, strict=True)}


def detection_candidates(
    fs: FeatureSet,
    idx: np.ndarray,
    frames: Sequence[np.ndarray],
    *,
    any_event: bool = False,
    prefix: str = "",
) -> Candidates:
    """Frame-level ROC AUC and segment-based F1 / error rate (1 s segments, threshold 0.5) of
    frame probabilities against the strong labels; none without strong labels. Beside them,
    for corpora where telling clips apart is most of the task: `frame_auc_pos`, the frame AUC
    over the clips that hold an event only (where in a positive clip, not which clips), and
    `segment_f1_100ms`, segment F1 on 100 ms segments.

    Only clips whose strong annotation is complete are scored (`FeatureSet.strong`): a clip with
    weak labels only has no "no event" frames to count its detections against. How many were
    left out is reported as strong_excluded when any were.

    `frames[j]` holds clip `idx[j]`'s probabilities per frame: [T, classes], or [T] with
    `any_event` (one "any event" detector, Morfi & Stowell's WHEN), scored against the union
    of all classes' events.
    """
    if fs.events is None:
        return {}
    excluded: Candidates = {}
    if fs.strong is not None and not fs.strong[idx].all():
        keep = fs.strong[idx]
        excluded = {f"{prefix}strong_excluded": functools.partial(float, int((~keep).sum()))}
        frames = [f for f, k in zip(frames, keep.tolist(), strict=True) if k]
        idx = idx[keep]
        if len(idx) == 0:
            return excluded
    events = fs.events
    if any_event:
        targets = [fs.strong_targets(int(i)).any(axis=1) for i in idx]
        annotated = [[(on, off, 0) for on, off, _ in events[i]] for i in idx]
    else:
        targets = [fs.strong_targets(int(i)) for i in idx]
        annotated = [events[i] for i in idx]
    reference = list(zip(fs.durations[idx].tolist(), annotated, strict=True))
    times = [fs.times(int(i)) for i in idx]
    hop = fs.params.hop_s
    segment = functools.cache(
        lambda length: segment_f1_from_frames(
            list(frames), times, hop, reference, segment_length=length
        )
    )

    def within_positive_clips() -> float:
        held = [k for k, t in enumerate(targets) if np.asarray(t).any()]
        if not held:
            raise UndefinedMetric("no clip of the split holds an event")
        return frame_auc([frames[k] for k in held], [targets[k] for k in held])

    metrics: dict[str, Callable[[], float]] = {
        "frame_auc": lambda: frame_auc(list(frames), targets),
        "frame_auc_pos": within_positive_clips,
        "segment_f1": lambda: segment(1.0)["f1"],
        "segment_er": lambda: segment(1.0)["error_rate"],
        "segment_f1_100ms": lambda: segment(FINE_SEGMENT_S)["f1"],
    }
    return {f"{prefix}{k}": v for k, v in metrics.items()} | excluded


COUNTS = ("strong_excluded",)  # reported beside the metrics, but not scores: no chance level


def blind_outputs(prior: np.ndarray) -> list[np.ndarray]:
    """The outputs of input-blind predictors, per class: the training label `prior` (which
    ranks classes by frequency), everything present (all ones) and nothing present (zeros)."""
    prior = np.asarray(prior, dtype=np.float64)
    return [prior, np.ones_like(prior), np.zeros_like(prior)]


def chance_levels(score: Callable[[np.ndarray], Candidates], prior: np.ndarray) -> dict[str, float]:
    """Each metric's chance level: the best value it takes over the `blind_outputs` of
    `prior`, where `score(output)` gives the metric candidates of predicting `output` (per
    class) for every clip (and frame). Ranking metrics of a constant output: AUC 0.5, AP the
    prevalence (micro: pooled, so ranking by the prior counts), lwlrap of prior-ranked
    scores; thresholded ones (segment F1 / ER, macro F1): the better of all or none."""
    best: dict[str, float] = {}
    for output in blind_outputs(prior):
        for name, value in defined_metrics(score(output)).items():
            if name.endswith(COUNTS):
                continue
            if name not in best or (
                value < best[name] if lower_is_better(name) else value > best[name]
            ):
                best[name] = value
    return best


def split_chance(
    splits: Splits, score: Callable[[np.ndarray, np.ndarray], Candidates], prior: np.ndarray
) -> dict[str, float]:
    """`chance_levels` on the validation and test splits (those with clips), keyed
    `val/<name>` and `test/<name>`: `score(idx, output)` gives the candidates of predicting
    `output` for every clip of `idx`."""
    levels: dict[str, float] = {}
    for split in ("val", "test"):
        idx = splits[split]
        if len(idx):
            found = chance_levels(lambda out, idx=idx: score(idx, out), prior)
            levels |= {f"{split}/{k}": v for k, v in found.items()}
    return levels
