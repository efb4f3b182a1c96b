"""Statistics for comparing two groups of replicate values.

The groups are typically the test-metric values of two table cells over seeds. `compare` gives
the mean difference with a t-based confidence interval and a two-sided p-value:

* paired (``paired=True``, value ``i`` of one group belongs with value ``i`` of the other, e.g.
  the same seed): a one-sample t-test on the differences ``a[i] - b[i]``, plus the Wilcoxon
  signed-rank p-value as a distribution-free check;
* unpaired: Welch's t-test (no equal-variance assumption), with the Welch–Satterthwaite degrees
  of freedom for both the p-value and the interval.

Degenerate inputs do not raise: with fewer than two values on a side (or fewer than two pairs)
the p-value is None and the interval (nan, nan); with zero variance the interval collapses to
the difference itself and the p-value is 1 (no difference) or 0 (a difference). "Zero" here
allows for floating-point rounding: a spread (max - min) of at most 1e-12 times the largest
|value| counts as none, so 0.6 - 0.35 and 0.5 - 0.25 are equal differences, and
(0.1 + 0.2) - 0.3 is a zero one. Non-finite values raise ValueError.

`holm` adjusts a family of p-values for multiple comparisons (Holm–Bonferroni step-down).
`power` and `replicates_for_power` answer "how many seeds would detect a difference of this
size", with the exact power of the two-sided t-test from the noncentral t distribution. The
two-sample power is that of the equal-variance t-test with ``n`` per group (the textbook
planning formula; Welch's test has nearly the same power when the groups are equal in size
and spread).

scipy is imported inside the functions because importing it is slow.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """The comparison of two groups of values ``a`` and ``b`` (see `compare`)."""

    test: str  # "paired t" or "Welch t"
    n_a: int
    n_b: int
    paired: bool
    diff: float  # mean(a) - mean(b); paired: mean of a[i] - b[i] (the same number)
    ci_low: float  # two-sided confidence interval of diff; nan when not computable
    ci_high: float
    p_value: float | None  # two-sided p of `test`; None when not computable
    wilcoxon_p: float | None  # paired: Wilcoxon signed-rank p; None unpaired or all differences 0
    sd: float | None  # paired: sd of the differences; Welch: sqrt((s_a^2 + s_b^2) / 2)


def _values(x: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values: {arr.tolist()}")
    return arr


# Spread (max - min) at or below this fraction of the largest |value| is floating-point rounding,
# not variation: 0.6 - 0.35 and 0.5 - 0.25 differ in the last bit, yet are "equal differences".
_ROUNDING = 1e-12


def _scale(*arrays: np.ndarray) -> float:
    return max((float(np.max(np.abs(x))) for x in arrays if len(x)), default=0.0)


def _constant(x: np.ndarray, scale: float) -> bool:
    """No spread beyond rounding; np.var of equal values need not be exactly 0."""
    return float(np.ptp(x)) <= _ROUNDING * scale or float(np.var(x)) == 0.0


def _zero(scale: float) -> float:
    """Differences of values of this scale this close to 0 are 0 up to rounding."""
    return max(1e-15, _ROUNDING * scale)


def _mean(x: np.ndarray) -> float:
    """Mean, exact when all values are equal (np.mean of [0.1] * 3 is not 0.1)."""
    return float(x[0]) if np.all(x == x[0]) else float(np.mean(x))


def _two_sided_p(t: float, df: float) -> float:
    # Student's t CDF from scipy.special (what scipy.stats.t.sf evaluates): the tables a
    # sweep writes at its end need only this, and scipy.stats takes ~1 s more to import
    from scipy.special import stdtr

    return float(min(1.0, 2.0 * stdtr(df, -abs(t))))


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Standard error of mean(a) - mean(b) and the Welch–Satterthwaite df (n >= 2 each)."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se2 = va + vb
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(math.sqrt(se2)), float(df)


def _paired_diffs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, float]:
    """The differences a[i] - b[i] and the scale of the values they come from."""
    xa, xb = _values(a, "a"), _values(b, "b")
    if len(xa) != len(xb):
        raise ValueError(f"paired comparison needs equal lengths, got {len(xa)} and {len(xb)}")
    return xa - xb, _scale(xa, xb)


def pair_up(
    a: Sequence[tuple[Hashable, float]], b: Sequence[tuple[Hashable, float]]
) -> tuple[list[float], list[float]] | None:
    """Two groups' values as pairs: (replicate key, value) on each side, matched by key when
    every key occurs once per side and both sides hold the same keys (at least two); else None
    (the groups are then independent samples)."""
    da, db = dict(a), dict(b)
    if len(da) != len(a) or len(db) != len(b) or da.keys() != db.keys() or len(da) < 2:
        return None
    order = sorted(da, key=str)
    return [da[k] for k in order], [db[k] for k in order]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of mean(a) == mean(b).

    None when either side has fewer than two values. When both sides have zero variance (up to
    rounding, see the module docstring) the test is undefined; the p-value is then 1.0 if the
    means are equal (`math.isclose`) and 0.0 otherwise.
    """
    xa, xb = _values(a, "a"), _values(b, "b")
    if len(xa) < 2 or len(xb) < 2:
        return None
    mean_a, mean_b = _mean(xa), _mean(xb)
    if _constant(xa, _scale(xa)) and _constant(xb, _scale(xb)):
        return 1.0 if math.isclose(mean_a, mean_b) else 0.0
    se, df = _welch_parts(xa, xb)
    return _two_sided_p((mean_a - mean_b) / se, df)


