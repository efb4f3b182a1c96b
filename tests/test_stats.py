"""sedsweep.report.stats against independent computations: scipy's tests, hand formulas,
hand-worked examples and Monte-Carlo simulation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from sedsweep.report.stats import (
    ALPHA,
    Comparison,
    compare,
    holm,
    paired_p,
    power,
    replicates_for_power,
    welch_p,
)

SEEDS = [0, 1, 2, 3, 4, 5]


def _welch_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_a, n_b = rng.integers(2, 12, size=2)
    a = rng.normal(0.6, rng.uniform(0.01, 0.1), size=n_a)
    b = rng.normal(0.6 + rng.uniform(-0.05, 0.05), rng.uniform(0.01, 0.1), size=n_b)
    return a, b


def _paired_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 12))
    seed_effect = rng.normal(0.5, 0.1, size=n)  # shared per seed: what pairing removes
    a = seed_effect + rng.normal(0.02, 0.02, size=n)
    b = seed_effect + rng.normal(0.0, 0.02, size=n)
    return a, b


# --- p-values against scipy -----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_welch_p_matches_scipy(seed: int) -> None:
    a, b = _welch_data(seed)
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert welch_p(list(a), list(b)) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert compare(a, b, paired=False).p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
def test_paired_p_matches_scipy(seed: int) -> None:
    a, b = _paired_data(seed)
    expected = stats.ttest_rel(a, b).pvalue
    assert paired_p(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert compare(a, b, paired=True).p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_p_values_symmetric_in_the_order_of_groups() -> None:
    a, b = _welch_data(7)
    assert welch_p(a, b) == pytest.approx(welch_p(b, a))
    a, b = _paired_data(7)
    assert paired_p(a, b) == pytest.approx(paired_p(b, a))


# --- confidence intervals against hand formulas ---------------------------------------------


@pytest.mark.parametrize("confidence", [0.95, 0.9])
@pytest.mark.parametrize("seed", SEEDS)
def test_welch_ci_matches_hand_formula(seed: int, confidence: float) -> None:
    a, b = _welch_data(seed)
    n_a, n_b = len(a), len(b)
    va, vb = a.var(ddof=1), b.var(ddof=1)
    se = math.sqrt(va / n_a + vb / n_b)
    df = (va / n_a + vb / n_b) ** 2 / (
        (va / n_a) ** 2 / (n_a - 1) + (vb / n_b) ** 2 / (n_b - 1)
    )  # Welch–Satterthwaite
    diff = a.mean() - b.mean()
    half = stats.t.ppf(1 - (1 - confidence) / 2, df) * se

    c = compare(a, b, paired=False, confidence=confidence)
    assert isinstance(c, Comparison)
    assert (c.test, c.n_a, c.n_b, c.paired, c.wilcoxon_p) == ("Welch t", n_a, n_b, False, None)
    assert c.diff == pytest.approx(diff, rel=1e-12, abs=1e-15)
    assert c.ci_low == pytest.approx(diff - half, rel=1e-9)
    assert c.ci_high == pytest.approx(diff + half, rel=1e-9)
    assert c.sd == pytest.approx(math.sqrt((va + vb) / 2), rel=1e-12)
    # and scipy's own interval of the Welch test
    scipy_ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    assert (c.ci_low, c.ci_high) == pytest.approx((scipy_ci.low, scipy_ci.high), rel=1e-9)


@pytest.mark.parametrize("confidence", [0.95, 0.99])
@pytest.mark.parametrize("seed", SEEDS)
def test_paired_ci_is_the_one_sample_ci_of_the_differences(seed: int, confidence: float) -> None:
    a, b = _paired_data(seed)
    d = a - b
    n = len(d)
    half = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)

    c = compare(a, b, paired=True, confidence=confidence)
    assert (c.test, c.n_a, c.n_b, c.paired) == ("paired t", n, n, True)
    assert c.diff == pytest.approx(d.mean(), rel=1e-12, abs=1e-15)
    assert c.diff == pytest.approx(a.mean() - b.mean(), rel=1e-9, abs=1e-15)
    assert c.ci_low == pytest.approx(d.mean() - half, rel=1e-9)
    assert c.ci_high == pytest.approx(d.mean() + half, rel=1e-9)
    assert c.sd == pytest.approx(d.std(ddof=1), rel=1e-12)
    one_sample = stats.ttest_1samp(d, 0.0)
    ci = one_sample.confidence_interval(confidence)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.p_value == pytest.approx(one_sample.pvalue, rel=1e-9, abs=1e-15)


def test_ci_contains_zero_exactly_when_p_is_above_alpha() -> None:
    for seed in range(30):
        for paired, (a, b) in ((False, _welch_data(seed)), (True, _paired_data(seed))):
            c = compare(a, b, paired=paired)
            assert (c.ci_low <= 0 <= c.ci_high) == (c.p_value >= ALPHA)


# --- Wilcoxon -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_wilcoxon_matches_scipy(seed: int) -> None:
    a, b = _paired_data(seed)
    assert compare(a, b, paired=True).wilcoxon_p == pytest.approx(stats.wilcoxon(a - b).pvalue)


def test_wilcoxon_hand_worked() -> None:
    # five positive differences: exact two-sided p = 2 * P(T- = 0) = 2 / 2**5
    assert compare([2, 3, 4, 5, 6], [1, 1, 1, 1, 1], paired=True).wilcoxon_p == pytest.approx(
        0.0625
    )
    # zero differences are dropped (zero_method 'wilcox'): three positive left, p = 2 / 2**3
    c = compare([1, 1, 2, 3, 4], [1, 1, 1, 1, 1], paired=True)
    assert c.wilcoxon_p == pytest.approx(0.25)


def test_wilcoxon_only_when_paired_and_not_all_zero() -> None:
    a, b = _paired_data(0)
    assert compare(a, b, paired=False).wilcoxon_p is None
    assert compare([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], paired=True).wilcoxon_p is None


# --- Holm -----------------------------------------------------------------------------------


def test_holm_hand_worked() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_none_entries_do_not_count() -> None:
    adjusted = holm([None, 0.01, None, 0.04, 0.03, 0.005, None])
    assert adjusted[0] is None and adjusted[2] is None and adjusted[6] is None
    assert [adjusted[i] for i in (1, 3, 4, 5)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, None]) == [None, None]
    assert holm([]) == []
    assert holm([0.02]) == [0.02]


def test_holm_caps_at_one_and_is_monotone() -> None:
    assert holm([0.3, 0.6, 0.9]) == pytest.approx([0.9, 1.0, 1.0])
    rng = np.random.default_rng(3)
    p = list(rng.uniform(0, 0.3, size=20))
    adjusted = holm(p)
    order = np.argsort(p)
    ranked = [adjusted[i] for i in order]
    assert ranked == sorted(ranked)
    assert all(q <= 1.0 and q >= raw for q, raw in zip(adjusted, p, strict=True))


def test_holm_ties() -> None:
    assert holm([0.01, 0.01, 0.5]) == pytest.approx([0.03, 0.03, 0.5])


def test_holm_rejects_invalid_p() -> None:
    with pytest.raises(ValueError):
        holm([0.1, 1.5])
    with pytest.raises(ValueError):
        holm([float("nan")])


# --- power against simulation ---------------------------------------------------------------

N_SIM = 20_000
MC_TOL = 0.015


def _simulated_power(effect: float, sd: float, n: int, *, paired: bool, seed: int) -> float:
    """Rejection rate of scipy's t-test over N_SIM simulated datasets."""
    rng = np.random.default_rng(seed)
    if paired:
        d = rng.normal(effect, sd, size=(N_SIM, n))
        p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
    else:
        a = rng.normal(effect, sd, size=(N_SIM, n))
        b = rng.normal(0.0, sd, size=(N_SIM, n))
        p = stats.ttest_ind(a, b, axis=1).pvalue  # equal-variance t: what power() models
    return float(np.mean(p < ALPHA))


