"""A sweep's best configuration as `sedsweep best` reports it: rankings and the report text.

Selection reads only the sweep's objective (a validation metric — the sweep spec refuses a
test one) of completed trials, at each trial's selected epoch. A Pareto sweep (several
objectives) chooses one point of the front of its completed trials by a stated rule
(`--pick knee | weights=... | constraint:...`, see `report.pareto`) and prints that front.
What `sedsweep best` then does — confirmation sweep, re-training,
model logging, registry — is `sedsweep.selection`; this module only ranks and renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sedsweep.errors import UserError
from sedsweep.report.importance import Importance
from sedsweep.report.pareto import PickRule, non_dominated, parse_pick, pick
from sedsweep.report.runs import COMPLETED, SweepRuns, TrialRun
from sedsweep.sweep.spec import conditions

SEED_KEY = "seed"


@dataclass
class Ranked:
    """A candidate configuration with the objective values it is ranked by."""

    trial: TrialRun
    values: list[float]

    @property
    def mean(self) -> float:
        """Mean objective."""
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """Sample std of the objective (None for one value)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None


@dataclass
class Confirmation:
    """The follow-up sweep that re-ran the top configurations with fresh seeds."""

    sweep: SweepRuns
    seeds: list[int]
    ranking: list[Ranked]
    arms: list[tuple] = field(default_factory=list)  # each ranked one's arm (table rows)


@dataclass
class BestReport:
    """What `sedsweep best` chose and measured."""

    sweep: SweepRuns
    validation: list[Ranked]
    chosen: Ranked
    confirmation: Confirmation | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    final_run_id: str | None = None
    model_uri: str | None = None
    registered: dict[str, str | None] | None = None
    importance: Importance | None = None
    front: list[TrialRun] = field(default_factory=list)  # Pareto sweeps: non-dominated trials
    pick: PickRule | None = None


def rank_by_validation(sweep: SweepRuns) -> list[Ranked]:
    """Valid completed trials with a finite objective, best first (reads the objective only);
    a trial that did not train is never a candidate (`sedsweep.validity`)."""
    ranked = [Ranked(t, [t.metric(sweep.objective)]) for t in sweep.ranked()]
    if not ranked:
        left = sweep.left_out(COMPLETED)
        why = f": {left}" if left else ""
        raise UserError(
            f"no trained completed trial has a finite {sweep.objective}{why}", where=sweep.name
        )
    return ranked


def parse_pick_rule(sweep: SweepRuns, text: str | None) -> PickRule | None:
    """The `--pick` rule of a Pareto sweep (default: knee); refused for one objective."""
    metrics = [o.metric for o in sweep.spec.objectives]
    if not sweep.spec.multi_objective:
        if text is not None:
            raise UserError(
                f"needs a sweep with several objectives ({sweep.name} has one)", where="--pick"
            )
        return None
    try:
        rule = parse_pick(text or "knee", metrics)
    except ValueError as exc:
        raise UserError(str(exc), where="--pick") from None
    logged = {k for t in sweep.with_status(COMPLETED) for k in t.metrics}
    for condition in rule.constraints:
        if condition.metric not in metrics and condition.metric not in logged:
            raise UserError(f"no completed trial logged {condition.metric!r}", where="--pick")
    return rule


def objective_points(sweep: SweepRuns, trials: list[TrialRun]) -> np.ndarray:
    """The trials' objective values, [trials, objectives] (NaN where a value is missing)."""
    metrics = [o.metric for o in sweep.spec.objectives]
    values = [[np.nan if (v := t.metric(m)) is None else v for m in metrics] for t in trials]
    return np.array(values, dtype=float).reshape(len(trials), len(metrics))


def pareto_front(sweep: SweepRuns) -> tuple[list[TrialRun], np.ndarray]:
    """Valid completed trials with every objective finite, and the mask of the non-dominated
    ones."""
    metrics = [o.metric for o in sweep.spec.objectives]
    trials = [t for t in sweep.valid(COMPLETED) if all(t.metric(m) is not None for m in metrics)]
    maximise = [o.maximise for o in sweep.spec.objectives]
    return trials, non_dominated(objective_points(sweep, trials), maximise)


def pick_from_front(sweep: SweepRuns, rule: PickRule) -> tuple[TrialRun, list[TrialRun]]:
    """The trial `rule` chooses among the completed trials, and the front it chose from."""
    trials, mask = pareto_front(sweep)
    if not trials:
        names = ", ".join(o.metric for o in sweep.spec.objectives)
        raise UserError(f"no trained completed trial has finite {names}", where=sweep.name)
    metrics = [o.metric for o in sweep.spec.objectives]
    points = objective_points(sweep, trials)
    extra = {
        c.metric: np.array([np.nan if (v := t.metric(c.metric)) is None else v for t in trials])
        for c in rule.constraints
        if c.metric not in metrics
    }
    try:
        index = pick(points, [o.maximise for o in sweep.spec.objectives], rule, metrics, extra)
    except ValueError as exc:
        raise UserError(str(exc), where="--pick") from None
    return trials[index], [t for t, on in zip(trials, mask, strict=True) if on]


def candidate_overrides(
    sweep: SweepRuns, trial: TrialRun, keep_seed: bool = True
) -> dict[str, Any]:
    """The trial's values of every key the sweep varies (searched, cells, data, replicates),
    but a conditional key where it does not act (the trial has no value for it)."""
    keys = [*sweep.searched_keys, *sweep.replicate_keys]
    when = conditions(sweep.spec.space)
    return {
        k: trial.value(k)
        for k in dict.fromkeys(keys)
        if (keep_seed or k != SEED_KEY) and not (k in when and trial.value(k) is None)
    }


