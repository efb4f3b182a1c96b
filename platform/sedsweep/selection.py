"""Pick a sweep's best configuration, optionally confirm it over fresh seeds, export and test it.

Selection reads only the sweep's objective (a validation metric — the sweep spec refuses a
test one) of completed trials. `confirm_top` re-runs the top K configurations with S fresh
seeds as a small follow-up grid sweep on the same engine and ranks them by the mean objective
over those seeds only (the original run is left out: it was selected for being lucky). The
chosen configuration is then trained once more as a complete, portable run spec (`best.yaml`):
that run is the only place the test split is looked at, and its test metrics are reported
apart from the validation numbers used to choose. The rankings and the report text are
`sedsweep.report.best`; this module runs things.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from sedsweep.errors import UserError
from sedsweep.fsio import write_yaml
from sedsweep.report.best import (
    SEED_KEY,
    BestReport,
    Confirmation,
    Ranked,
    candidate_overrides,
    fresh_seeds,
    parse_pick_rule,
    pick_from_front,
    rank_by_validation,
    render_report,
)
from sedsweep.report.importance import Importance, param_importance, plot_importance
from sedsweep.report.runs import (
    COMPLETED,
    PRUNED,
    SweepRuns,
    TrialRun,
    load_sweep_runs,
    short_name,
)
from sedsweep.report.tables import log_sweep_tables
from sedsweep.runspec import Resolved, RunSpec, resolve
from sedsweep.sweep.runner import run_sweep
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
from sedsweep.tracking import (
    BEST_DIR,
    BEST_FINAL_RUN_TAG,
    BEST_OF_TAG,
    BEST_REPORT,
    BEST_RUN_TAG,
    IMPORTANCE_CSV,
    IMPORTANCE_DIR,
    PARENT_TAG,
    ROLE_TAG,
    RunWriter,
    register_champion,
    run_name,
)
from sedsweep.train import train


def confirm_spec(sweep: SweepRuns, top: list[Ranked], seeds: list[int]) -> SweepSpec:
    """A grid sweep of the top configurations (one cell each) × the fresh seeds."""
    cells = [candidate_overrides(sweep, r.trial, keep_seed=False) for r in top]
    keys = list(dict.fromkeys(k for cell in cells for k in cell))  # conditional keys: some
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


ARMS = ("all", "best")  # --arms: the top K of every arm of the table's rows, or overall


def arm_of(sweep: SweepRuns, trial: TrialRun) -> tuple:
    """The arm a trial belongs to: its values of the table's row keys (the ablation's axis)."""
    return tuple(trial.value(k) for k in sweep.spec.table.rows)


def confirmation_candidates(
    sweep: SweepRuns, ranking: list[Ranked], k: int, arms: str = "all"
) -> list[Ranked]:
    """The configurations to confirm: the top `k` of every arm (`arms="all"`: each value of the
    table's row keys, so every arm the ablation compares is re-run; pruned trials count at the
    rung they reached, after the completed ones), or the top `k` overall (`"best"`, or a
    table without rows). Trials that did not train are never candidates; a configuration
    that several trials share (replicates) is one candidate."""
    if arms not in ARMS:
        raise UserError(f"expected one of {', '.join(ARMS)}, not {arms!r}", where="--arms")
    if arms == "best" or not sweep.spec.table.rows:
        pool = ranking
    else:
        pool = [
            Ranked(t, [value])
            for t in sweep.leaderboard()
            if t.status in (COMPLETED, PRUNED) and sweep.validity(t).valid
            and (value := t.metric(sweep.objective)) is not None
        ]  # fmt: skip
    chosen: list[Ranked] = []
    seen: list[dict] = []
    taken: dict[tuple, int] = {}
    for r in pool:
        config = candidate_overrides(sweep, r.trial, keep_seed=False)
        arm = arm_of(sweep, r.trial) if arms == "all" else ()
        if config in seen or taken.get(arm, 0) >= k:
            continue
        seen.append(config)
        taken[arm] = taken.get(arm, 0) + 1
        chosen.append(r)
    return chosen


def confirm_top(
    sweep: SweepRuns,
    top: list[Ranked],
    seeds: int,
    *,
    workdir: Path,
    address: str | None = None,
    storage: str | None = None,
) -> Confirmation:
    """Re-run the configurations `top` with `seeds` fresh seeds; rank them by mean objective.

    The follow-up sweep logs its own table, like any sweep run from the command line.
    """
    chosen_seeds = fresh_seeds(sweep, seeds)
    spec = confirm_spec(sweep, top, chosen_seeds)
    plan = plan_sweep(spec, f"confirmation of {sweep.name}")
    outcome = run_sweep(
        plan, workdir=workdir, address=address, storage=storage, tracking_uri=sweep.tracking_uri,
        on_finish=log_sweep_tables,
    )  # fmt: skip
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
    arms = [arm_of(sweep, r.trial) for r in ranked] if sweep.spec.table.rows else []
    return Confirmation(follow, chosen_seeds, ranked, arms)


def resolved_for(sweep: SweepRuns, trial: TrialRun) -> Resolved:
    """The chosen trial as a complete, validated training run (config, features, data)."""
    plan = plan_sweep(sweep.spec, sweep.name)
    overrides = candidate_overrides(sweep, trial)
    config = trial_config(
        plan.base.config.model_dump(mode="json"), config_part(overrides), plan.base_epochs
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


def select_best(
    sweep: SweepRuns,
    *,
    out: Path,
    workdir: Path,
    confirm: int = 0,
    seeds: int = 3,
    arms: str = "all",
    register: str | None = None,
    evaluator: str = "ped-anova",
    device: str | None = None,
    address: str | None = None,
    storage: str | None = None,
    pick: str | None = None,
    say: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> BestReport:
    """The whole `sedsweep best`: select, (confirm), export, test once, log, (register).

    best.yaml holds every config field spelled out and the data as the sweep declared it. A
    Pareto sweep's choice is the `pick` rule's point of the front (default: the knee).
    `confirm` > 0 re-runs the top `confirm` configurations of every arm of the table's rows
    (`arms="all"`) or overall (`"best"`) on `seeds` fresh seeds, and chooses by their mean. `say`
    hears what it is doing at each phase, `on_epoch` each epoch of the re-training.
    """
    tell = say or (lambda line: None)
    if confirm < 0 or seeds < 1:
        raise UserError("needs --confirm-top >= 0 and --seeds >= 1", where="--confirm-top/--seeds")
    rule = parse_pick_rule(sweep, pick)
    if rule is not None and confirm:
        raise UserError(
            "ranks by one objective: not for a Pareto sweep (use --pick)", where="--confirm-top"
        )
    ranking = rank_by_validation(sweep)
    tell(f"ranked {len(ranking)} completed trial(s) of {sweep.name} on {sweep.objective}")
    report = BestReport(sweep=sweep, validation=ranking, chosen=ranking[0], pick=rule)
    if rule is not None:
        chosen, report.front = pick_from_front(sweep, rule)
        report.chosen = next(r for r in ranking if r.trial.run_id == chosen.run_id)
    if confirm:
        top = confirmation_candidates(sweep, ranking, confirm, arms)
        per = " of each arm" if arms == "all" and sweep.spec.table.rows else ""
        tell(f"confirming the top {confirm}{per} ({len(top)} configurations) on {seeds} fresh "
             "seed(s): a sweep on Ray")  # fmt: skip
        report.confirmation = confirm_top(
            sweep, top, seeds, workdir=workdir, address=address, storage=storage
        )
        report.chosen = report.confirmation.ranking[0]
    resolved = resolved_for(sweep, report.chosen.trial)
    report.spec = resolved.to_spec()
    write_yaml(
        out,
        report.spec,
        f"Best configuration of sweep {sweep.name} (parent run {sweep.parent_run_id}),\n"
        f"trial {report.chosen.trial.name}: {sweep.objective} = {report.chosen.mean:.6g}.\n"
        f"Reproduce: sedsweep train --config {out.name}",
    )
    tell(
        f"re-training {report.chosen.trial.name} for {resolved.config.epochs} epochs (no Ray), "
        "then testing it once"
    )
    result = train(
        resolved,
        workdir=workdir,
        tracking_uri=sweep.tracking_uri,
        device=device,
        experiment=sweep.experiment_name,
        progress=False,
        on_epoch=on_epoch,
        log_model=True,
        threads=sweep.spec.resources.threads,  # as its trial ran, not on every core
        run_name=run_name(  # "best t003 when_loss=max optim.lr=0.003 …"
            f"best {short_name(report.chosen.trial)}",
            candidate_overrides(sweep, report.chosen.trial),
        ),
        tags={
            PARENT_TAG: sweep.parent_run_id,
            ROLE_TAG: "best",
            BEST_OF_TAG: report.chosen.trial.run_id,
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
    tell(f"logging the report and the parameter importance ({evaluator}) to the parent run")
    report.importance = param_importance(sweep, evaluator)
    parent = RunWriter(sweep.client, sweep.parent_run_id)
    sweep.client.log_text(parent.run_id, render_report(report), BEST_REPORT)
    sweep.client.log_artifact(parent.run_id, str(out), BEST_DIR)
    log_importance(sweep, report.importance)
    parent.set_tags({BEST_RUN_TAG: report.chosen.trial.run_id, BEST_FINAL_RUN_TAG: result.run_id})
    return report


def log_importance(sweep: SweepRuns, importance: Importance) -> None:
    """Log the importance table (CSV) and plot (PNG) to the sweep's parent run."""
    sweep.client.log_text(sweep.parent_run_id, importance.to_csv(), IMPORTANCE_CSV)
    if importance.computed:
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_importance(importance, Path(tmp) / "importance.png")
            sweep.client.log_artifact(sweep.parent_run_id, str(path), IMPORTANCE_DIR)
