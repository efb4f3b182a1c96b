"""Constructed sweeps: a sweep's runs written to a real SQLite MLflow store as the engine writes
them (parent with its spec, one child per trial), so that values, marks and rankings are known
exactly. Shared by the report, layer and packaging tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from sedsweep.journal import MAX_BATCH_METRICS, MAX_BATCH_PARAMS
from sedsweep.sweep.spec import SweepSpec, plan_sweep, trial_config
from sedsweep.tracking import (
    OPTUNA_NUMBER_TAG,
    PARENT_TAG,
    PLANNED_TAG,
    SPEC_ARTIFACT,
    TRIAL_TAG,
    RunWriter,
    ensure_experiment,
    flat_params,
    tracking_uri_for,
)

ROOT = Path(__file__).resolve().parents[1]
# every search-space file the repository ships: the examples and the evidence files
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml")) + sorted(
    (ROOT / "search_spaces" / "evidence").glob("*.yaml")
)


def log_sweep(
    workdir: Path, spec: dict[str, Any], trials: list[dict[str, Any]], epochs: int = 2
) -> str:
    """Write a sweep as the engine does: parent (spec, tags) + one child per trial.

    Each trial is {"overrides": {...}, "metrics": {key: final value}, "status": ...,
    "epochs": n (default `epochs`), "flat": bool}; the metric history ramps up to the final
    value over its epochs, so a value at epoch e is final × e / n, unless `flat` (every epoch
    at the final value: a converged curve). `chance/…` reference levels are constants.
    """
    sweep = SweepSpec.model_validate(spec)
    plan_base = plan_sweep(sweep, sweep.name).base.config.model_dump(mode="json")
    client = MlflowClient(tracking_uri_for(workdir))
    exp = ensure_experiment(client, sweep.name, workdir / "mlartifacts")
    parent = RunWriter.start(client, exp, f"{sweep.name}-x", tags={PLANNED_TAG: str(len(trials))})
    client.log_dict(parent.run_id, sweep.model_dump(mode="json"), SPEC_ARTIFACT)
    now = int(time.time() * 1000)
    for n, trial in enumerate(trials):
        child = RunWriter.start(
            client, exp, f"t{n:03d}",
            tags={PARENT_TAG: parent.run_id, TRIAL_TAG: f"t{n}", OPTUNA_NUMBER_TAG: str(n),
                  **trial.get("tags", {})},
        )  # fmt: skip
        data = {k: v for k, v in trial["overrides"].items() if k.startswith("data.")}
        full = trial_config(plan_base, trial["overrides"], epochs)
        params = flat_params({"method": sweep.method, **full, **data})
        n = trial.get("epochs", epochs)  # a pruned trial stops early
        history = []
        for step in range(1, n + 1):
            scale = 1.0 if trial.get("flat") else step / n
            values = {k: v if k.startswith("chance/") else v * scale
                      for k, v in trial["metrics"].items()}  # fmt: skip
            history += [
                Metric(k, float(v), now, step) for k, v in {**values, "epoch": step}.items()
            ]
        _log(client, child.run_id, [Param(k, v) for k, v in params.items()], history)
        child.finish(trial.get("status", "FINISHED"))
    parent.finish("FINISHED")
    return parent.run_id


def _log(client: MlflowClient, run_id: str, params: list[Param], metrics: list[Metric]) -> None:
    """Params and metrics in as few `log_batch` calls as MLflow's limits allow (the journal's
    drainer keeps to the same ones)."""
    p, m = MAX_BATCH_PARAMS, MAX_BATCH_METRICS
    for i in range(max(-(-len(params) // p), -(-len(metrics) // m))):
        client.log_batch(
            run_id, params=params[i * p : (i + 1) * p], metrics=metrics[i * m : (i + 1) * m]
        )


def grid_spec(name: str = "grid", columns: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "method": "whenwho",
        "scale": "tiny",
        "objective": {"metric": "val/when_frame_auc", "mode": "max"},
        "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"},
        "space": {
            "when_loss": {"type": "grid", "values": ["mmm", "max", "noisy_or"]},
            **({"data.options.seed": {"type": "grid", "values": [3, 4]}} if columns else {}),
        },
        "replicates": {"seed": [0, 1, 2]},
        "table": {
            "rows": ["when_loss"],
            "columns": columns or [],
            "metrics": ["val/when_frame_auc", "test/when_segment_er"],
            "replicates": ["seed"],
        },
    }


# Per row: replicate values of val/when_frame_auc (higher better) and test/when_segment_er
# (lower better). "mmm" is best on AUC; "noisy_or" overlaps it (a tie); "max" is far below.
AUC = {"mmm": [0.90, 0.91, 0.92], "max": [0.80, 0.81, 0.82], "noisy_or": [0.89, 0.93, 0.86]}
ER = {"mmm": [0.30, 0.32, 0.31], "max": [0.20, 0.21, 0.19], "noisy_or": [0.40, 0.42, 0.41]}


def grid_trials(extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "overrides": {"when_loss": loss, "seed": seed, **(extra or {})},
            "metrics": {
                "val/when_frame_auc": AUC[loss][seed],
                "test/when_segment_er": ER[loss][seed],
            },
        }
        for loss in AUC
        for seed in range(3)
    ]