def fresh_seeds(sweep: SweepRuns, count: int) -> list[int]:
    """`count` seeds no trial of the sweep used."""
    used = {t.value(SEED_KEY) for t in sweep.trials}
    seeds: list[int] = []
    candidate = 0
    while len(seeds) < count:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def _fmt(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"


def render_report(report: BestReport) -> str:
    """The report `sedsweep best` prints and logs (Markdown)."""
    s = report.sweep
    metric = s.objective
    lines = [
        f"# Best configuration of {s.name}",
        "",
        f"Objective: {metric} ({s.spec.primary.mode}), validation split; completed trials: "
        f"{len(s.with_status(COMPLETED))} of {len(s.trials)}.",
        *([f"Not candidates: {left}."] if (left := s.left_out(COMPLETED)) else []),
        "",
        "## Ranking by validation objective (single run per trial)",
        "",
        f"| rank | trial | {metric} | configuration |",
        "|---:|---|---:|---|",
    ]
    top = report.confirmation.ranking if report.confirmation else report.validation[:1]
    shown = report.validation[: max(len(top), 5)]
    for i, r in enumerate(shown, 1):
        lines.append(f"| {i} | {r.trial.name} | {_fmt(r.mean)} | {_overrides_text(s, r.trial)} |")
    if report.pick is not None:
        lines += _front_lines(report)
    if report.confirmation:
        c = report.confirmation
        lines += [
            "",
            f"## Ranking by mean over {len(c.seeds)} fresh seeds {c.seeds} "
            f"(confirmation sweep {c.sweep.name}, parent run {c.sweep.parent_run_id})",
            "",
            f"| rank | trial | mean {metric} | std | n | validation rank |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        order = [r.trial.run_id for r in report.validation]
        for i, r in enumerate(c.ranking, 1):
            rank = order.index(r.trial.run_id) + 1 if r.trial.run_id in order else "pruned"
            lines.append(
                f"| {i} | {r.trial.name} | {_fmt(r.mean)} | {_fmt(r.std)} | {len(r.values)} "
                f"| {rank} |"
            )
        if c.arms:
            keys = s.spec.table.rows
            lines += ["", "Each arm's best confirmed configuration:", ""]
            lines += [f"| arm | trial | mean {metric} | std | n |", "|---|---|---:|---:|---:|"]
            seen: set[tuple] = set()
            for arm, r in zip(c.arms, c.ranking, strict=True):
                if arm in seen:
                    continue
                seen.add(arm)
                label = ", ".join(f"{k}={v}" for k, v in zip(keys, arm, strict=True))
                lines.append(
                    f"| {label} | {r.trial.name} | {_fmt(r.mean)} | {_fmt(r.std)} "
                    f"| {len(r.values)} |"
                )
    val_final = report.final.get(metric)
    lines += [
        "",
        "## Chosen",
        "",
        f"- trial {report.chosen.trial.name} (run {report.chosen.trial.run_id}): "
        f"{_overrides_text(s, report.chosen.trial)}",
        f"- validation {metric}: {_fmt(report.chosen.mean)}"
        + (f" (mean of {len(report.chosen.values)} seeds)" if report.confirmation else "")
        + f"; re-trained from best.yaml (the trial's own seed): {_fmt(val_final)}",
        "- test split (evaluated once, after selection; never used to choose): "
        + ", ".join(
            f"{k} = {_fmt(v)}" for k, v in sorted(report.final.items()) if k.startswith("test/")
        ),
        f"- final run {report.final_run_id}; model {report.model_uri}",
    ]
    if report.registered:
        reg = report.registered
        lines.append(
            f"- registered as {reg['name']} version {reg['version']}, alias champion"
            + (f" (previous champion: version {reg['previous']})" if reg["previous"] else "")
        )
    imp = report.importance
    if imp is not None:
        lines += ["", f"## Parameter importance ({imp.evaluator}, {imp.target})", ""]
        if imp.computed:
            lines += ["| parameter | importance | over |", "|---|---:|---|"]
            lines += [f"| {k} | {v:.3f} | {over} |" for k, v, over in imp.rows()]
            lines += ["", *[f"- {p.basis}" for p in [imp, *imp.subspaces] if p.basis]]
        else:
            lines.append(imp.note or "not computed")
    return "\n".join(lines) + "\n"


def _front_lines(report: BestReport) -> list[str]:
    s, rule = report.sweep, report.pick
    assert rule is not None
    metrics = [o.metric for o in s.spec.objectives]
    lines = [
        "",
        f"## Pareto front over {', '.join(f'{o.metric} ({o.mode})' for o in s.spec.objectives)}"
        f": {len(report.front)} non-dominated of {len(s.valid(COMPLETED))} trained completed "
        "trials",
        "",
        f"Chosen by --pick {rule.describe()}",
        "",
        "| trial | " + " | ".join(metrics) + " | configuration |",
        "|---|" + "---:|" * len(metrics) + "---|",
    ]
    order = sorted(report.front, key=lambda t: t.metric(metrics[0]) or 0.0, reverse=True)
    for t in order:
        mark = " ◆ chosen" if t.run_id == report.chosen.trial.run_id else ""
        values = " | ".join(_fmt(t.metric(m)) for m in metrics)
        lines.append(f"| {t.name}{mark} | {values} | {_overrides_text(s, t)} |")
    return lines


def _overrides_text(sweep: SweepRuns, trial: TrialRun) -> str:
    return ", ".join(f"{k}={v}" for k, v in candidate_overrides(sweep, trial).items()) or "(base)"
