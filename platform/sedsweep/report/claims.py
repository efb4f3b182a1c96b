"""Claim checks: does the sweep reproduce what a paper asserts?

A search-space file's `claims:` (see `sweep.spec.Claim`) say that cell `a` beats cell `b` (or
each other cell) on a metric. For each comparison the trials of both sides that trained
(`sedsweep.validity`) are collected; when every trial of one side has exactly one partner on
the other with the same values of all other varying keys (shared seeds: a paired design) the
difference is tested on the pairs, otherwise as independent samples (Welch). Values are
oriented so that a positive effect is what the paper claims.

A claim is answered in four columns, never in one word:

1. *validity*: each side needs at least `MIN_VALID` trained trials, else NOT TESTED with the
   reason (and no statistic at all: nothing is measured on arms that did not learn);
2. *direction*: a one-sided t-test in the claimed direction and one in the other, Holm-
   corrected across every tested comparison of the file (both directions in one family):
   REPLICATED (the claimed direction at corrected p < α), REVERSED (the other one), or NOT
   DETECTED; P(a > b) over the seeds beside it. The one-sided Wilcoxon signed-rank p is shown
   only when the number of pairs lets it reach α/m at all (five pairs cannot go below 1/32);
3. *magnitude*: our effect with a simultaneous (Bonferroni, 1 − α/m) interval, consistent
   with the Holm correction (an interval that excludes 0 is Holm-significant); as a fraction of
   the paper's effect (`min_effect`) with that interval, and as a share of the headroom
   between the metric's chance level and a perfect score. SUSPECT when our effect is more
   than `SUSPECT_RATIO` times the paper's: an effect that large says more about an arm than
   about the method;
4. *equivalence*: when the claim declares `equivalence_margin`, two one-sided tests (TOST):
   EQUIVALENT when the difference lies within ±margin at p < α, else NOT SHOWN.

Each comparison also gives the replicates needed for 80 % power to detect the paper's effect
(`min_effect`, else the observed one) at the observed standard deviation (two-sided t).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from sedsweep.config import flatten
from sedsweep.errors import UserError, unknown_name
from sedsweep.metrics import lower_is_better
from sedsweep.report.design import hashable
from sedsweep.report.runs import COMPLETED, SweepRuns, TrialRun, md_text, short_name
from sedsweep.report.stats import (
    ALPHA,
    Shift,
    holm,
    pair_up,
    replicates_for_power,
    shift,
    smallest_signed_rank_p,
    superiority,
    wilcoxon_greater,
)
from sedsweep.sweep.spec import Claim, same_value
from sedsweep.tracking import CLAIMS_CSV, CLAIMS_MD
from sedsweep.validity import CHANCE_PREFIX

FORMATS = ("md", "csv", "json", "html")
POWER = 0.8
MIN_VALID = 2  # trained trials a side needs before anything is measured on it
SUSPECT_RATIO = 5.0  # our effect above this many times the paper's is marked SUSPECT
TESTED, NOT_TESTED = "TESTED", "NOT TESTED"
REPLICATED, REVERSED, NOT_DETECTED = "REPLICATED", "REVERSED", "NOT DETECTED"
SUSPECT = "SUSPECT"
EQUIVALENT, NOT_SHOWN = "EQUIVALENT", "NOT SHOWN"


@dataclass
class ClaimCheck:
    """One comparison of one claim: both sides' trained values and the four answers."""

    claim: Claim
    a: dict[str, Any]
    b: dict[str, Any]
    values_a: list[float]  # oriented as measured (not sign-flipped), trained trials only
    values_b: list[float]
    untrained_a: list[str] = field(default_factory=list)  # "t003: reason" per left-out trial
    untrained_b: list[str] = field(default_factory=list)
    unjudged: int = 0  # trials counted as trained because they logged no reference levels
    paired: bool = False
    shift: Shift | None = None  # of the oriented values: positive is what the paper claims
    chance: float | None = None  # the metric's chance level (from the trials' chance/ refs)
    validity: str = NOT_TESTED
    validity_reason: str = ""
    p_one: float | None = None  # one-sided, claimed direction
    p_other: float | None = None  # one-sided, the other direction
    p_holm: float | None = None
    p_other_holm: float | None = None
    direction: str = ""
    prob_a_beats_b: float | None = None  # P(a better than b), oriented
    wilcoxon_p: float | None = None  # one-sided, claimed direction; None when not shown
    wilcoxon_note: str = ""
    family: int = 0  # comparisons tested in the file (the Holm family, per direction)
    ci: tuple[float, float] | None = None  # simultaneous 1 − α/m interval of the effect
    magnitude: str = ""
    equivalence: str = ""
    p_tost: float | None = None
    power_effect: float | None = None
    power_effect_from: str = ""
    needed: int | None = None

    @property
    def sign(self) -> float:
        """+1 when the claim is that a is higher, -1 when lower."""
        return 1.0 if self.claim.direction == "higher" else -1.0

    @property
    def effect(self) -> float | None:
        """The mean difference oriented so that positive is what the paper claims."""
        return None if self.shift is None else self.shift.diff

    @property
    def ci_level(self) -> float:
        """The confidence of the simultaneous interval: 1 − α/m."""
        return 1 - ALPHA / max(self.family, 1)

    @property
    def ratio(self) -> float | None:
        """Our effect as a fraction of the paper's (`min_effect`)."""
        floor = self.claim.min_effect
        return None if self.effect is None or floor is None else self.effect / floor

    @property
    def ratio_ci(self) -> tuple[float, float] | None:
        """The simultaneous interval as a fraction of the paper's effect."""
        floor, ci = self.claim.min_effect, self.ci
        return None if ci is None or floor is None else (ci[0] / floor, ci[1] / floor)

    @property
    def headroom(self) -> float | None:
        """Our effect as a share of the headroom between the metric's chance level and a
        perfect score (1, or 0 for an error rate): comparable across absolute levels."""
        if self.effect is None or self.chance is None:
            return None
        room = self.chance if lower_is_better(self.claim.metric) else 1.0 - self.chance
        return self.effect / room if room > 0 else None

    def label(self, side: str) -> str:
        """`pooling=two_step` for a side's selector."""
        cell = self.a if side == "a" else self.b
        return ", ".join(f"{k}={v}" for k, v in cell.items())