def _paired_p(d: np.ndarray, scale: float) -> float | None:
    if len(d) < 2:
        return None
    if _constant(d, scale):
        return 1.0 if math.isclose(_mean(d), 0.0, abs_tol=_zero(scale)) else 0.0
    se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
    return _two_sided_p(float(np.mean(d)) / se, len(d) - 1)


def paired_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test (``a[i]`` pairs with ``b[i]``).

    None with fewer than two pairs; ValueError when the lengths differ. When all differences
    are equal (up to rounding, see the module docstring) the test is undefined; the p-value is
    then 1.0 if they are 0 (`math.isclose` with abs_tol 1e-15, or 1e-12 times the largest
    |value| when that is more) and 0.0 otherwise.
    """
    return _paired_p(*_paired_diffs(a, b))


def _check_level(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def compare(
    a: Sequence[float], b: Sequence[float], *, paired: bool, confidence: float = 0.95
) -> Comparison:
    """Compare the values ``a`` with the values ``b``: difference of means, CI, p-values.

    ``paired=True`` runs the paired t-test (and Wilcoxon signed-rank) on ``a[i] - b[i]`` and
    requires ``len(a) == len(b)`` (ValueError otherwise); ``paired=False`` runs Welch's t-test.
    The interval is the two-sided ``confidence`` t interval of the difference (Welch: with the
    Welch–Satterthwaite df). The Wilcoxon signed-rank test (scipy's default, zeros dropped)
    treats differences within rounding of 0 as 0. Degenerate cases: zero variance (up to
    rounding) gives the interval [diff, diff] and sd 0; fewer than two values on a side (or
    pairs) gives the interval (nan, nan), p_value None and sd None. Non-finite values raise
    ValueError.
    """
    from scipy import stats

    _check_level(confidence, "confidence")
    nan = float("nan")
    q = 0.5 + confidence / 2.0
    if paired:
        d, scale = _paired_diffs(a, b)
        n = n_a = n_b = len(d)
        diff = _mean(d) if n else nan
        nonzero = np.where(np.abs(d) <= _zero(scale), 0.0, d)  # rounding noise is 0
        wilcoxon_p = float(stats.wilcoxon(nonzero).pvalue) if np.any(nonzero != 0) else None
        p_value = _paired_p(d, scale)
        if n < 2:
            sd, half = None, nan
        elif _constant(d, scale):
            sd, half = 0.0, 0.0
        else:
            sd = float(np.std(d, ddof=1))
            half = float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n)
    else:
        xa, xb = _values(a, "a"), _values(b, "b")
        n_a, n_b = len(xa), len(xb)
        diff = _mean(xa) - _mean(xb) if n_a and n_b else nan
        wilcoxon_p = None
        p_value = welch_p(xa, xb)
        if n_a < 2 or n_b < 2:
            sd, half = None, nan
        elif _constant(xa, _scale(xa)) and _constant(xb, _scale(xb)):
            sd, half = 0.0, 0.0
        else:
            sd = math.sqrt((float(np.var(xa, ddof=1)) + float(np.var(xb, ddof=1))) / 2.0)
            se, df = _welch_parts(xa, xb)
            half = float(stats.t.ppf(q, df)) * se
    return Comparison(
        test="paired t" if paired else "Welch t",
        n_a=n_a,
        n_b=n_b,
        paired=paired,
        diff=diff,
        ci_low=diff - half,
        ci_high=diff + half,
        p_value=p_value,
        wilcoxon_p=wilcoxon_p,
        sd=sd,
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    The k-th smallest of the m p-values is multiplied by m - k + 1, the results are made
    non-decreasing in that order (step-down) and capped at 1. None entries stay None and do
    not count in the family size m. A p-value outside [0, 1] (or nan) raises ValueError.
    """
    present = [(i, p) for i, p in enumerate(p_values) if p is not None]
    for _, p in present:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for k, (i, p) in enumerate(sorted(present, key=lambda item: item[1])):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


def power(effect: float, sd: float, n: int, *, paired: bool, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at level ``alpha`` to detect a true mean difference.

    ``effect`` is the true difference of means and ``sd`` the standard deviation: of the
    differences when ``paired`` (one-sample t on n differences, df = n - 1, noncentrality
    effect / (sd / sqrt(n))), else of each group (two groups of n each, df = 2n - 2,
    noncentrality effect / (sd * sqrt(2 / n))). The power is P(T > t_crit) + P(T < -t_crit)
    for T noncentral t. n < 2 gives 0.0; sd == 0 gives 1.0 if effect != 0 else alpha.
    """
    from scipy import stats

    _check_level(alpha, "alpha")
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        raise ValueError(f"effect and sd must be finite and sd >= 0, got {effect}, {sd}")
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    if paired:
        df, nc = n - 1, effect / (sd / math.sqrt(n))
    else:
        df, nc = 2 * n - 2, effect / (sd * math.sqrt(2.0 / n))
    t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    upper = float(stats.nct.sf(t_crit, df, nc))
    lower = float(stats.nct.cdf(-t_crit, df, nc))
    return min(1.0, upper + lower)


def replicates_for_power(
    effect: float,
    sd: float | None,
    *,
    paired: bool,
    alpha: float = ALPHA,
    target: float = 0.8,
    max_n: int = 10_000,
) -> int | None:
    """Smallest n >= 2 (pairs, or replicates per group) whose `power` reaches ``target``.

    None when effect == 0, sd is None or not finite, or even ``max_n`` is not enough. The
    search doubles n and then bisects, relying on power increasing with n.
    """
    _check_level(target, "target")
    if sd is None or not math.isfinite(sd) or not math.isfinite(effect) or effect == 0:
        return None
    if max_n < 2:
        return None

    def enough(n: int) -> bool:
        return power(effect, sd, n, paired=paired, alpha=alpha) >= target

    if enough(2):
        return 2
    low, high = 2, 4  # power(low) < target; look for a high with power(high) >= target
    while not enough(min(high, max_n)):
        if high >= max_n:
            return None
        low, high = high, high * 2
    high = min(high, max_n)
    while high - low > 1:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid
    return high


# -- one-sided questions about a difference (claims) ------------------------------------------
@dataclass(frozen=True)
class Shift:
    """mean(a) − mean(b) with its standard error and degrees of freedom: paired (one-sample t
    on a[i] − b[i], df = n − 1) or Welch (Welch–Satterthwaite df). `se` is 0 when there is no
    spread (up to rounding); `diffs` holds the paired differences (empty for Welch)."""

    diff: float
    se: float
    df: float
    paired: bool
    diffs: tuple[float, ...] = ()

    def p_greater(self, delta: float = 0.0) -> float:
        """One-sided p of the t-test of H0: true difference ≤ `delta` against > `delta`
        (with no spread: 0 when the difference exceeds `delta`, else 1)."""
        from scipy import stats

        if self.se == 0:
            return 0.0 if self.diff > delta else 1.0
        return float(stats.t.sf((self.diff - delta) / self.se, self.df))

    def p_less(self, delta: float = 0.0) -> float:
        """One-sided p of H0: true difference ≥ `delta` against < `delta`."""
        return Shift(-self.diff, self.se, self.df, self.paired).p_greater(-delta)

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided `confidence` t interval of the difference."""
        from scipy import stats

        _check_level(confidence, "confidence")
        half = 0.0 if self.se == 0 else float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.diff - half, self.diff + half

    def tost(self, margin: float) -> float:
        """Two one-sided tests of equivalence within ±`margin`: the larger of the p-values of
        H0: difference ≤ −margin and H0: difference ≥ +margin (Schuirmann 1987)."""
        return max(self.p_greater(-margin), self.p_less(margin))


def shift(a: Sequence[float], b: Sequence[float], *, paired: bool) -> Shift | None:
    """The `Shift` of `a` over `b`; None with fewer than two values (or pairs) on a side."""
    if paired:
        d, scale = _paired_diffs(a, b)
        if len(d) < 2:
            return None
        mean = _mean(d)
        if _constant(d, scale):  # equal differences: no spread; within rounding of 0 is 0
            zero = math.isclose(mean, 0.0, abs_tol=_zero(scale))
            return Shift(0.0 if zero else mean, 0.0, len(d) - 1, True, tuple(map(float, d)))
        se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
        return Shift(mean, se, len(d) - 1, True, tuple(map(float, d)))
    xa, xb = _values(a, "a"), _values(b, "b")
    if len(xa) < 2 or len(xb) < 2:
        return None
    diff = _mean(xa) - _mean(xb)
    if _constant(xa, _scale(xa)) and _constant(xb, _scale(xb)):
        equal = math.isclose(_mean(xa), _mean(xb))  # welch_p's rule for two constant sides
        return Shift(0.0 if equal else diff, 0.0, len(xa) + len(xb) - 2, False)
    se, df = _welch_parts(xa, xb)
    return Shift(diff, se, df, False)


def superiority(a: Sequence[float], b: Sequence[float], *, paired: bool) -> float:
    """P(a > b), ties counting half: over the pairs (paired), else over every (a_i, b_j)
    (the Mann–Whitney U statistic divided by n_a·n_b)."""
    xa, xb = _values(a, "a"), _values(b, "b")
    if paired:
        d = xa - xb
        return float((np.sum(d > 0) + 0.5 * np.sum(d == 0)) / len(d))
    gt = (xa[:, None] > xb[None, :]).sum() + 0.5 * (xa[:, None] == xb[None, :]).sum()
    return float(gt / (len(xa) * len(xb)))


def wilcoxon_greater(diffs: Sequence[float]) -> float | None:
    """One-sided p of the Wilcoxon signed-rank test that the differences are shifted above 0
    (zeros dropped); None when every difference is 0."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if len(d) == 0:
        return None
    return float(stats.wilcoxon(d, alternative="greater").pvalue)


def smallest_signed_rank_p(n: int) -> float:
    """The smallest one-sided p the exact Wilcoxon signed-rank test can give with n nonzero
    differences: all of them positive, 1 / 2^n (0.031 for n = 5)."""
    return 0.5**n