@pytest.mark.parametrize(
    ("effect", "sd", "n", "paired"),
    [
        (0.5, 1.0, 10, True),
        (0.02, 0.015, 4, True),
        (-0.8, 1.0, 6, True),
        (1.0, 1.0, 10, False),
        (0.03, 0.05, 25, False),
        (-0.5, 1.0, 5, False),
    ],
)
def test_power_matches_simulation(effect: float, sd: float, n: int, paired: bool) -> None:
    expected = _simulated_power(effect, sd, n, paired=paired, seed=n * 7 + paired)
    assert power(effect, sd, n, paired=paired) == pytest.approx(expected, abs=MC_TOL)


def test_power_at_zero_effect_is_alpha() -> None:
    for paired in (True, False):
        assert power(0.0, 1.0, 8, paired=paired) == pytest.approx(ALPHA, abs=1e-9)
        assert power(0.0, 1.0, 8, paired=paired, alpha=0.1) == pytest.approx(0.1, abs=1e-9)


def test_power_degenerate() -> None:
    assert power(1.0, 1.0, 1, paired=True) == 0.0
    assert power(1.0, 1.0, 0, paired=False) == 0.0
    assert power(0.1, 0.0, 3, paired=True) == 1.0
    assert power(0.0, 0.0, 3, paired=False) == ALPHA
    with pytest.raises(ValueError):
        power(1.0, -1.0, 5, paired=True)
    with pytest.raises(ValueError):
        power(1.0, float("nan"), 5, paired=True)


