"""Tests for sedsweep.metrics against scikit-learn and an independent brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    label_ranking_average_precision_score,
    roc_auc_score,
)

from sedsweep.metrics import (
    SkippedClassWarning,
    UndefinedMetric,
    average_precision,
    clip_auc,
    defined_metrics,
    frame_auc,
    frames_to_events,
    lwlrap,
    lwlrap_per_class,
    mean_average_precision,
    roc_auc,
    segment_based_scores,
    segment_f1_from_frames,
)


def _random_multilabel(
    seed: int, n: int = 200, c: int = 6, decimals: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Correlated targets/scores; rounding the scores creates many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.1, 0.5, c)).astype(int)
    s = rng.random((n, c)) + 0.5 * y
    return y, (np.round(s, decimals) if decimals is not None else s)


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("seed", range(3))
def test_auc_and_ap_match_sklearn(seed: int, decimals: int | None) -> None:
    y, s = _random_multilabel(seed, decimals=decimals)
    assert roc_auc(y[:, 0], s[:, 0]) == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert average_precision(y[:, 0], s[:, 0]) == pytest.approx(
        average_precision_score(y[:, 0], s[:, 0])
    )
    for average in ("micro", "macro"):
        assert clip_auc(y, s, average) == pytest.approx(roc_auc_score(y, s, average=average))
        assert mean_average_precision(y, s, average) == pytest.approx(
            average_precision_score(y, s, average=average)
        )


def test_heavily_tied_binary_scores() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 3, 500) + y  # only four distinct scores
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_binary_metrics_reject_degenerate_targets() -> None:
    with pytest.raises(UndefinedMetric, match="one class"):
        roc_auc(np.ones(5), np.arange(5.0))
    with pytest.raises(UndefinedMetric, match="positives"):
        average_precision(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="binary") as err:
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    assert not isinstance(err.value, UndefinedMetric)  # bad input, not an undefined metric


def test_defined_metrics_drops_only_undefined_ones() -> None:
    y, s = np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.1], [0.2, 0.3]])
    kept = defined_metrics(
        {
            "micro": lambda: clip_auc(y, s, "micro"),
            "one_class": lambda: roc_auc(np.ones(3), np.arange(3.0)),  # undefined: left out
            "nan": lambda: math.nan,  # not finite: left out
        }
    )
    assert kept == {"micro": pytest.approx(roc_auc_score(y.ravel(), s.ravel()))}
    with pytest.raises(ValueError, match="shape"):  # a bug is never silently dropped
        defined_metrics({"broken": lambda: clip_auc(y, s[:, :1], "micro")})


def test_macro_skips_unevaluable_classes_with_warning() -> None:
    y, s = _random_multilabel(3)
    y[:, 1] = 0  # no positives: skipped by both metrics
    y[:, 4] = 1  # no negatives: skipped by AUC only
    keep_auc, keep_ap = [0, 2, 3, 5], [0, 2, 3, 4, 5]
    with pytest.warns(SkippedClassWarning, match=r"\[1, 4\]"):
        auc = clip_auc(y, s, "macro")
    assert auc == pytest.approx(roc_auc_score(y[:, keep_auc], s[:, keep_auc], average="macro"))
    names = [f"class{i}" for i in range(6)]
    with pytest.warns(SkippedClassWarning, match="class1"):
        ap = mean_average_precision(y, s, "macro", classes=names)
    assert ap == pytest.approx(average_precision_score(y[:, keep_ap], s[:, keep_ap]))


def test_macro_with_no_evaluable_class_is_nan() -> None:
    with pytest.warns(SkippedClassWarning):
        assert math.isnan(clip_auc(np.zeros((4, 2)), np.ones((4, 2)), "macro"))


def test_frame_auc_pools_clips() -> None:
    rng = np.random.default_rng(11)
    targets = [rng.integers(0, 2, (t, 1)) for t in (30, 45, 12)]
    scores = [np.round(rng.random(x.shape) + 0.3 * x, 1) for x in targets]
    expected = roc_auc_score(np.concatenate(targets).ravel(), np.concatenate(scores).ravel())
    assert frame_auc(scores, targets) == pytest.approx(expected)
    assert frame_auc(np.concatenate(scores), np.concatenate(targets)) == pytest.approx(expected)
    flat = [x.ravel() for x in targets], [x.ravel() for x in scores]
    assert frame_auc(flat[1], flat[0]) == pytest.approx(expected)


@pytest.mark.parametrize("decimals", [None, 1])
def test_lwlrap_matches_weighted_sklearn_lrap(decimals: int | None) -> None:
    y, s = _random_multilabel(5, n=300, c=8, decimals=decimals)
    y[::7] = 0  # unlabelled clips are ignored
    m = y.sum(axis=1) > 0
    expected = label_ranking_average_precision_score(y[m], s[m], sample_weight=y[m].sum(axis=1))
    assert lwlrap(y, s) == pytest.approx(expected)
    per_class, weights = lwlrap_per_class(y, s)
    assert weights.sum() == pytest.approx(1.0)
    assert np.sum(weights * per_class) == pytest.approx(expected)


def test_lwlrap_hand_example() -> None:
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    s = np.array([[0.9, 0.8, 0.1, 0.0], [0.5, 0.5, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    # clip 0: label 0 at rank 1 -> 1, label 2 at rank 3 with 2 positives -> 2/3
    # clip 1: label 1 tied with label 0 -> rank 2, 1 positive -> 1/2; clip 2 ignored
    assert lwlrap(y, s) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    per_class, weights = lwlrap_per_class(y, s)
    np.testing.assert_allclose(per_class[:3], [1.0, 0.5, 2 / 3])
    assert math.isnan(per_class[3])
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="no clip"):
        lwlrap(np.zeros((2, 3)), np.ones((2, 3)))


def _random_clips(rng: np.random.Generator, n_clips: int, n_classes: int) -> list:
    """Clips in centiseconds: (duration_cs, [(onset_cs, offset_cs, class)])."""
    clips = []
    for _ in range(n_clips):
        duration = int(rng.integers(30, 500))
        events = []
        for _ in range(int(rng.integers(0, 6))):
            onset = int(rng.integers(0, duration + 20))  # some start past the clip end
            events.append((onset, onset + int(rng.integers(0, 150)), int(rng.integers(n_classes))))
        clips.append((duration, events))
    return clips


def _to_seconds(clips: list) -> list:
    return [(d / 100, [(on / 100, off / 100, c) for on, off, c in ev]) for d, ev in clips]


def _brute_force_scores(reference: list, estimated: list, seg_cs: int, n_classes: int) -> dict:
    """Sample every millisecond; a class is active in a segment if it covers any sample in it."""
    counts = dict.fromkeys(("tp", "fp", "fn", "s", "d", "i", "n", "segments"), 0)
    for (duration, ref_events), (_, est_events) in zip(reference, estimated, strict=True):
        n_ms, seg_ms = duration * 10, seg_cs * 10
        n_segments = -(-n_ms // seg_ms)
        activities = []
        for events in (ref_events, est_events):
            covered = np.zeros((n_ms, n_classes), dtype=bool)
            for onset, offset, c in events:
                covered[onset * 10 : offset * 10, c] = True
            active = np.zeros((n_segments, n_classes), dtype=bool)
            for ms in range(n_ms):
                active[ms // seg_ms] |= covered[ms]
            activities.append(active)
        for ref, est in zip(*activities, strict=True):
            tp = sum(r and e for r, e in zip(ref, est, strict=True))
            fp = sum(e and not r for r, e in zip(ref, est, strict=True))
            fn = sum(r and not e for r, e in zip(ref, est, strict=True))
            counts["tp"] += tp
            counts["fp"] += fp
            counts["fn"] += fn
            counts["s"] += min(fn, fp)
            counts["d"] += max(0, fn - fp)
            counts["i"] += max(0, fp - fn)
            counts["n"] += int(ref.sum())
        counts["segments"] += n_segments
    tp, fp, fn, n = counts["tp"], counts["fp"], counts["fn"], counts["n"]
    return {
        "f1": 2 * tp / (2 * tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "error_rate": (counts["s"] + counts["d"] + counts["i"]) / n,
        "substitution_rate": counts["s"] / n,
        "deletion_rate": counts["d"] / n,
        "insertion_rate": counts["i"] / n,
        "n_segments": counts["segments"],
    }


@pytest.mark.parametrize("seg_cs", [100, 50])
def test_segment_scores_match_brute_force(seg_cs: int) -> None:
    rng = np.random.default_rng(seg_cs)
    reference = _random_clips(rng, 40, 4)
    noise = _random_clips(rng, 40, 4)
    estimated = [(d, ev) for (d, _), (_, ev) in zip(reference, noise, strict=True)]
    # half the clips: estimate = reference with jittered boundaries, so there are true positives
    for k in range(0, 40, 2):
        d, ev = reference[k]
        jitter = [(max(0, on + int(rng.integers(-30, 30))), off, c) for on, off, c in ev]
        estimated[k] = (d, jitter)
    expected = _brute_force_scores(reference, estimated, seg_cs, 4)
    result = segment_based_scores(
        _to_seconds(reference), _to_seconds(estimated), segment_length=seg_cs / 100
    )
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_segment_scores_hand_example() -> None:
    reference = [(2.0, [(0.0, 1.5, 0), (0.2, 0.4, 1)])]
    estimated = [(2.0, [(0.0, 0.8, 0), (1.2, 1.8, 2)])]
    # segment 0: ref {0, 1}, est {0} -> TP 1, FN 1 (deletion)
    # segment 1: ref {0}, est {2} -> FN 1, FP 1 (substitution); N = 3
    result = segment_based_scores(reference, estimated)
    assert result == pytest.approx(
        {
            "f1": 0.4,
            "precision": 0.5,
            "recall": 1 / 3,
            "error_rate": 2 / 3,
            "substitution_rate": 1 / 3,
            "deletion_rate": 1 / 3,
            "insertion_rate": 0.0,
            "n_segments": 2,
        }
    )


def test_segment_scores_without_reference_activity() -> None:
    result = segment_based_scores([(1.5, [])], [(1.5, [(0.1, 0.2, 0)])])
    assert result["n_segments"] == 2
    assert result["f1"] == 0.0
    assert math.isnan(result["error_rate"])


def test_segment_count_is_robust_to_float_division() -> None:
    clips = [(0.07, [(0.05, 0.07, 0)])]  # 0.07 / 0.01 == 7.000000000000001
    result = segment_based_scores(clips, clips, segment_length=0.01)
    assert result["n_segments"] == 7
    assert result["f1"] == 1.0


def test_frames_to_events_hand_example() -> None:
    activity = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [1, 0]])
    times = np.arange(6) * 0.1
    events = frames_to_events(activity, times, hop_s=0.1)
    expected = [(0.0, 0.15, 0), (0.35, 0.55, 0), (0.05, 0.35, 1)]
    assert len(events) == len(expected)
    for got, want in zip(events, expected, strict=True):
        assert got == pytest.approx(want)
    [(onset, offset, c)] = frames_to_events(activity[:, 1], times, 0.1)
    assert (onset, offset, c) == (pytest.approx(0.05), pytest.approx(0.35), 0)
    assert frames_to_events(np.zeros(6), times, 0.1) == []


def test_segment_f1_from_perfect_frames() -> None:
    rng = np.random.default_rng(3)
    hop = 0.02
    probs, times, reference = [], [], []
    for n_frames in (150, 230, 97):
        activity = rng.random((n_frames, 3)) < 0.05
        activity = np.repeat(activity[::10], 10, axis=0)[:n_frames]  # runs of 10 frames
        frame_times = (np.arange(n_frames) + 0.5) * hop
        probs.append(np.where(activity, 0.5, 0.49))
        times.append(frame_times)
        reference.append((n_frames * hop, frames_to_events(activity, frame_times, hop)))
    result = segment_f1_from_frames(probs, times, hop, reference, segment_length=0.5)
    assert result["f1"] == 1.0
    assert result["error_rate"] == 0.0
    shifted = segment_f1_from_frames(probs, times, hop, reference, threshold=0.6)
    assert shifted["recall"] == 0.0


# -- segment-based scores against the field's reference (sed_eval) ---------------------------
def realistic_clips(seed: int, n_clips: int = 12, n_classes: int = 4) -> tuple:
    """Reference events and frame probabilities that track them with noise, blur and misses
    (a detector's output, not random scores); durations are not multiples of a segment."""
    rng = np.random.default_rng(seed)
    hop = 0.032
    reference, probs, times = [], [], []
    for _ in range(n_clips):
        duration = float(rng.uniform(3.0, 10.0))
        n_frames = int(duration / hop)
        t = (np.arange(n_frames) + 0.5) * hop
        events, p = [], np.zeros((n_frames, n_classes))
        for c in range(n_classes):
            for _ in range(rng.integers(0, 3)):
                onset = float(rng.uniform(0, duration - 0.2))
                offset = min(duration, onset + float(rng.uniform(0.1, 2.5)))
                events.append((onset, offset, c))
                if rng.random() > 0.2:  # the detector misses one event in five
                    p[:, c] += (t >= onset) & (t < offset)
        kernel = np.ones(7) / 7
        p = np.stack([np.convolve(p[:, c], kernel, "same") for c in range(n_classes)], axis=1)
        p = np.clip(0.8 * p + rng.normal(0.1, 0.15, p.shape), 0, 1)
        reference.append((duration, events))
        probs.append(p)
        times.append(t)
    return reference, probs, times, hop


@pytest.mark.parametrize("segment_length", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_segment_scores_match_sed_eval(seed: int, threshold: float, segment_length: float) -> None:
    from .reference import sed_eval_segment_scores

    reference, probs, times, hop = realistic_clips(seed)
    estimated = [
        (duration, frames_to_events(p >= threshold, t, hop))
        for (duration, _), p, t in zip(reference, probs, times, strict=True)
    ]
    ours = segment_based_scores(reference, estimated, segment_length=segment_length)
    theirs = sed_eval_segment_scores(reference, estimated, segment_length, n_classes=4)
    assert 0 < ours["f1"] < 1 and ours["error_rate"] > 0  # neither perfect nor empty
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    via_frames = segment_f1_from_frames(
        probs, times, hop, reference, threshold=threshold, segment_length=segment_length
    )
    assert via_frames == ours
