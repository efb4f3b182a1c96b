"""Training validity: did a trial learn anything, and had it stopped improving?

A number enters a ranking, a table's marks, importance, `best` or a claim only when the trial
behind it is valid (DESIGN.md, "Validity before statistics"). Three tests, each against what a
model that learned nothing would show:

- *loss*: each training loss the method names a reference for (`chance/train/<loss>`: the
  loss when every output predicts the training label prior; BCE → the prior's entropy) must
  be at least `LOSS_MARGIN` below it. A task's own loss
  (`train/loss_when`) is read only for objectives of that task (`val/when_frame_auc`), so a
  WHEN sweep is not judged by how its WHO network did; any other loss is read for all;
- *chance*: the objective's selected validation value (`best_val/<name>`) must clear its
  chance level (`chance/val/<name>`: the best an input-blind predictor scores on the
  validation split; AUC → 0.5, AP → the prevalence, lwlrap → prior-ranked scores) by
  `CHANCE_MARGIN` of the headroom between chance and a perfect score;
- *converged* (trials that ran their whole budget; a pruned trial is compared at its rung):
  the objective's validation curve must have flattened, i.e. its last `TAIL` of the epochs
  (rounded, at least one) added at most `RISING` of the curve's total gain.

The margins are conventions: 5 % of what the prior leaves is "learned something"; for a
curve that saturates exponentially, 10 % of the gain in its last fifth means it was stopped
before about 1.2 time constants (a straight line adds 20 %). The last fifth is rounded to the
nearest epoch (a 6-epoch trial's is its last epoch). A trial that logged no reference
levels (the `null` load generator, sweeps recorded before the gate) is not judged, and says
so.

Pure Python on numbers already logged: the sweep driver, reports and `best` all use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sedsweep.metrics import SELECTED_PREFIX, lower_is_better

CHANCE_PREFIX = "chance/"  # reference levels a method logs beside its metrics: chance/val/x
LOSS_MARGIN = 0.05  # a training loss must be at least this fraction below the prior's
CHANCE_MARGIN = 0.05  # ... and the objective this fraction of the headroom above chance
TAIL = 0.2  # the last fifth of a trial's epochs ...
RISING = 0.1  # ... may add at most this fraction of the curve's total gain
MIN_CURVE = 3  # fewer epochs than this: convergence is not judged
VALID_TAG = "sweep.valid"  # "true" / "false" / "unjudged" on each child run (end of sweep)
REASON_TAG = "sweep.invalid_reason"  # why a trial is not valid (or not judged)


@dataclass(frozen=True)
class Validity:
    """A trial's verdict: `valid` (a trial not judged counts as valid) and why not."""

    valid: bool
    reason: str = ""
    judged: bool = True

    @property
    def tag(self) -> str:
        """The value of `VALID_TAG`."""
        return "unjudged" if not self.judged else "true" if self.valid else "false"

    def tags(self, max_chars: int) -> dict[str, str]:
        """The run tags that record it (`VALID_TAG`, `REASON_TAG` cut to `max_chars`)."""
        return {VALID_TAG: self.tag, REASON_TAG: self.reason[:max_chars]}


NOT_JUDGED = Validity(True, "not judged: the trial logged no chance/* reference levels", False)


def references(metrics: Mapping[str, float]) -> dict[str, float]:
    """The reference levels among a trial's metrics, keyed without the prefix (`val/x`)."""
    return {
        k.removeprefix(CHANCE_PREFIX): v
        for k, v in metrics.items()
        if k.startswith(CHANCE_PREFIX) and isinstance(v, int | float) and math.isfinite(v)
    }


def headroom_share(value: float, chance: float, maximise: bool) -> float:
    """How far `value` got from `chance` towards a perfect score (1 for a maximised metric in
    [0, 1], 0 for a minimised one such as an error rate): 0 at chance, 1 when perfect,
    negative below chance."""
    room = (1.0 - chance) if maximise else chance
    gain = (value - chance) if maximise else (chance - value)
    if room <= 0:
        return 0.0 if gain <= 0 else math.inf
    return gain / room


def tail_epochs(n: int) -> int:
    """How many of `n` epochs are a curve's last `TAIL` (rounded, at least one)."""
    return max(1, round(TAIL * n))


def tail_gain(curve: Sequence[float], maximise: bool) -> float | None:
    """The share of a validation curve's total gain (its best minus its first value) that
    its last `TAIL` of epochs added (their best minus the best before them); None when the
    curve is too short to tell or never rose."""
    values = [v if maximise else -v for v in curve if math.isfinite(v)]
    if len(values) < MIN_CURVE:
        return None
    tail = tail_epochs(len(values))
    total = max(values) - values[0]
    if total <= 0:
        return None
    return max(0.0, max(values[-tail:]) - max(values[:-tail])) / total


def judge_trial(
    metrics: Mapping[str, float],
    objective: str,
    *,
    maximise: bool | None,
    completed: bool,
    curve: Callable[[], Sequence[float]],
) -> Validity:
    """`judge` for a trial of a sweep: its convergence is judged when it ran its whole budget
    (`completed`; a pruned trial is judged at its rung) and logged reference levels, and only
    then is `curve` called for its objective's per-epoch validation values."""
    judged = any(k.startswith(CHANCE_PREFIX) for k in metrics)
    values = curve() if completed and judged else None
    return judge(metrics, objective, maximise=maximise, curve=values)


def judge(
    metrics: Mapping[str, float],
    objective: str,
    *,
    maximise: bool | None = None,
    curve: Sequence[float] | None = None,
) -> Validity:
    """The validity of a trial from its final metrics (`train/…`, `best_val/…` and the
    `chance/…` references) and, for a trial that ran its budget, its objective's per-epoch
    validation `curve` (None: convergence not judged). `objective` is the sweep's (`val/x`);
    `maximise` its direction (default: the metric's own)."""
    refs = references(metrics)
    if not refs:
        return NOT_JUDGED
    up = not lower_is_better(objective) if maximise is None else maximise
    reasons = []
    name = objective.removeprefix("val/")
    tasks = {k.removeprefix("train/loss_") for k in refs if k.startswith("train/loss_")}
    own = {t for t in tasks if name.startswith(f"{t}_")}  # the objective's task, if any
    for key, prior in sorted(refs.items()):
        task = key.removeprefix("train/loss_")
        if not key.startswith("train/") or (own and task in tasks and task not in own):
            continue  # another task's loss
        loss = metrics.get(key)
        if loss is not None and math.isfinite(loss) and loss > (1 - LOSS_MARGIN) * prior:
            reasons.append(
                f"{key} {loss:.4g} is not {LOSS_MARGIN:.0%} below the label prior's {prior:.4g}"
            )
    chance = refs.get(f"val/{name}")
    value = metrics.get(SELECTED_PREFIX + name, metrics.get(objective))
    if chance is not None and value is not None and math.isfinite(value):
        share = headroom_share(value, chance, up)
        if share < CHANCE_MARGIN:
            reasons.append(
                f"{objective} {value:.4g} is not above chance {chance:.4g} (by "
                f"{CHANCE_MARGIN:.0%} of the headroom to a perfect score)"
            )
    rise = None if curve is None else tail_gain(curve, up)
    if rise is not None and rise > RISING:
        n = len(curve or [])
        reasons.append(
            f"not converged: its last {tail_epochs(n)} of {n} epochs added {rise:.0%} of "
            f"the {objective} gain"
        )
    return Validity(not reasons, "; ".join(reasons))
