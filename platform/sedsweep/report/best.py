"""Pick a sweep's best configuration, optionally confirm it over fresh seeds, export and test it.

Selection reads only the sweep's objective (a validation metric — the sweep spec refuses a
test one) of completed trials. `confirm_top` re-runs the top K configurations with S fresh
seeds as a small follow-up grid sweep on the same engine and ranks them by the mean objective
over those seeds only (the original run is left out: it was selected for being lucky). The
chosen configuration is then trained once more as a complete, portable run spec (`best.yaml`):
that run is the only place the test split is looked at, and its test metrics are reported
apart from the validation numbers used to choose.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sedsweep.errors import UserError
from sedsweep.fsio import atomic_file
from sedsweep.report.importance import Importance, plot_importance
from sedsweep.report.runs import COMPLETED, SweepRuns, TrialRun, load_sweep_runs
from sedsweep.sweep.spec import (
    Budget,
    Scheduler,
    Search,
    SweepSpec,
    Table,
    config_part,
    data_part,
    plan_sweep,
    trial_config,
)
from sedsweep.train import Resolved, RunSpec, resolve

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


def confirm_spec(sweep: SweepRuns, top: list[Ranked], seeds: list[int]) -> SweepSpec:
    """A grid sweep of the top configurations (one cell each) × the fresh seeds."""
    cells = [candidate_overrides(sweep, r.trial, keep_seed=False) for r in top]
    keys = list(cells[0])
    s = sweep.spec
    fixed = {k: v for k, v in s.fixed.items() if k != SEED_KEY}
    return s.model_copy(
        update={
            "name": f"{s.name}-confirm",
            "fixed": fixed,
            "space": {},
            "cells": cells,
            "replicates": {SEED_KEY: seeds},
            "search": Search(algorithm="grid", seed=s.search.seed),
            "scheduler": Scheduler(type="none"),
            "budget": Budget(
                trials=1,
                max_epochs=s.budget.max_epochs,
                max_concurrent=s.budget.max_concurrent,
                max_failures=s.budget.max_failures,
            ),
            "table": Table(rows=keys, metrics=[s.objective.metric], replicates=[SEED_KEY]),
            "scales": {},
        },
        deep=True,
    )


def confirm_top(
    sweep: SweepRuns,
    ranking: list[Ranked],
    k: int,
    seeds: int,
    *,
    workdir: Path,
    address: str | None = None,
    storage: str | None = None,
) -> Confirmation:
    """Re-run the top `k` configurations with `seeds` fresh seeds; rank them by mean objective."""
    from sedsweep.sweep.runner import run_sweep

    top = ranking[:k]
    chosen_seeds = fresh_seeds(sweep, seeds)
    spec = confirm_spec(sweep, top, chosen_seeds)
    plan = plan_sweep(spec, f"confirmation of {sweep.name}")
    outcome = run_sweep(
        plan, workdir=workdir, address=address, storage=storage, tracking_uri=sweep.tracking_uri
    )
    follow = load_sweep_runs(outcome.parent_run_id, sweep.tracking_uri)
    ranked = []
    for r in top:
        want = candidate_overrides(sweep, r.trial, keep_seed=False)
        values = [
            v
            for t in follow.with_status(COMPLETED)
            if candidate_overrides(follow, t, keep_seed=False) == want
            and (v := t.metric(sweep.objective)) is not None
        ]
        if values:
            ranked.append(Ranked(r.trial, values))
    if not ranked:
        raise UserError(
            f"the confirmation sweep finished no trial ({outcome.summary()})", where=follow.name
        )
    ranked.sort(key=lambda r: r.mean, reverse=sweep.maximise)
    return Confirmation(follow, chosen_seeds, ranked)


def resolved_for(sweep: SweepRuns, trial: TrialRun) -> Resolved:
    """The chosen trial as a complete, validated training run (config, features, data)."""
    plan = plan_sweep(sweep.spec, sweep.name)
    overrides = candidate_overrides(sweep, trial)
    config = trial_config(
        plan.base.config.model_dump(mode="json"), config_part(overrides), plan.epochs
    )
    data = plan.data_spec(data_part(overrides))
    run = RunSpec(
        method=sweep.spec.method,
        scale=sweep.spec.scale,
        data=data,
        features=sweep.spec.features,
        config=config,
    )
    return resolve(run, where=f"best of {sweep.name}")


def portable_spec(resolved: Resolved) -> dict[str, Any]:
    """best.yaml: every config field spelled out, the data as the sweep declared it."""
    return {
        "method": resolved.spec.method,
        "scale": resolved.spec.scale,
        "data": resolved.spec.data.model_dump(mode="json", exclude_none=True),
        "features": {
            "preset": resolved.spec.features.preset or resolved.method_cls.feature_preset,
            "overrides": resolved.feature_params.model_dump(mode="json"),
        },
        "config": resolved.config.model_dump(mode="json"),
    }


def write_spec(path: Path, spec: dict[str, Any], header: str) -> None:
    """Write a run spec YAML atomically, with a comment header."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"# {line}\n" for line in header.splitlines()))
        yaml.safe_dump(spec, handle, sort_keys=False)


