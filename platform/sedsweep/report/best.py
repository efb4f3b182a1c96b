"""A sweep's best configuration as `sedsweep best` reports it: rankings and the report text.

Selection reads only the sweep's objective (a validation metric — the sweep spec refuses a
test one) of completed trials. What `sedsweep best` then does — confirmation sweep, re-training,
model logging, registry — is `sedsweep.select`; this module only ranks and renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sedsweep.errors import UserError
from sedsweep.report.importance import Importance
from sedsweep.report.runs import COMPLETED, SweepRuns, TrialRun

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


def rank_by_validation(sweep: SweepRuns) -> list[Ranked]:
    """Completed trials with a finite objective, best first (reads the objective metric only)."""
    ranked = [Ranked(t, [t.metric(sweep.objective)]) for t in sweep.ranked()]
    if not ranked:
        raise UserError(f"no completed trial has a finite {sweep.objective}", where=sweep.name)
    return ranked


def candidate_overrides(
    sweep: SweepRuns, trial: TrialRun, keep_seed: bool = True
) -> dict[str, Any]:
    """The trial's values of every key the sweep varies (searched, cells, data, replicates)."""
    keys = [*sweep.searched_keys, *sweep.replicate_keys]
    return {k: trial.value(k) for k in dict.fromkeys(keys) if keep_seed or k != SEED_KEY}


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
        f"Objective: {metric} ({s.spec.objective.mode}), validation split; completed trials: "
        f"{len(s.with_status(COMPLETED))} of {len(s.trials)}.",
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
            lines.append(
                f"| {i} | {r.trial.name} | {_fmt(r.mean)} | {_fmt(r.std)} | {len(r.values)} "
                f"| {order.index(r.trial.run_id) + 1} |"
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
        if imp.values:
            lines += ["| parameter | importance |", "|---|---:|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in imp.values]
        else:
            lines.append(imp.note or "not computed")
    return "\n".join(lines) + "\n"


def _overrides_text(sweep: SweepRuns, trial: TrialRun) -> str:
    return ", ".join(f"{k}={v}" for k, v in candidate_overrides(sweep, trial).items()) or "(base)"
