"""The field's reference implementations, wrapped for testing our own (as fgnt/sed_scores_eval
keeps a `reference.py` beside its fast code). Dev dependencies only; never imported by sedsweep.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from sedsweep.metrics import Clip


def sed_eval_segment_scores(
    reference: Sequence[Clip], estimated: Sequence[Clip], segment_length: float, n_classes: int
) -> dict[str, float]:
    """Overall segment-based scores from sed_eval (Mesaros, Heittola & Virtanen 2016), clip by
    clip with each clip's duration as its evaluated length, in our result keys."""
    with warnings.catch_warnings():  # dcase_util imports pkg_resources
        warnings.simplefilter("ignore")
        import sed_eval

    labels = [str(c) for c in range(n_classes)]
    metric = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=labels, time_resolution=segment_length
    )
    for n, ((duration, ref), (_, est)) in enumerate(zip(reference, estimated, strict=True)):
        metric.evaluate(
            reference_event_list=_events(f"clip{n}.wav", ref),
            estimated_event_list=_events(f"clip{n}.wav", est),
            evaluated_length_seconds=duration,
        )
    overall = metric.results_overall_metrics()
    f, er = overall["f_measure"], overall["error_rate"]
    return {
        "f1": f["f_measure"],
        "precision": f["precision"],
        "recall": f["recall"],
        "error_rate": er["error_rate"],
        "substitution_rate": er["substitution_rate"],
        "deletion_rate": er["deletion_rate"],
        "insertion_rate": er["insertion_rate"],
    }


def _events(filename: str, events: Sequence[tuple[float, float, int]]) -> list[dict]:
    return [
        {"filename": filename, "event_label": str(c), "onset": on, "offset": off}
        for on, off, c in events
    ]
