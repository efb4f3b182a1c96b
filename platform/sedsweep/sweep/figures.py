"""Per-trial figures, drawn once at the end of a sweep for the trials someone will look at.

Drawing a method's figures costs more than a tiny-scale epoch (1.1 s for whenwho, 1.6 s for
mtl_attention at `--scale tiny`), and inside a trial it held a trial slot for every completed
trial, most of which nobody opens. The driver now draws them after `fit()` from the final
checkpoint of the best completed trial of a search (the one the dashboard shows) or of each
design cell of a grid (one exemplar per table cell, not one per replicate). They are written
into the trial's folder in the sweep directory (so `sedsweep sync` can replay them) and
journaled as the run's `figures/` artifacts; a resumed sweep does not draw a trial twice
(`FIGURES_TAG`).
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path
from typing import Any

from sedsweep.features import FeatureSet
from sedsweep.journal import Journal
from sedsweep.methods import get_method
from sedsweep.methods.base import pick_device, render_artifacts
from sedsweep.sweep.spec import SweepPlan, data_key, epoch_of, trial_method_config
from sedsweep.sweep.trainable import restore
from sedsweep.tracking import FIGURES_DIR, FIGURES_TAG


def figure_trials(plan: SweepPlan, results: list[Any]) -> list[Any]:
    """The results to draw: the best completed trial (by the primary objective's selected
    value) of each design cell of a grid (its replicates are one cell), or of a whole search.
    Ties and non-finite values go to the lower trial number."""
    done = [
        r
        for r in results
        if r.error is None
        and r.checkpoint is not None
        and epoch_of(r.metrics)
        and epoch_of(r.metrics) >= plan.budget(r.config["overrides"])
    ]
    sign = -1.0 if plan.spec.primary.maximise else 1.0
    replicate_keys = set(plan.spec.replicates)

    def cell(result: Any) -> str:
        if plan.spec.search.algorithm != "grid":
            return ""
        overrides = result.config["overrides"]
        return repr(sorted((k, repr(v)) for k, v in overrides.items() if k not in replicate_keys))

    def rank(result: Any) -> tuple[float, int]:
        value = plan.objective_value(result.metrics)
        return (math.inf if value is None else sign * value, int(result.config["optuna_trial"]))

    best: dict[str, Any] = {}
    for result in sorted(done, key=rank):
        best.setdefault(cell(result), result)
    return list(best.values())


def draw_figures(
    plan: SweepPlan, features: dict[str, FeatureSet], journal: Journal, results: list[Any]
) -> int:
    """Draw and journal the figures of `figure_trials` not drawn before; returns how many
    trials got figures. A checkpoint that cannot be restored is skipped (no figures)."""
    method_cls = get_method(plan.spec.method)
    base = plan.base.config.model_dump(mode="json")
    device = pick_device(None)
    drawn = 0
    for result in figure_trials(plan, results):
        key = str(result.metrics["trial_id"])
        if FIGURES_TAG in journal.state(key).tags:
            continue
        overrides = result.config["overrides"]
        cfg = trial_method_config(method_cls, base, overrides, plan.base_epochs)
        fs = features[data_key(overrides)]
        make = functools.partial(method_cls, cfg, fs, device)
        trainer, note = restore(make, result.checkpoint)
        if note is not None:  # not the final weights: no figures rather than wrong ones
            continue
        folder = Path(result.path) / FIGURES_DIR
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        paths = render_artifacts(trainer, folder)
        if paths:
            journal.artifacts(key, folder, FIGURES_DIR)
        journal.tags(key, {FIGURES_TAG: str(len(paths))})
        drawn += 1
    return drawn
