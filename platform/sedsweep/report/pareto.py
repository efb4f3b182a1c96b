"""Multi-objective helpers for reporting Pareto sweeps: fronts, hypervolume, picking one trial.

A Pareto sweep records several objective metrics per trial, each maximised or minimised. The
points are an ``(n, d)`` array, one row per trial and one column per objective, in the original
units of the metrics; ``maximise`` says per column which direction is better.

Definitions used throughout:

- *Orientation*: minimised columns are negated, so that larger is better in every column.
  Everything below is defined on oriented values; inputs and outputs stay in the original units.
- *Dominance*: q dominates p when, after orientation, q >= p in every objective and q > p in at
  least one. Two identical points do not dominate each other.
- *Front* (non-dominated set): the points no other point dominates. A row with a non-finite value
  (NaN, ±inf; e.g. a failed metric) is never on the front and never dominates another row.
- *Hypervolume*: the volume of the region dominated by the points and bounded by a reference
  point, i.e. the union over points p of the boxes between the reference and p. A point that does
  not strictly improve on the reference in every objective spans an empty box and adds nothing;
  non-finite rows add nothing. The reference used for progress plots is the worst finite value of
  each objective over the trials (`reference_point`). The computation is exact: d == 2 is a
  sort-and-sweep, d >= 3 slices along the last objective and recurses (fine for fronts of up to a
  few hundred points).
- *Scaled objectives* (for picking): over a set of front points, each oriented objective is mapped
  linearly to [0, 1] with 1 the best value on that set; an objective constant over the set maps
  to 1. The *ideal point* is then (1, ..., 1).
- *Pick rules* choose one trial to report: the ``knee`` (the front point nearest the ideal point),
  a ``weights`` rule (the front point with the largest weighted sum of scaled objectives) or a
  ``constraint`` rule (the best trial on the first unconstrained objective among those meeting
  every condition). `parse_pick` reads a rule from its command-line text.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Constraint",
    "PickRule",
    "hypervolume",
    "hypervolume_progress",
    "non_dominated",
    "oriented",
    "parse_pick",
    "pick",
    "reference_point",
]

_OPS: dict[str, Callable[[object, object], object]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_OPS_TEXT = ", ".join(_OPS)
_RULES_TEXT = (
    "accepted: 'knee', 'weights=W1,...,Wd' (one non-negative number per objective, sum > 0) or "
    f"'constraint:METRIC OP NUMBER[,METRIC OP NUMBER...]' (OP one of {_OPS_TEXT})"
)
# Elements compared per vectorised block when testing dominance (bounds the temporary arrays).
_BLOCK_ELEMENTS = 1 << 22
# Relative tolerance under which two pick scores count as a tie (then the lowest index wins).
_TIE_RTOL = 1e-12


# --- arrays and orientation ----------------------------------------------------------------------


def _directions(maximise: Sequence[bool]) -> np.ndarray:
    signs = np.asarray([bool(m) for m in maximise], dtype=bool)
    if signs.size == 0:
        raise ValueError("at least one objective is needed (maximise is empty)")
    return signs


def _as_points(points: np.ndarray, maximise: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The points as a float (n, d) array (a copy) and the directions as a bool (d,) array."""
    signs = _directions(maximise)
    arr = np.array(points, dtype=float, copy=True)
    if arr.size == 0 and arr.ndim <= 2:
        arr = arr.reshape(0, signs.size)
    if arr.ndim != 2 or arr.shape[1] != signs.size:
        raise ValueError(
            f"points must be an (n, {signs.size}) array, one column per objective; "
            f"got shape {arr.shape}"
        )
    return arr, signs