def test_power_grows_with_n_and_effect() -> None:
    for paired in (True, False):
        by_n = [power(0.5, 1.0, n, paired=paired) for n in range(2, 40)]
        assert by_n == sorted(by_n)
        by_effect = [power(e, 1.0, 10, paired=paired) for e in (0.1, 0.3, 0.6, 1.0)]
        assert by_effect == sorted(by_effect)


# --- replicates_for_power -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "sd", "paired"),
    [(1.0, 1.0, False), (1.0, 1.0, True), (0.5, 1.0, False), (0.01, 0.02, True), (3, 1, True)],
)
def test_replicates_is_the_smallest_n_reaching_the_target(
    effect: float, sd: float, paired: bool
) -> None:
    for target in (0.8, 0.9):
        n = replicates_for_power(effect, sd, paired=paired, target=target)
        assert n is not None and n >= 2
        assert power(effect, sd, n, paired=paired) >= target
        if n > 2:
            assert power(effect, sd, n - 1, paired=paired) < target


@pytest.mark.parametrize(("paired", "textbook_n"), [(False, 17), (True, 10)])
def test_replicates_textbook_values(paired: bool, textbook_n: int) -> None:
    # Cohen's d = 1, alpha 0.05 two-sided, 80% power: 17 per group (two-sample), 10 pairs
    assert replicates_for_power(1.0, 1.0, paired=paired) == textbook_n
    assert replicates_for_power(0.05, 0.05, paired=paired) == textbook_n  # only d matters
    # and by simulation: n reaches 80% and n - 1 does not
    at_n = _simulated_power(1.0, 1.0, textbook_n, paired=paired, seed=11)
    below = _simulated_power(1.0, 1.0, textbook_n - 1, paired=paired, seed=12)
    assert at_n == pytest.approx(power(1.0, 1.0, textbook_n, paired=paired), abs=MC_TOL)
    assert below == pytest.approx(power(1.0, 1.0, textbook_n - 1, paired=paired), abs=MC_TOL)
    assert below < 0.8


def test_replicates_classic_half_sd_value() -> None:
    assert replicates_for_power(0.5, 1.0, paired=False) == 64  # the well-known 64 per group


def test_replicates_none_cases() -> None:
    assert replicates_for_power(0.0, 1.0, paired=True) is None
    assert replicates_for_power(0.1, None, paired=True) is None
    assert replicates_for_power(0.1, float("nan"), paired=False) is None
    assert replicates_for_power(0.1, float("inf"), paired=False) is None
    assert replicates_for_power(0.001, 1.0, paired=True) is None  # needs ~7.8 million pairs
    assert replicates_for_power(0.5, 1.0, paired=False, max_n=63) is None
    assert replicates_for_power(0.5, 1.0, paired=False, max_n=64) == 64


def test_replicates_zero_sd_and_huge_effect() -> None:
    assert replicates_for_power(0.1, 0.0, paired=True) == 2
    assert replicates_for_power(50.0, 1.0, paired=False) == 2


# --- degenerate comparisons -----------------------------------------------------------------


def test_fewer_than_two_values() -> None:
    assert welch_p([0.5], [0.4, 0.6]) is None
    assert welch_p([], []) is None
    assert paired_p([0.5], [0.4]) is None
    c = compare([0.5], [0.4, 0.6], paired=False)
    assert c.diff == pytest.approx(0.0)
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)
    assert c.p_value is None and c.sd is None
    c = compare([0.5], [0.4], paired=True)
    assert c.diff == pytest.approx(0.1)
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)
    assert c.p_value is None and c.sd is None
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon([0.1]).pvalue)
    c = compare([], [], paired=True)
    assert (c.n_a, c.p_value, c.wilcoxon_p, c.sd) == (0, None, None, None)
    assert math.isnan(c.diff)