def select_best(
    sweep: SweepRuns,
    *,
    out: Path,
    workdir: Path,
    confirm: int = 0,
    seeds: int = 3,
    register: str | None = None,
    evaluator: str = "ped-anova",
    device: str | None = None,
    address: str | None = None,
    storage: str | None = None,
) -> BestReport:
    """The whole `sedsweep best`: select, (confirm), export, test once, log, (register)."""
    from sedsweep.report.importance import param_importance
    from sedsweep.tracking import PARENT_TAG, RunWriter, register_champion
    from sedsweep.train import train

    if confirm < 0 or seeds < 1:
        raise UserError("needs --confirm-top >= 0 and --seeds >= 1", where="--confirm-top/--seeds")
    ranking = rank_by_validation(sweep)
    report = BestReport(sweep=sweep, validation=ranking, chosen=ranking[0])
    if confirm:
        report.confirmation = confirm_top(
            sweep, ranking, confirm, seeds, workdir=workdir, address=address, storage=storage
        )
        report.chosen = report.confirmation.ranking[0]
    resolved = resolved_for(sweep, report.chosen.trial)
    report.spec = portable_spec(resolved)
    write_spec(
        out,
        report.spec,
        f"Best configuration of sweep {sweep.name} (parent run {sweep.parent_run_id}),\n"
        f"trial {report.chosen.trial.name}: {sweep.objective} = {report.chosen.mean:.6g}.\n"
        f"Reproduce: sedsweep train --config {out.name}",
    )
    result = train(
        resolved,
        workdir=workdir,
        tracking_uri=sweep.tracking_uri,
        device=device,
        experiment=sweep.experiment_name,
        progress=False,
        log_model=True,
        tags={
            PARENT_TAG: sweep.parent_run_id,
            "sweep.role": "best",
            "sweep.best_of": report.chosen.trial.run_id,
        },
    )
    report.final, report.final_run_id, report.model_uri = (
        result.metrics, result.run_id, result.model_uri
    )  # fmt: skip
    if register:
        report.registered = register_champion(
            sweep.tracking_uri,
            register,
            result.model_uri,
            tags={
                "sweep": sweep.name,
                "objective": sweep.objective,
                "objective_value": f"{report.chosen.mean:.6g}",
                "best_run": result.run_id,
            },
        )
    report.importance = param_importance(sweep, evaluator)
    parent = RunWriter(sweep.client, sweep.parent_run_id)
    sweep.client.log_text(parent.run_id, render_report(report), "best/best.md")
    sweep.client.log_artifact(parent.run_id, str(out), "best")
    log_importance(sweep, report.importance)
    parent.set_tags(
        {"sweep.best_run": report.chosen.trial.run_id, "sweep.best_final_run": result.run_id}
    )
    return report


def log_importance(sweep: SweepRuns, importance: Importance) -> None:
    """Log the importance table (CSV) and plot (PNG) to the sweep's parent run."""
    sweep.client.log_text(sweep.parent_run_id, importance.to_csv(), "importance/importance.csv")
    if importance.values:
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_importance(importance, Path(tmp) / "importance.png")
            sweep.client.log_artifact(sweep.parent_run_id, str(path), "importance")


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
