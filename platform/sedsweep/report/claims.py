"""Claim checks: does the sweep reproduce what a paper asserts?

A search-space file's `claims:` (see `sweep.spec.Claim`) say that cell `a` beats cell `b` (or
each other cell) on a metric. For each comparison the completed trials of both sides are
collected; when every trial of one side has exactly one partner on the other with the same
values of all other varying keys (shared seeds: a paired design) the difference is tested by
a paired t-test (with Wilcoxon's signed-rank test beside it), otherwise by Welch's t-test.
p-values are Holm-corrected across every comparison of the file. The verdict, with the
effect oriented so that positive means "as claimed":

- SUPPORTED: corrected p < α, the effect is positive and at least the paper's `min_effect`;
- CONTRADICTED: corrected p < α with the effect reversed, or the 95 % CI excludes an effect as
  large as the paper's `min_effect`;
- INCONCLUSIVE: anything else (too few replicates, too much variance).

Each comparison also gives the replicates needed for 80 % power to detect the paper's effect
(`min_effect`, else the observed one) at the observed standard deviation.
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
from sedsweep.errors import UserError
from sedsweep.report.design import hashable
from sedsweep.report.runs import COMPLETED, SweepRuns, TrialRun, same_value
from sedsweep.report.stats import (
    ALPHA,
    Comparison,
    compare,
    holm,
    pair_up,
    replicates_for_power,
)
from sedsweep.sweep.spec import Claim
from sedsweep.tracking import CLAIMS_CSV, CLAIMS_MD

FORMATS = ("md", "csv", "json", "html")
POWER = 0.8
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"


@dataclass
class ClaimCheck:
    """One comparison of one claim: the two sides' values, the test and the verdict."""

    claim: Claim
    a: dict[str, Any]
    b: dict[str, Any]
    values_a: list[float]
    values_b: list[float]
    comparison: Comparison | None = None
    p_holm: float | None = None
    verdict: str = INCONCLUSIVE
    reason: str = ""
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
        return None if self.comparison is None else self.sign * self.comparison.diff

    @property
    def effect_ci(self) -> tuple[float, float] | None:
        """The 95 % CI of the oriented effect."""
        c = self.comparison
        if c is None:
            return None
        lo, hi = sorted((self.sign * c.ci_low, self.sign * c.ci_high))
        return lo, hi

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
            raise UserError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})", "--format")
        return renderers[fmt](self)


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
    """Test every claim of the sweep's file on its completed trials; Holm across them."""
    report = ClaimsReport(sweep.name)
    completed = sweep.with_status(COMPLETED)
    for claim in sweep.spec.claims:
        for a, b in _sides(claim, completed):
            check = ClaimCheck(claim, a, b, [], [])
            side_a = [t for t in select_trials(completed, a) if t.metric(claim.metric) is not None]
            side_b = [t for t in select_trials(completed, b) if t.metric(claim.metric) is not None]
            check.values_a = [t.metric(claim.metric) for t in side_a]  # type: ignore[misc]
            check.values_b = [t.metric(claim.metric) for t in side_b]  # type: ignore[misc]
            pairs = _paired_values(sweep, side_a, side_b, claim.metric)
            if pairs is not None:
                check.comparison = compare(*pairs, paired=True)
            elif check.values_a and check.values_b:
                check.comparison = compare(check.values_a, check.values_b, paired=False)
            report.checks.append(check)
    adjusted = holm([c.comparison.p_value if c.comparison else None for c in report.checks])
    for check, p in zip(report.checks, adjusted, strict=True):
        check.p_holm = p
        _verdict(check)
        _power(check)
    return report


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


def _verdict(check: ClaimCheck) -> None:
    c, p, effect, ci = check.comparison, check.p_holm, check.effect, check.effect_ci
    floor = check.claim.min_effect
    if c is None or p is None or effect is None or ci is None:
        n = f"n = {len(check.values_a)} vs {len(check.values_b)}"
        check.verdict, check.reason = INCONCLUSIVE, f"no test possible ({n}; needs 2 per side)"
        return
    if p < ALPHA and effect < 0:
        check.verdict, check.reason = CONTRADICTED, "significant in the opposite direction"
    elif floor is not None and ci[1] < floor:
        check.verdict = CONTRADICTED
        check.reason = f"the 95 % CI excludes an effect as large as the paper's ({floor:g})"
    elif p < ALPHA and effect > 0 and (floor is None or effect >= floor):
        check.verdict, check.reason = SUPPORTED, "significant in the claimed direction"
    else:
        check.verdict = INCONCLUSIVE
        check.reason = (
            f"Holm-corrected p = {p:.3g} ≥ {ALPHA}"
            if p >= ALPHA
            else f"significant, but the effect {effect:.3g} is below the paper's {floor:g}"
        )


def _power(check: ClaimCheck) -> None:
    c = check.comparison
    if c is None:
        return
    if check.claim.min_effect is not None:
        check.power_effect, check.power_effect_from = check.claim.min_effect, "paper"
    else:
        check.power_effect, check.power_effect_from = abs(c.diff), "observed"
    if check.power_effect > 0 and c.sd is not None and math.isfinite(c.sd):
        check.needed = replicates_for_power(
            check.power_effect, c.sd, paired=c.paired, alpha=ALPHA, target=POWER
        )


