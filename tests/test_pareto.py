"""Pareto helpers (report/pareto.py) against independent brute force: fronts, hypervolume, picks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sedsweep.report.pareto import (
    Constraint,
    PickRule,
    hypervolume,
    hypervolume_progress,
    non_dominated,
    oriented,
    parse_pick,
    pick,
    reference_point,
)

# --- brute-force references ----------------------------------------------------------------------


def brute_front(points: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """O(n^2) double loop, straight from the definition, in the original units."""
    n, d = points.shape
    finite = [bool(np.all(np.isfinite(points[i]))) for i in range(n)]

    def at_least(a: float, b: float, up: bool) -> bool:
        return a >= b if up else a <= b

    def better(a: float, b: float, up: bool) -> bool:
        return a > b if up else a < b

    mask = np.zeros(n, dtype=bool)
    for i in range(n):
        if not finite[i]:
            continue
        dominated = False
        for j in range(n):
            if j == i or not finite[j]:
                continue
            q, p = points[j], points[i]
            if all(at_least(q[k], p[k], maximise[k]) for k in range(d)) and any(
                better(q[k], p[k], maximise[k]) for k in range(d)
            ):
                dominated = True
                break
        mask[i] = not dominated
    return mask


def counted_volume(points: np.ndarray, maximise: list[bool], reference: np.ndarray) -> int:
    """Unit cells (integer grid) covered by the boxes between the reference and each point.

    A cell (centre c) is covered by p when c lies strictly between ref and p in every
    coordinate (on p's better side of ref). Points and reference must be integer-valued.
    """
    d = points.shape[1]
    low = np.minimum(points.min(axis=0), reference)
    high = np.maximum(points.max(axis=0), reference)
    axes = [np.arange(low[k], high[k]) + 0.5 for k in range(d)]
    centres = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    covered = np.zeros(len(centres), dtype=bool)
    for p in points:
        inside = np.ones(len(centres), dtype=bool)
        for k in range(d):
            if maximise[k]:
                inside &= (centres[:, k] > reference[k]) & (centres[:, k] < p[k])
            else:
                inside &= (centres[:, k] < reference[k]) & (centres[:, k] > p[k])
        covered |= inside
    return int(covered.sum())


DIRECTIONS_2 = [[True, True], [False, False], [True, False], [False, True]]
DIRECTIONS_3 = [[True, True, True], [False, False, False], [True, False, True], [False, True, True]]


# --- orientation and the front -------------------------------------------------------------------


def test_oriented_negates_minimised_columns_and_copies():
    pts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = oriented(pts, [True, False, True])
    assert out.tolist() == [[1.0, -2.0, 3.0], [4.0, -5.0, 6.0]]
    out[0, 0] = 99.0
    assert pts[0, 0] == 1.0
    with pytest.raises(ValueError, match="one column per objective"):
        oriented(pts, [True, False])


@pytest.mark.parametrize("maximise", DIRECTIONS_2 + DIRECTIONS_3)
@pytest.mark.parametrize("kind", ["continuous", "integer"])
def test_non_dominated_matches_brute_force(maximise, kind):
    rng = np.random.default_rng([len(maximise), sum(maximise), maximise[0], kind == "integer"])
    d = len(maximise)
    for n in (1, 2, 5, 20, 60):
        if kind == "continuous":
            pts = rng.normal(size=(n, d))
        else:
            pts = rng.integers(0, 4, size=(n, d)).astype(float)  # many ties and duplicates
        assert non_dominated(pts, maximise).tolist() == brute_front(pts, maximise).tolist()


def test_non_dominated_duplicates_and_non_finite_rows():
    pts = np.array(
        [
            [1.0, 1.0],
            [1.0, 1.0],  # exact duplicate: both stay
            [0.0, 0.0],  # dominated
            [np.inf, np.inf],  # would dominate everything, but is non-finite
            [np.nan, 5.0],
            [2.0, 0.5],
        ]
    )
    mask = non_dominated(pts, [True, True])
    assert mask.tolist() == [True, True, False, False, False, True]
    assert mask.tolist() == brute_front(pts, [True, True]).tolist()


def test_non_dominated_empty_and_single():
    assert non_dominated(np.empty((0, 2)), [True, False]).shape == (0,)
    assert non_dominated(np.array([[3.0, 4.0]]), [True, False]).tolist() == [True]


def test_reference_point_is_worst_finite_value_per_objective():
    pts = np.array([[0.8, 12.0], [0.9, 30.0], [np.nan, 50.0], [0.5, np.inf]])
    ref = reference_point(pts, [True, False])
    assert ref.tolist() == [0.5, 50.0]
    with pytest.raises(ValueError, match="no finite value"):
        reference_point(np.array([[np.nan, 1.0]]), [True, True])


# --- hypervolume ---------------------------------------------------------------------------------


def test_hypervolume_hand_worked_2d():
    # Staircase of (1,3), (2,2), (3,1) over the origin: columns of height 3, 2, 1.
    stairs = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(stairs, [True, True], np.array([0.0, 0.0])) == pytest.approx(6.0)
    # 0.5 x 0.5 square plus the strip [0.5, 1] x [0, 0.2].
    pts = np.array([[0.5, 0.5], [1.0, 0.2]])
    assert hypervolume(pts, [True, True], np.zeros(2)) == pytest.approx(0.35)
    # Same picture with y minimised against the reference y = 1: y values mirrored.
    mirrored = np.array([[0.5, 0.5], [1.0, 0.8]])
    assert hypervolume(mirrored, [True, False], np.array([0.0, 1.0])) == pytest.approx(0.35)


def test_hypervolume_hand_worked_3d_and_1d():
    assert hypervolume(np.array([[2.0, 3.0, 4.0]]), [True] * 3, np.zeros(3)) == pytest.approx(24.0)
    two = np.array([[2.0, 2.0, 2.0], [1.0, 1.0, 3.0]])  # cube 8 plus the 1x1x1 above it
    assert hypervolume(two, [True] * 3, np.zeros(3)) == pytest.approx(9.0)
    one_d = np.array([[3.0], [7.0], [5.0]])
    assert hypervolume(one_d, [True], np.array([2.0])) == pytest.approx(5.0)
    assert hypervolume(one_d, [False], np.array([10.0])) == pytest.approx(7.0)


def test_hypervolume_points_not_beating_the_reference_add_nothing():
    ref = np.array([1.0, 1.0])
    assert hypervolume(np.array([[5.0, 1.0], [1.0, 5.0], [0.0, 0.0]]), [True, True], ref) == 0.0
    assert hypervolume(np.empty((0, 2)), [True, True], ref) == 0.0
    pts = np.array([[5.0, 1.0], [2.0, 2.0], [np.nan, 9.0], [np.inf, 9.0]])
    assert hypervolume(pts, [True, True], ref) == pytest.approx(1.0)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_cell_counting(d):
    rng = np.random.default_rng(100 + d)
    box = {2: 9, 3: 7, 4: 5}[d]
    trials = {2: 40, 3: 25, 4: 12}[d]
    for t in range(trials):
        maximise = [bool(b) for b in rng.integers(0, 2, size=d)]
        n = int(rng.integers(1, 12))
        pts = rng.integers(0, box + 1, size=(n, d)).astype(float)
        if t % 3 == 0:  # the corner reference (the worst end of each axis)
            ref = np.array([0.0 if up else float(box) for up in maximise])
        else:  # an interior reference: some points fail to beat it
            ref = rng.integers(0, box + 1, size=d).astype(float)
        expected = counted_volume(pts, maximise, ref)
        assert hypervolume(pts, maximise, ref) == pytest.approx(expected), (pts, maximise, ref)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_ignores_dominated_points_and_order(d):
    rng = np.random.default_rng(7 + d)
    maximise = [True, False, True, False][:d]
    pts = rng.uniform(0, 1, size=(30, d))
    ref = reference_point(pts, maximise)
    base = hypervolume(pts, maximise, ref)
    front = pts[non_dominated(pts, maximise)]
    assert hypervolume(front, maximise, ref) == pytest.approx(base, rel=1e-12)
    # Extra points each dominated by a front point (worse in every objective).
    signs = np.where(maximise, 1.0, -1.0)
    worse = front - signs * rng.uniform(0.0, 0.1, size=front.shape)
    assert hypervolume(np.vstack([pts, worse]), maximise, ref) == pytest.approx(base, rel=1e-12)
    shuffled = pts[rng.permutation(len(pts))]
    assert hypervolume(shuffled, maximise, ref) == pytest.approx(base, rel=1e-12)


def test_hypervolume_orientation_invariance():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(25, 3))
    ref = pts.min(axis=0) - 0.5
    as_max = hypervolume(pts, [True, True, True], ref)
    assert hypervolume(-pts, [False, False, False], -ref) == pytest.approx(as_max, rel=1e-12)
    flipped = pts * np.array([1.0, -1.0, 1.0])
    mixed = hypervolume(flipped, [True, False, True], ref * np.array([1.0, -1.0, 1.0]))
    assert mixed == pytest.approx(as_max, rel=1e-12)
    assert as_max > 0


def test_hypervolume_rejects_bad_reference():
    pts = np.array([[1.0, 2.0]])
    with pytest.raises(ValueError, match="finite"):
        hypervolume(pts, [True, True], np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="one value per objective"):
        hypervolume(pts, [True, True], np.array([0.0]))


@pytest.mark.parametrize(
    "maximise", [[True, False], [False, True, True], [True, False, True, True]]
)
def test_hypervolume_progress_is_monotone_and_ends_at_the_total(maximise):
    rng = np.random.default_rng(len(maximise))
    d = len(maximise)
    pts = rng.uniform(0, 1, size=(60, d))
    pts[5] = np.nan
    pts[17, 0] = np.inf
    ref = reference_point(pts, maximise)
    progress = hypervolume_progress(pts, maximise, ref)
    assert len(progress) == len(pts)
    assert all(b >= a for a, b in itertools.pairwise(progress))
    assert progress[-1] == pytest.approx(hypervolume(pts, maximise, ref), rel=1e-12)
    for k in (1, 6, 18, 40):
        assert progress[k - 1] == pytest.approx(hypervolume(pts[:k], maximise, ref), rel=1e-12)


def test_hypervolume_progress_integer_example():
    pts = np.array([[1.0, 1.0], [np.nan, 3.0], [2.0, 2.0], [1.0, 1.0], [3.0, 1.0]])
    assert hypervolume_progress(pts, [True, True], np.zeros(2)) == pytest.approx(
        [1.0, 1.0, 4.0, 4.0, 5.0]
    )
    assert hypervolume_progress(np.empty((0, 2)), [True, True], np.zeros(2)) == []


# --- picking -------------------------------------------------------------------------------------

# A convex (bulging) front: (0.8, 0.8) is clearly nearest the ideal corner (1, 1).
CONVEX = np.array(
    [
        [0.0, 1.0],
        [0.5, 0.5],  # dominated by (0.8, 0.8)
        [0.8, 0.8],
        [0.95, 0.3],
        [1.0, 0.0],
        [0.3, 0.95],
    ]
)


def test_pick_knee_on_a_convex_front():
    rule = parse_pick("knee", ["val/a", "val/b"])
    assert pick(CONVEX, [True, True], rule, ["val/a", "val/b"]) == 2
    # The same trials with the second objective stored as a cost (1 - b) and minimised.
    costs = CONVEX * np.array([1.0, -1.0]) + np.array([0.0, 1.0])
    assert pick(costs, [True, False], rule, ["val/a", "val/cost"]) == 2


def test_pick_knee_ties_go_to_the_lowest_index():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # front (1,0), (0,1): equally far
    assert pick(pts, [True, True], PickRule("knee"), ["a", "b"]) == 1


def test_pick_weights_one_zero_is_best_of_objective_one_on_the_front():
    metrics = ["val/a", "val/b"]
    assert pick(CONVEX, [True, True], parse_pick("weights=1,0", metrics), metrics) == 4
    assert pick(CONVEX, [True, True], parse_pick("weights=0,1", metrics), metrics) == 0
    rng = np.random.default_rng(11)
    for _ in range(20):
        pts = rng.integers(0, 5, size=(15, 2)).astype(float)
        maximise = [bool(rng.integers(0, 2)), bool(rng.integers(0, 2))]
        chosen = pick(pts, maximise, PickRule("weights", weights=(1.0, 0.0)), metrics)
        front = np.flatnonzero(brute_front(pts, maximise))
        col = pts[front, 0] if maximise[0] else -pts[front, 0]
        assert chosen == front[np.flatnonzero(col == col.max())[0]]


def test_pick_weights_balance_moves_along_the_front():
    metrics = ["val/a", "val/b"]
    # Scaled over the front the values are the raw ones; 0.8a + 0.2b peaks at (0.95, 0.3): 0.82
    # against 0.80 for both (0.8, 0.8) and (1, 0).
    assert pick(CONVEX, [True, True], parse_pick("weights=0.8,0.2", metrics), metrics) == 3
    assert pick(CONVEX, [True, True], parse_pick("weights=1,1", metrics), metrics) == 2


SWEEP_METRICS = ["val/f1", "val/latency"]
SWEEP = np.array(
    [
        [0.90, 40.0],
        [0.85, 12.0],
        [0.70, 5.0],
        [0.80, 9.0],
        [0.60, 3.0],
        [0.78, 9.5],  # dominated by trial 3
    ]
)
SWEEP_MAX = [True, False]


def test_pick_constraint_on_a_minimised_metric():
    rule = parse_pick("constraint:val/latency<=10", SWEEP_METRICS)
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS) == 3  # best f1 among latency <= 10
    rule = parse_pick("constraint:val/latency < 5", SWEEP_METRICS)
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS) == 4


def test_pick_constraint_on_a_maximised_metric_picks_best_of_the_other():
    rule = parse_pick("constraint:val/f1>=0.8", SWEEP_METRICS)
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS) == 3  # lowest latency with f1 >= 0.8
    rule = parse_pick("constraint:val/f1>0.8", SWEEP_METRICS)
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS) == 1


def test_pick_constraint_on_an_extra_metric():
    params = np.array([5e6, 2e6, 1e5, 3e6, 1e5, 1e5])
    rule = parse_pick("constraint:model/params<2.5e6", SWEEP_METRICS)
    extra = {"model/params": params}
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS, extra) == 1  # best f1 among small models
    with pytest.raises(ValueError, match="model/params"):
        pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS)


def test_pick_constraint_all_objectives_named_takes_the_knee_of_the_feasible_front():
    rule = parse_pick("constraint:val/f1>=0.7,val/latency<=12", SWEEP_METRICS)
    # Feasible front: (0.85, 12), (0.70, 5), (0.80, 9); scaled: (1, 0), (0, 1), (2/3, 3/7).
    assert pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS) == 3


def test_pick_constraint_knee_scales_over_the_feasible_front_only():
    metrics = ["a", "b"]
    # D (trial 3) is feasible but dominated by C; were it part of the scaling, a's range would
    # stretch to [-10, 1] and B (trial 1) would become the knee instead of C (trial 2).
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [-10.0, 0.5], [2.0, 2.0]])
    rule = parse_pick("constraint:a<=1.5,b<=1.5", metrics)
    assert pick(pts, [True, True], rule, metrics) == 2
    assert pick(pts[:4], [True, True], PickRule("knee"), metrics) == 2


def test_pick_constraint_ties_on_the_free_objective_go_to_the_knee():
    metrics = ["a", "b", "c"]
    pts = np.array([[1.0, 0.0, 1.0], [1.0, 0.6, 0.6], [1.0, 1.0, 0.0], [0.5, 1.0, 1.0]])
    extra = {"cost": np.array([1.0, 1.0, 1.0, 5.0])}
    rule = parse_pick("constraint:cost<=1", metrics)
    assert pick(pts, [True, True, True], rule, metrics, extra) == 1


def test_pick_constraint_nan_is_never_feasible():
    pts = np.array([[0.9, np.nan], [0.5, 1.0], [0.4, 2.0]])
    rule = parse_pick("constraint:val/latency<=5", SWEEP_METRICS)
    assert pick(pts, SWEEP_MAX, rule, SWEEP_METRICS) == 1
    extra = {"p": np.array([np.nan, 1.0, 1.0])}
    rule = parse_pick("constraint:p<=5", SWEEP_METRICS)
    assert (
        pick(np.array([[0.9, 1.0], [0.5, 1.0], [0.4, 2.0]]), SWEEP_MAX, rule, SWEEP_METRICS, extra)
        == 1
    )


def test_pick_constraint_infeasible():
    rule = parse_pick("constraint:val/f1>=0.95", SWEEP_METRICS)
    with pytest.raises(ValueError, match="no trial satisfies"):
        pick(SWEEP, SWEEP_MAX, rule, SWEEP_METRICS)


def test_pick_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        pick(SWEEP, SWEEP_MAX, PickRule("knee"), ["only-one"])
    with pytest.raises(ValueError):
        pick(SWEEP, SWEEP_MAX, PickRule("weights", weights=(1.0, 0.0, 0.0)), SWEEP_METRICS)
    with pytest.raises(ValueError):
        pick(np.empty((0, 2)), SWEEP_MAX, PickRule("knee"), SWEEP_METRICS)


# --- parsing -------------------------------------------------------------------------------------


def test_parse_pick_accepts_the_three_forms():
    metrics = ["val/f1", "val/latency"]
    assert parse_pick(" knee ", metrics) == PickRule("knee")
    assert parse_pick("weights=0.7, 0.3", metrics) == PickRule("weights", weights=(0.7, 0.3))
    rule = parse_pick("constraint:val/latency <= 10, val/f1>0.5", metrics)
    assert rule.kind == "constraint"
    assert rule.constraints == (
        Constraint("val/latency", "<=", 10.0),
        Constraint("val/f1", ">", 0.5),
    )
    for r in (parse_pick("knee", metrics), parse_pick("weights=1,0", metrics), rule):
        text = r.describe()
        assert text.startswith(r.kind) and "\n" not in text
    assert "val/latency <= 10" in rule.describe()


@pytest.mark.parametrize(
    "text",
    [
        "kneee",
        "",
        "weights",
        "weights=1",
        "weights=1,2,3",
        "weights=1,-1",
        "weights=a,b",
        "weights=0,0",
        "weights=1,nan",
        "weights=1,",
        "constraint:val/x=>1",
        "constraint:",
        "constraint: ",
        "constraint:val/x==1",
        "constraint:val/x!=1",
        "constraint:val/x>=abc",
        "constraint:val/x>=",
        "constraint:val/x 1",
        "constraint:>=1",
        "constraint:val/x>=1,",
        "constraint:val/x>=1,,val/y<2",
        "constraint val/x>=1",
    ],
)
def test_parse_pick_errors(text):
    with pytest.raises(ValueError) as err:
        parse_pick(text, ["val/x", "val/y"])
    assert "\n" not in str(err.value)


def test_constraint_holds():
    assert Constraint("m", ">=", 1.0).holds(1.0)
    assert not Constraint("m", ">", 1.0).holds(1.0)
    assert Constraint("m", "<", 1.0).holds(0.5)
    assert Constraint("m", "<=", 1.0).holds(1.0)
    assert not Constraint("m", "<=", 1.0).holds(float("nan"))
    with pytest.raises(ValueError, match="operator"):
        Constraint("m", "==", 1.0)
