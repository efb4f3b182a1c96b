"""The sweep dashboard's data: everything the static page shows, read from MLflow.

`sweep_payload` gathers the leaderboard (every trial, pruned ones at the epoch they stopped),
the comparison table, parameter importance (and the rung it was computed at), search
progress, learning curves of every trial (the first `top` of the leaderboard), the Pareto front
and hypervolume of a multi-objective sweep, the claim checks and the best trial's figures;
`build_dashboard` hands them to the renderer (report/render.py, templates in
report/templates/), which writes one self-contained HTML page.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError
from sedsweep.report.importance import param_importance
from sedsweep.report.runs import COMPLETED, PRUNED, SweepRuns
from sedsweep.report.tables import build_table
from sedsweep.tracking import FIGURES_DIR, run_url, ui_base

TOP_CURVES = 40  # learning curves drawn: completed and pruned trials, leaderboard order


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def _display_value(value: Any) -> Any:
    """A scalar as it is; anything else (a list-valued key) as its text, one axis value."""
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def sweep_payload(
    sweep: SweepRuns,
    *,
    mlflow_url: str | None = None,
    top: int = TOP_CURVES,
    evaluator: str = "ped-anova",
) -> dict[str, Any]:
    """The dashboard payload (see report/templates/sweep.js for how each part is drawn)."""
    base = ui_base(sweep.tracking_uri, mlflow_url)
    keys = sweep.searched_keys + [k for k in sweep.replicate_keys if k not in sweep.searched_keys]
    metric = sweep.objective
    pareto = _pareto(sweep)
    front = set(pareto["front"]) if pareto else set()
    leaderboard = sweep.leaderboard()
    rank = {t.run_id: i for i, t in enumerate(leaderboard)}
    trials = [
        {
            "rank": rank[t.run_id],
            "run_id": t.run_id,
            "name": t.name,
            "number": t.number,
            "status": t.status,
            "params": {k: _display_value(t.value(k)) for k in keys},
            "objective": t.metric(metric),
            "metrics": {
                k: v
                for k in t.metrics
                if k.startswith(("val/", "test/")) and (v := t.metric(k)) is not None
            },
            "url": run_url(base, sweep.experiment_id, t.run_id),
            "start_time": t.start_time,
            "epochs": t.epochs,
            "selected_epoch": t.selected_epoch,
            "pareto": t.run_id in front if pareto else None,
            "valid": (v := sweep.validity(t)).tag if t.status in (COMPLETED, PRUNED) else None,
            "invalid_reason": v.reason if t.status in (COMPLETED, PRUNED) else "",
        }
        for t in sweep.trials
    ]
    ranked = sweep.ranked()
    drawn = [t for t in leaderboard if t.status in (COMPLETED, PRUNED)][:top]
    curves = [
        {
            "run_id": t.run_id,
            "label": f"{t.name} ({metric} {t.metric(metric):.4f}"
            + (f", pruned at epoch {t.epochs})" if t.status == PRUNED else ")"),
            "metric": metric,
            "status": t.status,
            "points": [[step, value] for step, value in sweep.history(t.run_id, metric)],
        }
        for t in drawn
        if t.metric(metric) is not None
    ]
    notes: list[str] = [sweep.selection_note]
    if (left := sweep.left_out(COMPLETED, PRUNED)) is not None:
        notes.append(left)
    if len(drawn) < len(sweep.with_status(COMPLETED, PRUNED)):
        notes.append(f"learning curves: the first {top} trials of the leaderboard")
    tables = []
    try:
        table = build_table([sweep], with_paper=True)
        tables.append(
            {
                "title": "Comparison table (papers' numbers where cells match)",
                "html": table.render("html"),
            }
        )
    except UserError as exc:
        notes.append(f"no comparison table: {exc}")
    importance = param_importance(sweep, evaluator)
    for part in [importance, *importance.subspaces]:
        if part.note:
            notes.append(
                part.note if part.subspace is None else f"where {part.subspace}: {part.note}"
            )
        notes += [f"importance: {w}" for w in part.warnings]
    claims = None
    if sweep.spec.claims:
        from sedsweep.report.claims import check_claims

        claims = {"html": check_claims(sweep).render("html")}
    best = ranked[0] if ranked else None
    counts = sweep.counts
    return {
        "sweep": {
            "name": sweep.name,
            "method": sweep.spec.method,
            "parent_run_id": sweep.parent_run_id,
            "experiment_id": sweep.experiment_id,
            "tracking_uri": sweep.tracking_uri,
            "mlflow_url": base,
            "objective": {"metric": metric, "mode": sweep.spec.primary.mode},
            "started": _iso(sweep.start_time),
            "status": sweep.parent_status,
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "counts": counts,
        "trials": trials,
        "searched": keys,
        "curves": curves,
        "tables": tables,
        "importance": {
            "evaluator": importance.evaluator,
            "target": importance.target,
            "basis": "; ".join(
                b for b in [importance.basis, *(p.basis for p in importance.subspaces)] if b
            ),
            "values": [[k, v] for k, v in importance.labelled()],
        }
        if importance.computed
        else None,
        "best": {
            "run_id": best.run_id,
            "name": best.name,
            "objective": best.metric(metric),
            "params": {k: _display_value(best.value(k)) for k in keys},
            "url": run_url(base, sweep.experiment_id, best.run_id),
        }
        if best
        else None,
        "figures": [],
        "notes": notes,
        "pareto": pareto,
        "claims": claims,
    }


def _pareto(sweep: SweepRuns) -> dict[str, Any] | None:
    """A Pareto sweep's completed trials in objective space, its front and the hypervolume of
    the front after each trial (reference: the worst value of each objective)."""
    from sedsweep.report.best import objective_points, pareto_front
    from sedsweep.report.pareto import hypervolume_progress, reference_point

    if not sweep.spec.multi_objective:
        return None
    objectives = sweep.spec.objectives
    trials, mask = pareto_front(sweep)
    metrics = [o.metric for o in objectives]
    maximise = [o.maximise for o in objectives]
    order = sorted(range(len(trials)), key=lambda i: (trials[i].number or 0, trials[i].start_time))
    points = objective_points(sweep, [trials[i] for i in order])
    progress: list[list[float]] = []
    reference: list[float] | None = None
    if len(trials):
        ref = reference_point(points, maximise)
        reference = [float(v) for v in ref]
        volumes = hypervolume_progress(points, maximise, ref)
        numbers = [trials[i].number for i in order]
        progress = [
            [k if n is None else n, v]
            for k, (n, v) in enumerate(zip(numbers, volumes, strict=True))
        ]
    return {
        "metrics": metrics,
        "modes": [o.mode for o in objectives],
        "points": [
            {
                "run_id": t.run_id,
                "name": t.name,
                "values": [t.metric(m) for m in metrics],
                "front": bool(on),
            }
            for t, on in zip(trials, mask, strict=True)
        ],
        "front": [t.run_id for t, on in zip(trials, mask, strict=True) if on],
        "reference": reference,
        "hypervolume": progress,
    }


def _best_figures(sweep: SweepRuns, run_id: str, dest: Path) -> dict[str, Path]:
    """Download the best trial's logged figures; names as the page references them."""
    files = [a.path for a in sweep.client.list_artifacts(run_id, FIGURES_DIR) if not a.is_dir]
    out = {}
    for path in files:
        local = sweep.client.download_artifacts(run_id, path, str(dest))
        out[f"{FIGURES_DIR}/{Path(path).name}"] = Path(local)
    return out


def build_dashboard(
    sweep: SweepRuns,
    out: Path,
    *,
    overwrite: bool = False,
    mlflow_url: str | None = None,
    top: int = TOP_CURVES,
    evaluator: str = "ped-anova",
) -> Path:
    """Write the dashboard of `sweep` to `out/index.html` (nothing half-written on failure)."""
    from sedsweep.fsio import check_output_dir
    from sedsweep.report.render import render_dashboard

    check_output_dir(out, overwrite)  # refuse before any work
    payload = sweep_payload(sweep, mlflow_url=mlflow_url, top=top, evaluator=evaluator)
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        if payload["best"] is not None:
            figures = _best_figures(sweep, payload["best"]["run_id"], Path(tmp))
            payload["figures"] = [
                {"title": Path(name).stem.replace("_", " "), "path": name}
                for name in sorted(figures)
            ]
        return render_dashboard(payload, out, figures, overwrite=overwrite)