# -- rendering ------------------------------------------------------------------------------
COLUMNS = [
    "claim", "source", "a", "b", "metric", "direction", "n_a", "n_b", "test", "mean_diff",
    "ci_low", "ci_high", "p", "p_wilcoxon", "p_holm", "verdict", "reason", "power_effect",
    "power_effect_from", "replicates_for_80pct_power",
]  # fmt: skip


def _row(check: ClaimCheck) -> dict[str, Any]:
    c = check.comparison
    return {
        "claim": check.claim.name,
        "source": check.claim.source,
        "a": check.label("a"),
        "b": check.label("b"),
        "metric": check.claim.metric,
        "direction": check.claim.direction,
        "n_a": len(check.values_a),
        "n_b": len(check.values_b),
        "test": c.test if c else None,
        "mean_diff": c.diff if c else None,
        "ci_low": c.ci_low if c else None,
        "ci_high": c.ci_high if c else None,
        "p": c.p_value if c else None,
        "p_wilcoxon": c.wilcoxon_p if c else None,
        "p_holm": check.p_holm,
        "verdict": check.verdict,
        "reason": check.reason,
        "power_effect": check.power_effect,
        "power_effect_from": check.power_effect_from,
        "replicates_for_80pct_power": check.needed,
    }


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _legend(report: ClaimsReport) -> list[str]:
    return [
        "mean diff = mean(a) − mean(b) with its 95 % CI; paired t (Wilcoxon signed-rank beside "
        "it) when a and b share seeds and every other varying key, Welch t otherwise; Holm: "
        f"corrected across the {len(report.checks)} comparisons of the file; α = {ALPHA}.",
        "n for 80 % power: replicates (pairs, or per side) a two-sided t-test needs to detect "
        "the paper's effect (min_effect; else the observed one) at the observed sd.",
    ]


def _markdown(report: ClaimsReport) -> str:
    head = ["claim", "a vs b", "metric", "n", "mean diff [95 % CI]", "test", "p", "Wilcoxon p",
            "Holm p", "verdict", "n for 80 % power"]  # fmt: skip
    lines = [f"**Claims of {report.sweep}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * 7 + ["---:"]) + "|"]  # fmt: skip
    for check in report.checks:
        r = _row(check)
        ci = f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
        source = f" ({r['source']})" if r["source"] else ""
        power = _num(r["replicates_for_80pct_power"]) + (
            f" ({r['power_effect_from']} effect {_num(r['power_effect'])})"
            if r["power_effect"] is not None
            else ""
        )
        lines.append(
            f"| {r['claim']}{source} | {r['a']} {r['direction']} than {r['b']} | {r['metric']} "
            f"| {r['n_a']} vs {r['n_b']} | {_num(r['mean_diff'])} {ci} | {r['test'] or '—'} "
            f"| {_num(r['p'])} | {_num(r['p_wilcoxon'])} | {_num(r['p_holm'])} "
            f"| **{r['verdict']}**: {r['reason']} | {power} |"
        )
    lines += ["", *[f"- {n}" for n in _legend(report)]]
    return "\n".join(lines) + "\n"


def _csv(report: ClaimsReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for check in report.checks:
        writer.writerow({k: "" if v is None else v for k, v in _row(check).items()})
    return out.getvalue()


def _json(report: ClaimsReport) -> str:
    rows = [{**_row(c), "values_a": c.values_a, "values_b": c.values_b} for c in report.checks]
    return json.dumps({"sweep": report.sweep, "alpha": ALPHA, "claims": rows}, indent=2) + "\n"


def _html(report: ClaimsReport) -> str:
    esc = html.escape
    head = ["claim", "source", "a vs b", "metric", "n", "mean diff [95 % CI]", "test", "p",
            "Wilcoxon p", "Holm p", "verdict", "n for 80 % power"]  # fmt: skip
    parts = ['<table class="claims"><thead><tr>']
    parts += [f"<th>{esc(h)}</th>" for h in head]
    parts.append("</tr></thead><tbody>")
    for check in report.checks:
        r = _row(check)
        cells = [
            r["claim"], r["source"], f"{r['a']} {r['direction']} than {r['b']}", r["metric"],
            f"{r['n_a']} vs {r['n_b']}",
            f"{_num(r['mean_diff'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
            r["test"] or "—", _num(r["p"]), _num(r["p_wilcoxon"]), _num(r["p_holm"]),
        ]  # fmt: skip
        parts.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in cells))
        parts.append(
            f'<td class="verdict {esc(r["verdict"].lower())}"><strong>{esc(r["verdict"])}'
            f"</strong>: {esc(r['reason'])}</td><td>{esc(_num(r['replicates_for_80pct_power']))}"
            "</td></tr>"
        )
    parts.append("</tbody></table>")
    parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in _legend(report)))
    return "".join(parts) + "</ul>\n"


def log_claims(sweep: SweepRuns, report: ClaimsReport) -> None:
    """Log claims.md and claims.csv to the sweep's parent run."""
    sweep.client.log_text(sweep.parent_run_id, report.render("md"), CLAIMS_MD)
    sweep.client.log_text(sweep.parent_run_id, report.render("csv"), CLAIMS_CSV)