@dataclass
class ClaimsReport:
    """Every claim check of a sweep."""

    sweep: str
    checks: list[ClaimCheck] = field(default_factory=list)

    def render(self, fmt: str) -> str:
        """Markdown, CSV, JSON or HTML."""
        renderers = {"md": _markdown, "csv": _csv, "json": _json, "html": _html}
        if fmt not in renderers:
            raise UserError(unknown_name("format", fmt, FORMATS), where="--format")
        return renderers[fmt](self)

    def counts(self, column: str) -> dict[str, int]:
        """How many checks got each answer in one column (validity, direction, ...)."""
        out: dict[str, int] = {}
        for check in self.checks:
            value = getattr(check, column)
            if value:
                out[value] = out.get(value, 0) + 1
        return out


def select_trials(trials: list[TrialRun], selector: dict[str, Any]) -> list[TrialRun]:
    """The trials whose values match every key of a claim's cell selector."""
    return [t for t in trials if all(same_value(t.value(k), v) for k, v in selector.items())]


def _sides(claim: Claim, trials: list[TrialRun]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(a, b) selector pairs: the claim's own, or a against each other value of a's first key
    with a's other keys held."""
    a = flatten(claim.a)
    if isinstance(claim.b, dict):
        return [(a, flatten(claim.b))]
    first, *held = a
    others: list[Any] = []
    for trial in select_trials(trials, {k: a[k] for k in held}):
        value = trial.value(first)
        if not same_value(value, a[first]) and not any(same_value(value, o) for o in others):
            others.append(value)
    return [(a, {**a, first: value}) for value in others]


def check_claims(sweep: SweepRuns) -> ClaimsReport:
    """Answer every claim of the sweep's file on its trained completed trials: validity,
    direction (Holm across the tested comparisons), magnitude, equivalence."""
    report = ClaimsReport(sweep.name)
    completed = sweep.with_status(COMPLETED)
    for claim in sweep.spec.claims:
        for a, b in _sides(claim, completed):
            report.checks.append(_measure(sweep, claim, a, b, completed))
    tested = [c for c in report.checks if c.validity == TESTED]
    family = len(tested)
    adjusted = holm([c.p_one for c in tested] + [c.p_other for c in tested])
    for n, check in enumerate(tested):
        check.family = family
        check.p_holm, check.p_other_holm = adjusted[n], adjusted[family + n]
        _direction(check)
        _magnitude(check)
        _equivalence(check)
        _power(check)
    return report


def _measure(
    sweep: SweepRuns, claim: Claim, a: dict[str, Any], b: dict[str, Any], pool: list[TrialRun]
) -> ClaimCheck:
    """One comparison's trained values, its validity, and its one-sided tests (unadjusted)."""
    sides = []
    for selector in (a, b):
        chosen = [t for t in select_trials(pool, selector) if t.metric(claim.metric) is not None]
        trained = [t for t in chosen if sweep.validity(t).valid]
        untrained = [f"{short_name(t)}: {sweep.validity(t).reason}" for t in chosen
                     if not sweep.validity(t).valid]  # fmt: skip
        sides.append((trained, untrained))
    (side_a, untrained_a), (side_b, untrained_b) = sides
    check = ClaimCheck(
        claim, a, b,
        [t.metric(claim.metric) for t in side_a],  # type: ignore[misc]
        [t.metric(claim.metric) for t in side_b],  # type: ignore[misc]
        untrained_a, untrained_b,
    )  # fmt: skip
    check.chance = _chance(side_a + side_b, claim.metric)
    check.unjudged = sum(not sweep.validity(t).judged for t in side_a + side_b)
    short = [
        f"{side}: {len(trained)} of {len(trained) + len(untrained)} trials trained"
        + (f" ({untrained[0]})" if untrained else "")
        for side, trained, untrained in (("a", side_a, untrained_a), ("b", side_b, untrained_b))
        if len(trained) < MIN_VALID
    ]
    if short:
        check.validity_reason = "; ".join(short) + f" (needs {MIN_VALID} per side)"
        return check
    check.validity = TESTED
    sign = check.sign
    pairs = _paired_values(sweep, side_a, side_b, claim.metric)
    check.paired = pairs is not None
    xa, xb = pairs if pairs is not None else (check.values_a, check.values_b)
    oa, ob = [sign * v for v in xa], [sign * v for v in xb]
    check.shift = shift(oa, ob, paired=check.paired)
    assert check.shift is not None  # two trained trials per side
    check.p_one, check.p_other = check.shift.p_greater(), check.shift.p_less()
    check.prob_a_beats_b = superiority(oa, ob, paired=check.paired)
    return check


def _chance(trials: list[TrialRun], metric: str) -> float | None:
    """The metric's chance level as the trials logged it (their mean: the same split)."""
    values = [v for t in trials if (v := t.metrics.get(CHANCE_PREFIX + metric)) is not None]
    return sum(values) / len(values) if values else None


def _paired_values(
    sweep: SweepRuns, side_a: list[TrialRun], side_b: list[TrialRun], metric: str
) -> tuple[list[float], list[float]] | None:
    """The two sides' values in matching order when every trial of one has exactly one
    partner on the other with the same values of every key that varies within a side (the
    seeds, and any axis the selectors leave open); else None."""
    keys = [
        k
        for k in dict.fromkeys([*sweep.searched_keys, *sweep.replicate_keys])
        if any(len({hashable(t.value(k)) for t in side}) > 1 for side in (side_a, side_b))
    ]
    if not keys:
        return None

    def keyed(trials: list[TrialRun]) -> list[tuple[tuple, float]]:
        return [(tuple(hashable(t.value(k)) for k in keys), t.metric(metric)) for t in trials]  # type: ignore[misc]

    return pair_up(keyed(side_a), keyed(side_b))


def _direction(check: ClaimCheck) -> None:
    assert check.p_holm is not None and check.p_other_holm is not None
    if check.p_holm < ALPHA:
        check.direction = REPLICATED
    elif check.p_other_holm < ALPHA:
        check.direction = REVERSED
    else:
        check.direction = NOT_DETECTED
    if check.paired and check.shift is not None:
        nonzero = sum(1 for d in check.shift.diffs if d != 0)
        floor = smallest_signed_rank_p(nonzero)
        if nonzero and floor < ALPHA / check.family:
            check.wilcoxon_p = wilcoxon_greater(check.shift.diffs)
        else:
            check.wilcoxon_note = (
                f"Wilcoxon not shown: {nonzero} pairs cannot give p below {floor:.3g}, "
                f"above α/m = {ALPHA / check.family:.3g}"
            )


def _magnitude(check: ClaimCheck) -> None:
    assert check.shift is not None
    check.ci = check.shift.interval(check.ci_level)
    ratio = check.ratio
    check.magnitude = SUSPECT if ratio is not None and ratio > SUSPECT_RATIO else ""


def _equivalence(check: ClaimCheck) -> None:
    margin = check.claim.equivalence_margin
    if margin is None or check.shift is None:
        return
    check.p_tost = check.shift.tost(margin)
    check.equivalence = EQUIVALENT if check.p_tost < ALPHA else NOT_SHOWN


def _power(check: ClaimCheck) -> None:
    s = check.shift
    if s is None:
        return
    if check.claim.min_effect is not None:
        check.power_effect, check.power_effect_from = check.claim.min_effect, "paper"
    else:
        check.power_effect, check.power_effect_from = abs(s.diff), "observed"
    sd = _sd(check)
    if check.power_effect > 0 and sd is not None and math.isfinite(sd):
        check.needed = replicates_for_power(
            check.power_effect, sd, paired=check.paired, alpha=ALPHA, target=POWER
        )


def _sd(check: ClaimCheck) -> float | None:
    """The sd the power calculation assumes: of the paired differences, else the pooled
    per-group sd sqrt((s_a² + s_b²) / 2)."""
    import numpy as np

    s = check.shift
    if s is None:
        return None
    if check.paired:
        return float(np.std(s.diffs, ddof=1)) if len(s.diffs) > 1 else None
    va = float(np.var(check.values_a, ddof=1))
    vb = float(np.var(check.values_b, ddof=1))
    return math.sqrt((va + vb) / 2)


# -- rendering ------------------------------------------------------------------------------
COLUMNS = [
    "claim", "source", "a", "b", "metric", "claimed", "n_a", "n_b", "untrained_a",
    "untrained_b", "not_judged", "validity", "validity_reason", "test", "effect",
    "p_one_sided", "p_holm", "p_reversed_holm", "direction", "prob_a_beats_b",
    "wilcoxon_p_one_sided", "wilcoxon_note", "ci_level", "ci_low", "ci_high", "paper_effect",
    "ratio", "ratio_ci_low", "ratio_ci_high", "chance", "headroom_share", "magnitude",
    "equivalence_margin", "p_tost", "equivalence", "power_effect", "power_effect_from",
    "replicates_for_80pct_power",
]  # fmt: skip


def _row(check: ClaimCheck) -> dict[str, Any]:
    ci, rci = check.ci, check.ratio_ci
    return {
        "claim": check.claim.name,
        "source": check.claim.source,
        "a": check.label("a"),
        "b": check.label("b"),
        "metric": check.claim.metric,
        "claimed": check.claim.direction,
        "n_a": len(check.values_a),
        "n_b": len(check.values_b),
        "untrained_a": len(check.untrained_a),
        "untrained_b": len(check.untrained_b),
        "not_judged": check.unjudged,
        "validity": check.validity,
        "validity_reason": check.validity_reason,
        "test": None if check.shift is None else "paired t" if check.paired else "Welch t",
        "effect": check.effect,
        "p_one_sided": check.p_one,
        "p_holm": check.p_holm,
        "p_reversed_holm": check.p_other_holm,
        "direction": check.direction or None,
        "prob_a_beats_b": check.prob_a_beats_b,
        "wilcoxon_p_one_sided": check.wilcoxon_p,
        "wilcoxon_note": check.wilcoxon_note,
        "ci_level": check.ci_level if ci else None,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
        "paper_effect": check.claim.min_effect,
        "ratio": check.ratio,
        "ratio_ci_low": rci[0] if rci else None,
        "ratio_ci_high": rci[1] if rci else None,
        "chance": check.chance,
        "headroom_share": check.headroom,
        "magnitude": check.magnitude or None,
        "equivalence_margin": check.claim.equivalence_margin,
        "p_tost": check.p_tost,
        "equivalence": check.equivalence or None,
        "power_effect": check.power_effect,
        "power_effect_from": check.power_effect_from,
        "replicates_for_80pct_power": check.needed,
    }


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def direction_text(check: ClaimCheck) -> str:
    """'REPLICATED (Holm p 0.004, P(a>b) 1.00)', or '—' when not tested."""
    if check.validity != TESTED:
        return "—"
    p = check.p_holm if check.direction != REVERSED else check.p_other_holm
    return (
        f"**{check.direction}** (Holm p {_num(p)}, P(a>b) {_num(check.prob_a_beats_b, 2)}"
        + (f", Wilcoxon p {_num(check.wilcoxon_p)}" if check.wilcoxon_p is not None else "")
        + ")"
    )


def magnitude_text(check: ClaimCheck) -> str:
    """'+0.080 [0.030, 0.130]; 0.34× the paper's [0.13, 0.55]; 11 % of the headroom'."""
    if check.validity != TESTED or check.ci is None or check.effect is None:
        return "—"
    parts = [f"{check.effect:+.3f} [{check.ci[0]:.3f}, {check.ci[1]:.3f}]"]
    if check.ratio is not None and check.ratio_ci is not None:
        parts.append(
            f"{check.ratio:.2f}× the paper's [{check.ratio_ci[0]:.2f}, {check.ratio_ci[1]:.2f}]"
        )
    if check.headroom is not None:
        parts.append(f"{check.headroom:.0%} of the headroom above chance {check.chance:.3f}")
    text = "; ".join(parts)
    return f"**{SUSPECT}**: {text}" if check.magnitude == SUSPECT else text


def equivalence_text(check: ClaimCheck) -> str:
    """'EQUIVALENT (±0.02, TOST p 0.01)', or '—' when the claim declares no margin."""
    if not check.equivalence:
        return "—"
    margin = check.claim.equivalence_margin
    return f"**{check.equivalence}** (±{margin:g}, TOST p {_num(check.p_tost)})"


def validity_text(check: ClaimCheck) -> str:
    """'TESTED (5 vs 5)' or 'NOT TESTED: b: 0 of 5 trials trained (…)'."""
    if check.validity == TESTED:
        left = len(check.untrained_a) + len(check.untrained_b)
        extra = f"; {left} untrained left out" if left else ""
        if check.unjudged:
            extra += f"; {check.unjudged} not judged: no chance/ levels logged"
        return f"TESTED ({len(check.values_a)} vs {len(check.values_b)}{extra})"
    return f"**{NOT_TESTED}**: {check.validity_reason}"


def _legend(report: ClaimsReport) -> list[str]:
    family = max((c.family for c in report.checks), default=0)
    return [
        "validity: a side needs 2 trained trials (the validity gate: loss below the label "
        "prior's, objective above chance, curve flattened), else NOT TESTED and nothing is "
        "measured.",
        f"direction: one-sided t-tests (paired when a and b share seeds, else Welch) in the "
        f"claimed and in the other direction, Holm-corrected over the {family} tested "
        f"comparisons × 2 directions; α = {ALPHA}. P(a>b): share of seeds (pairs) where a beat "
        "b as claimed.",
        f"magnitude: effect = mean(a) − mean(b), oriented so that positive is as claimed, with "
        f"its simultaneous {1 - ALPHA / max(family, 1):.2%} interval (Bonferroni α/m, "
        f"consistent with Holm); × the paper's effect (min_effect); share of the headroom "
        f"between chance and a perfect score; {SUSPECT} above {SUSPECT_RATIO:g}× the paper's.",
        "equivalence: TOST at ±equivalence_margin where a claim declares one.",
        "n for 80 % power: replicates a two-sided t-test needs to detect the paper's effect "
        "(else the observed one) at the observed sd.",
    ]


def _markdown(report: ClaimsReport) -> str:
    head = ["claim", "a vs b", "metric", "validity", "direction", "magnitude", "equivalence",
            "n for 80 % power"]  # fmt: skip
    lines = [f"**Claims of {report.sweep}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 7 + ["---:"]) + "|"]  # fmt: skip
    for check in report.checks:
        source = f" ({check.claim.source})" if check.claim.source else ""
        power = _num(check.needed) + (
            f" ({check.power_effect_from} effect {_num(check.power_effect)})"
            if check.power_effect is not None
            else ""
        )
        lines.append(
            f"| {check.claim.name}{source} | {check.label('a')} {check.claim.direction} than "
            f"{check.label('b')} | {check.claim.metric} | {validity_text(check)} "
            f"| {direction_text(check)} | {magnitude_text(check)} | {equivalence_text(check)} "
            f"| {power} |"
        )
    notes = [c.wilcoxon_note for c in report.checks if c.wilcoxon_note]
    lines += ["", *[f"- {md_text(n)}" for n in _legend(report)]]
    if notes:
        lines.append(f"- {md_text(notes[0])}.")
    return "\n".join(lines) + "\n"


def _csv(report: ClaimsReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for check in report.checks:
        writer.writerow({k: "" if v is None else v for k, v in _row(check).items()})
    return out.getvalue()


def _json(report: ClaimsReport) -> str:
    rows = []
    for c in report.checks:
        r = _row(c)
        rows.append({
            "claim": r["claim"], "source": r["source"], "a": r["a"], "b": r["b"],
            "metric": r["metric"], "claimed": r["claimed"],
            "values_a": c.values_a, "values_b": c.values_b,
            "validity": {"verdict": c.validity, "reason": c.validity_reason,
                         "untrained_a": c.untrained_a, "untrained_b": c.untrained_b,
                         "not_judged": c.unjudged},
            "direction": None if c.validity != TESTED else {
                "verdict": c.direction, "test": r["test"], "p_one_sided": c.p_one,
                "p_holm": c.p_holm, "p_reversed_holm": c.p_other_holm,
                "prob_a_beats_b": c.prob_a_beats_b, "wilcoxon_p_one_sided": c.wilcoxon_p,
                "wilcoxon_note": c.wilcoxon_note, "family": c.family},
            "magnitude": None if c.validity != TESTED else {
                "verdict": c.magnitude or None, "effect": c.effect, "ci_level": r["ci_level"],
                "ci_low": r["ci_low"], "ci_high": r["ci_high"], "paper_effect": r["paper_effect"],
                "ratio": c.ratio, "ratio_ci_low": r["ratio_ci_low"],
                "ratio_ci_high": r["ratio_ci_high"], "chance": c.chance,
                "headroom_share": c.headroom},
            "equivalence": None if not c.equivalence else {
                "verdict": c.equivalence, "margin": c.claim.equivalence_margin,
                "p_tost": c.p_tost},
            "power": {"effect": c.power_effect, "effect_from": c.power_effect_from,
                      "replicates_for_80pct_power": c.needed},
        })  # fmt: skip
    return json.dumps({"sweep": report.sweep, "alpha": ALPHA, "claims": rows}, indent=2) + "\n"


def _html(report: ClaimsReport) -> str:
    esc = html.escape
    head = ["claim", "source", "a vs b", "metric", "validity", "direction", "magnitude",
            "equivalence", "n for 80 % power"]  # fmt: skip
    parts = ['<table class="claims"><thead><tr>']
    parts += [f"<th>{esc(h)}</th>" for h in head]
    parts.append("</tr></thead><tbody>")
    for check in report.checks:
        plain = [
            check.claim.name, check.claim.source,
            f"{check.label('a')} {check.claim.direction} than {check.label('b')}",
            check.claim.metric,
        ]  # fmt: skip
        parts.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in plain))
        for css, text in (
            ("validity " + check.validity.lower().replace(" ", "-"), validity_text(check)),
            ("direction " + check.direction.lower().replace(" ", "-"), direction_text(check)),
            ("magnitude " + check.magnitude.lower(), magnitude_text(check)),
            ("equivalence " + check.equivalence.lower().replace(" ", "-"),
             equivalence_text(check)),
        ):  # fmt: skip
            shown = esc(text.replace("**", ""))
            parts.append(f'<td class="{esc(css.strip())}">{shown}</td>')
        parts.append(f"<td>{esc(_num(check.needed))}</td></tr>")
    parts.append("</tbody></table>")
    parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in _legend(report)))
    return "".join(parts) + "</ul>\n"


def log_claims(sweep: SweepRuns, report: ClaimsReport) -> None:
    """Log claims.md and claims.csv to the sweep's parent run."""
    sweep.client.log_text(sweep.parent_run_id, report.render("md"), CLAIMS_MD)
    sweep.client.log_text(sweep.parent_run_id, report.render("csv"), CLAIMS_CSV)