def _as_reference(reference: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """The reference point as an oriented float (d,) array; it must be finite."""
    ref = np.array(reference, dtype=float, copy=True).reshape(-1)
    if ref.shape != signs.shape:
        raise ValueError(
            f"reference must have one value per objective ({signs.size}); got shape {ref.shape}"
        )
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be finite in every objective; got {ref.tolist()}")
    return np.where(signs, ref, -ref)


def oriented(points: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """(n, d) copy with minimised objectives negated, so that larger is better everywhere."""
    arr, signs = _as_points(points, maximise)
    arr[:, ~signs] *= -1.0
    return arr


# --- the front -----------------------------------------------------------------------------------


def _front_mask(values: np.ndarray) -> np.ndarray:
    """Non-dominated mask of finite, oriented (n, d) values (larger is better)."""
    n, d = values.shape
    mask = np.ones(n, dtype=bool)
    if n == 0:
        return mask
    block = max(1, _BLOCK_ELEMENTS // max(1, n * d))
    for start in range(0, n, block):
        rows = values[start : start + block]
        # others[j] vs rows[i]: j dominates i when >= everywhere and > somewhere.
        at_least = np.all(values[None, :, :] >= rows[:, None, :], axis=2)
        better = np.any(values[None, :, :] > rows[:, None, :], axis=2)
        mask[start : start + block] = ~np.any(at_least & better, axis=1)
    return mask


def non_dominated(points: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Boolean mask (n,) of the points no other point dominates.

    q dominates p when q >= p in every objective after orientation and q > p in at least one.
    Exact duplicates do not dominate each other (both stay on the front). Rows with a non-finite
    value are never on the front and never dominate. n == 0 -> an empty mask.
    """
    values = oriented(points, maximise)
    finite = np.all(np.isfinite(values), axis=1)
    mask = np.zeros(values.shape[0], dtype=bool)
    mask[finite] = _front_mask(values[finite])
    return mask


def reference_point(points: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """The worst finite value of each objective over the points, in the original units.

    This is the hypervolume reference used for progress plots (the minimum of a maximised
    objective, the maximum of a minimised one; each column on its own finite values). Raises
    ValueError when an objective has no finite value (including n == 0).
    """
    values = oriented(points, maximise)
    signs = _directions(maximise)
    worst = np.empty(signs.size)
    for j in range(signs.size):
        column = values[:, j]
        column = column[np.isfinite(column)]
        if column.size == 0:
            raise ValueError(f"objective {j} has no finite value; no reference point")
        worst[j] = column.min()
    return np.where(signs, worst, -worst)


# --- hypervolume ---------------------------------------------------------------------------------


def _volume(points: np.ndarray) -> float:
    """Volume dominated by (m, d) points, all coordinates > 0, with the origin as reference."""
    m, d = points.shape
    if m == 0:
        return 0.0
    if d == 1:
        return float(points[:, 0].max())
    if d == 2:
        # Widest first: each point adds the heights it newly reaches, at its own width.
        order = np.lexsort((-points[:, 1], -points[:, 0]))
        width = points[order, 0]
        top = np.maximum.accumulate(points[order, 1])
        rise = np.diff(top, prepend=0.0)
        return float(np.dot(width, rise))
    # Slice along the last objective: between two consecutive distinct levels z_k > z_next the
    # cross-section is the (d-1)-dimensional volume of the points whose last value is >= z_k.
    points = np.unique(points[_front_mask(points)], axis=0)
    points = points[np.argsort(-points[:, -1], kind="stable")]
    levels = points[:, -1]
    total = 0.0
    for k in range(points.shape[0]):
        below = levels[k + 1] if k + 1 < points.shape[0] else 0.0
        if below == levels[k]:
            continue  # the whole tie group enters the slice before its slab is counted
        total += (levels[k] - below) * _volume(points[: k + 1, :-1])
    return total


def _improving(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Mask of oriented rows that are finite and strictly better than ref in every objective."""
    return np.all(np.isfinite(values), axis=1) & np.all(values > ref, axis=1)


def hypervolume(points: np.ndarray, maximise: Sequence[bool], reference: np.ndarray) -> float:
    """Exact volume of the region dominated by the points and bounded by `reference`.

    Points and reference are in the original units. A point that does not strictly improve on
    the reference in every objective adds nothing, nor does a row with a non-finite value.
    d == 1: the best improvement; d == 2: a sort-and-sweep; d >= 3: recursive slicing along the
    last objective (exact, fine for fronts of up to a few hundred points). n == 0 -> 0.0.
    """
    values = oriented(points, maximise)
    ref = _as_reference(reference, _directions(maximise))
    kept = values[_improving(values, ref)] - ref
    return _volume(kept)


def hypervolume_progress(
    points: np.ndarray, maximise: Sequence[bool], reference: np.ndarray
) -> list[float]:
    """Hypervolume of the first k points for k = 1..n (points in trial order).

    Non-finite rows (and rows not strictly better than the reference) contribute nothing. The
    front of the points seen so far is kept, so a trial that adds no volume costs one comparison.
    The list is non-decreasing (a recomputation never reports less than the previous value, even
    by rounding).
    """
    values = oriented(points, maximise)
    ref = _as_reference(reference, _directions(maximise))
    improving = _improving(values, ref)
    front = np.empty((0, values.shape[1]))
    current = 0.0
    progress: list[float] = []
    for row, useful in zip(values, improving, strict=True):
        if useful and not np.any(np.all(front >= row, axis=1)):
            front = np.vstack([front[~np.all(row >= front, axis=1)], row])
            current = max(current, _volume(front - ref))
        progress.append(current)
    return progress


# --- pick rules ----------------------------------------------------------------------------------


def _number_text(value: float) -> str:
    return f"{value:.10g}"


@dataclass(frozen=True)
class Constraint:
    """One condition of a constraint pick rule: ``metric op value`` in the metric's own units."""

    metric: str
    op: str  # one of ">=", "<=", ">", "<"
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"bad operator {self.op!r} (accepted: {_OPS_TEXT})")

    def holds(self, x: float) -> bool:
        """Whether x satisfies the condition (a NaN never does)."""
        return bool(_OPS[self.op](float(x), float(self.value)))

    def holds_all(self, xs: np.ndarray) -> np.ndarray:
        """Element-wise `holds` over an array (NaN -> False)."""
        return np.asarray(_OPS[self.op](np.asarray(xs, dtype=float), float(self.value)), bool)

    def describe(self) -> str:
        """The condition as text, e.g. ``val/latency <= 10``."""
        return f"{self.metric} {self.op} {_number_text(self.value)}"


_KINDS = ("knee", "weights", "constraint")


@dataclass(frozen=True)
class PickRule:
    """How to choose one trial of a Pareto sweep to report (see `pick`)."""

    kind: str  # "knee", "weights" or "constraint"
    weights: tuple[float, ...] = ()
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(
                f"unknown pick rule kind {self.kind!r} (accepted: {', '.join(_KINDS)})"
            )
        if self.kind == "weights" and not self.weights:
            raise ValueError("a weights pick rule needs one weight per objective")
        if self.kind == "constraint" and not self.constraints:
            raise ValueError("a constraint pick rule needs at least one condition")

    def describe(self) -> str:
        """The rule in words, one line."""
        if self.kind == "knee":
            return (
                "knee: the front point nearest the ideal point after scaling each objective "
                "to [0, 1] over the front"
            )
        if self.kind == "weights":
            weights = ", ".join(_number_text(w) for w in self.weights)
            return (
                f"weights ({weights}): the front point with the largest weighted sum of the "
                "objectives scaled to [0, 1] over the front"
            )
        conditions = " and ".join(c.describe() for c in self.constraints)
        return (
            f"constraint ({conditions}): among the trials meeting every condition, the best on "
            "the first objective no condition names (the knee if all are constrained)"
        )


_CONDITION = re.compile(r"^(?P<metric>[^<>=!]*?)\s*(?P<op>[<>=!]+)\s*(?P<number>.*?)\s*$")


def _parse_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"bad number {text!r} in {what}: expected a finite number; {_RULES_TEXT}")
    return value


def _parse_condition(text: str) -> Constraint:
    if not text.strip():
        raise ValueError(f"empty condition in pick constraint; {_RULES_TEXT}")
    match = _CONDITION.match(text.strip())
    if match is None:
        raise ValueError(
            f"condition {text.strip()!r} has no comparison (expected METRIC OP NUMBER); "
            f"{_RULES_TEXT}"
        )
    metric, op, number = match["metric"].strip(), match["op"], match["number"]
    if not metric or any(ch.isspace() for ch in metric):
        raise ValueError(
            f"condition {text.strip()!r} needs one metric name before the operator; {_RULES_TEXT}"
        )
    if op not in _OPS:
        raise ValueError(f"bad operator {op!r} in condition {text.strip()!r}; {_RULES_TEXT}")
    return Constraint(metric, op, _parse_number(number, f"condition {text.strip()!r}"))


def parse_pick(text: str, metrics: Sequence[str]) -> PickRule:
    """A pick rule from its text.

    ``knee`` | ``weights=a,b,...`` (one non-negative number per objective, in `metrics` order,
    sum > 0) | ``constraint:M>=X`` with one or more comma-separated conditions
    ``METRIC OP NUMBER`` (OP one of >=, <=, >, <). Condition metrics are not checked against
    `metrics` here (they may name non-objective metrics); `pick` resolves them. Raises
    ValueError with a one-line message saying what is wrong and what is accepted.
    """
    rule = text.strip()
    if rule == "knee":
        return PickRule("knee")
    if rule.startswith("weights="):
        items = rule[len("weights=") :].split(",")
        weights = tuple(_parse_number(item.strip(), f"pick rule {rule!r}") for item in items)
        if len(weights) != len(metrics):
            raise ValueError(
                f"pick rule {rule!r} has {len(weights)} weight(s) but there are {len(metrics)} "
                f"objectives ({', '.join(metrics)}); give one non-negative weight per objective"
            )
        if any(w < 0 for w in weights):
            raise ValueError(f"pick rule {rule!r} has a negative weight; weights must be >= 0")
        if sum(weights) <= 0:
            raise ValueError(f"pick rule {rule!r}: the weights must not all be zero")
        return PickRule("weights", weights=weights)
    if rule.startswith("constraint:"):
        body = rule[len("constraint:") :]
        if not body.strip():
            raise ValueError(f"pick rule {rule!r} has no condition; {_RULES_TEXT}")
        conditions = tuple(_parse_condition(part) for part in body.split(","))
        return PickRule("constraint", constraints=conditions)
    raise ValueError(f"unknown pick rule {rule!r}; {_RULES_TEXT}")


def _scaled(values: np.ndarray) -> np.ndarray:
    """Oriented (m, d) values scaled per column to [0, 1] over the rows: 1 = best, constant -> 1."""
    low = values.min(axis=0)
    span = values.max(axis=0) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (values - low) / safe, 1.0)


def _first_best(scores: np.ndarray) -> int:
    """Position of the largest score; near-ties (relative 1e-12) go to the lowest position."""
    best = scores.max()
    tol = _TIE_RTOL * max(1.0, abs(float(best)))
    return int(np.flatnonzero(scores >= best - tol)[0])


def _knee(values: np.ndarray, rows: np.ndarray) -> int:
    """The row (of `rows`, ascending indices into values) nearest the ideal point when scaled."""
    distance = np.sqrt(np.sum((1.0 - _scaled(values[rows])) ** 2, axis=1))
    return int(rows[_first_best(-distance)])


def _condition_values(
    condition: Constraint,
    points: np.ndarray,
    metrics: Sequence[str],
    extra: dict[str, np.ndarray] | None,
) -> np.ndarray:
    n = points.shape[0]
    if condition.metric in metrics:
        return points[:, list(metrics).index(condition.metric)]
    if extra is not None and condition.metric in extra:
        column = np.asarray(extra[condition.metric], dtype=float).reshape(-1)
        if column.shape != (n,):
            raise ValueError(
                f"values of {condition.metric!r} have shape {column.shape}; expected ({n},)"
            )
        return column
    known = ", ".join([*metrics, *(extra or {})])
    raise ValueError(
        f"pick condition metric {condition.metric!r} is neither an objective nor another "
        f"recorded metric (known: {known})"
    )


def pick(
    points: np.ndarray,
    maximise: Sequence[bool],
    rule: PickRule,
    metrics: Sequence[str],
    extra: dict[str, np.ndarray] | None = None,
) -> int:
    """Index (into points) of the trial the rule chooses.

    knee: among the non-dominated points, scale each objective to [0, 1] over the front (1 =
    best; an objective constant over the front scales to 1) and choose the point with the
    smallest Euclidean distance to (1, ..., 1); ties -> lowest index.
    weights: among the non-dominated points, the largest weighted sum of those scaled
    objectives; ties -> lowest index.
    constraint: keep the points satisfying every condition (a condition's metric is looked up
    among `metrics`, the columns of points, or else in `extra`, name -> (n,) values; compared
    in original units, NaN never satisfies); among them take the front of that feasible set and
    choose the best on the first objective no condition names (ties -> the knee of the tied
    points, scaled over those points); if every objective is named, the knee of the feasible
    front. Raises ValueError('no trial satisfies ...') when none is feasible, and ValueError
    for a condition metric found nowhere, a weight count that does not match, or no trial
    with finite objectives.
    """
    values = oriented(points, maximise)
    raw = np.asarray(points, dtype=float).reshape(values.shape)
    n, d = values.shape
    if len(metrics) != d:
        raise ValueError(f"{len(metrics)} metric name(s) for {d} objective column(s)")
    if n == 0:
        raise ValueError("no trials to pick from")
    finite = np.all(np.isfinite(values), axis=1)

    if rule.kind in ("knee", "weights"):
        front = np.flatnonzero(non_dominated(points, maximise))
        if front.size == 0:
            raise ValueError("no trial has a finite value for every objective")
        if rule.kind == "knee":
            return _knee(values, front)
        if len(rule.weights) != d:
            raise ValueError(f"{len(rule.weights)} weight(s) for {d} objectives")
        scores = _scaled(values[front]) @ np.asarray(rule.weights, dtype=float)
        return int(front[_first_best(scores)])

    feasible = finite.copy()
    for condition in rule.constraints:
        feasible &= condition.holds_all(_condition_values(condition, raw, metrics, extra))
    candidates = np.flatnonzero(feasible)
    if candidates.size == 0:
        conditions = " and ".join(c.describe() for c in rule.constraints)
        raise ValueError(f"no trial satisfies {conditions} (with finite objective values)")
    front = candidates[_front_mask(values[candidates])]
    named = {c.metric for c in rule.constraints}
    free = [j for j, metric in enumerate(metrics) if metric not in named]
    if not free:
        return _knee(values, front)
    column = values[front, free[0]]
    tied = front[column == column.max()]
    return int(tied[0]) if tied.size == 1 else _knee(values, tied)