def test_zero_variance_welch() -> None:
    # 0.1 three times: np.var need not be exactly 0 in floating point
    assert welch_p([0.1, 0.1, 0.1], [0.1, 0.1]) == 1.0
    assert welch_p([0.7, 0.7], [0.5, 0.5, 0.5]) == 0.0
    c = compare([0.7, 0.7], [0.5, 0.5, 0.5], paired=False)
    assert (c.ci_low, c.ci_high) == (c.diff, c.diff)
    assert c.diff == pytest.approx(0.2)
    assert (c.p_value, c.sd) == (0.0, 0.0)
    c = compare([0.1, 0.1, 0.1], [0.1, 0.1], paired=False)
    assert (c.diff, c.ci_low, c.ci_high, c.p_value, c.sd) == (0.0, 0.0, 0.0, 1.0, 0.0)


def test_zero_variance_on_one_side_is_an_ordinary_welch_test() -> None:
    a, b = [0.5, 0.5, 0.5], [0.4, 0.45, 0.52, 0.41]
    with warnings.catch_warnings():  # scipy warns about the constant sample
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ttest_ind(a, b, equal_var=False)
    assert welch_p(a, b) == pytest.approx(expected.pvalue)
    c = compare(a, b, paired=False)
    ci = expected.confidence_interval()
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))


def test_all_zero_paired_differences() -> None:
    a = [0.31, 0.42, 0.55, 0.6]
    assert paired_p(a, a) == 1.0
    c = compare(a, a, paired=True)
    assert (c.diff, c.ci_low, c.ci_high, c.p_value, c.wilcoxon_p, c.sd) == (
        0.0,
        0.0,
        0.0,
        1.0,
        None,
        0.0,
    )


def test_constant_nonzero_paired_differences() -> None:
    a, b = [0.5, 0.75, 1.0], [0.25, 0.5, 0.75]  # every difference exactly 0.25
    assert paired_p(a, b) == 0.0
    c = compare(a, b, paired=True)
    assert (c.diff, c.ci_low, c.ci_high, c.p_value, c.sd) == (0.25, 0.25, 0.25, 0.0, 0.0)
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon([0.25, 0.25, 0.25]).pvalue)


def test_equal_differences_up_to_rounding() -> None:
    # 0.6 - 0.35 is not exactly 0.25: scipy's t-test gives p ~ 1e-32 with a precision warning
    a, b = [0.5, 0.6, 0.7], [0.25, 0.35, 0.45]
    assert len(set(np.subtract(a, b))) > 1
    assert paired_p(a, b) == 0.0
    c = compare(a, b, paired=True)
    assert (c.ci_low, c.ci_high, c.sd) == (c.diff, c.diff, 0.0)
    assert c.diff == pytest.approx(0.25)
    # (0.1 + 0.2) - 0.3 is 5.6e-17, not 0: still no difference
    a, b = [0.1 + 0.2, 0.5, 0.7], [0.3, 0.5, 0.7]
    assert a[0] != b[0]
    assert paired_p(a, b) == 1.0
    c = compare(a, b, paired=True)
    assert (c.p_value, c.wilcoxon_p, c.sd) == (1.0, None, 0.0)
    # rounding noise within each group of a Welch comparison
    assert welch_p([0.1 + 0.2, 0.3, 0.3], [0.5, 0.5]) == 0.0
    assert welch_p([0.1 + 0.2, 0.3, 0.3], [0.3, 0.3]) == 1.0
    # but a real spread of 1e-9 is an ordinary test
    a, b = [0.3, 0.3 + 1e-9, 0.3 - 1e-9], [0.3, 0.3 + 2e-9]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        compare([1.0, 2.0], [1.0], paired=True)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_p([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        welch_p([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        compare([1.0, 2.0], [1.0, 3.0], paired=False, confidence=95)


def test_pair_up_matches_by_key_or_refuses() -> None:
    from sedsweep.report.stats import pair_up

    a = [(("s", 2), 0.3), (("s", 0), 0.1), (("s", 1), 0.2)]
    b = [(("s", 1), 0.25), (("s", 0), 0.15), (("s", 2), 0.35)]
    assert pair_up(a, b) == ([0.1, 0.2, 0.3], [0.15, 0.25, 0.35])
    assert pair_up(a, b[:2]) is None  # a seed missing on one side
    assert pair_up(a, [*b[:2], (("s", 0), 0.4)]) is None  # a seed twice
    assert pair_up(a[:1], b[:1]) is None  # one pair is no paired design
