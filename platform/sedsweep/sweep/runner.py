"""Run and resume sweeps: Ray Tune Tuner + Optuna searcher + scheduler + MLflow callback.

The runner knows nothing of reports: a caller that wants the comparison table logged when a
sweep ends passes an `on_finish` hook (the CLI passes `report.tables.log_sweep_tables`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError
from sedsweep.features import FeatureSet, build_features
from sedsweep.fsio import write_json
from sedsweep.spec import corpus_for
from sedsweep.sweep.spec import SweepPlan, SweepSpec, data_key, plan_sweep
from sedsweep.tracking import (
    BEST_METRIC_PREFIX,
    GIT_COMMIT_TAG,
    METHOD_TAG,
    OPTUNA_VERSION_TAG,
    PLANNED_TAG,
    RAY_VERSION_TAG,
    SPEC_ARTIFACT,
    SWEEP_NAME_TAG,
    RunWriter,
    client_for,
    count_tag,
    ensure_experiment,
    local_artifact_root,
    run_tags,
    tracking_uri_for,
)

STATE_FILE = "sedsweep.json"


def ray_environment() -> None:
    """Defaults every Ray process here needs (the same for driver and workers)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class SweepState:
    """What a sweep execution needs to be resumed: kept as `STATE_FILE` in its Ray directory."""

    experiment: str  # Ray Tune's experiment name: the sweep name and its start time
    path: str  # Ray Tune's experiment directory
    workdir: str  # corpora and the feature cache
    tracking_uri: str
    experiment_id: str  # MLflow's
    parent_run_id: str
    source: str  # the search-space file the sweep came from
    spec: dict[str, Any]  # the validated search-space spec as JSON

    def save(self) -> None:
        """Write the state file atomically into the sweep's directory."""
        write_json(Path(self.path) / STATE_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> SweepState:
        """Read a state file; an unreadable or incomplete one is a UserError naming it."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"unreadable sweep state ({exc})", where=path) from None
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if not isinstance(data, dict) or n not in data]
        if missing:
            raise UserError(f"sweep state lacks {', '.join(missing)}", where=path)
        return cls(**{n: data[n] for n in names})


@dataclass
class SweepOutcome:
    """What a sweep execution ended with."""

    name: str
    path: Path
    parent_run_id: str
    tracking_uri: str
    expected: int
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """Every trial ran (to the end or stopped by the scheduler) and none errored."""
        finished = self.counts.get("completed", 0) + self.counts.get("stopped_early", 0)
        return finished == self.expected and not self.counts.get("errored", 0)

    def summary(self) -> str:
        """One line for the terminal."""
        parts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items() if v)
        return f"sweep {self.name}: {parts or 'no trials'} of {self.expected} planned"


OnFinish = Callable[[SweepOutcome], None]
"""Called when a sweep's trials are done, before its parent run is marked finished."""


def _features(plan: SweepPlan, workdir: Path) -> dict[str, FeatureSet]:
    """Each data variant's corpus and features, built (or loaded from the cache) once here."""
    out = {}
    for variant in plan.data_variants:
        resolved = dataclasses.replace(
            plan.base, spec=plan.base.spec.model_copy(update={"data": plan.data_spec(variant)})
        )
        corpus = corpus_for(resolved, workdir)
        out[data_key(variant)] = build_features(
            corpus, plan.base.feature_params, workdir / "feature-cache"
        )
    return out


def run_sweep(
    plan: SweepPlan,
    *,
    workdir: Path,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_finish: OnFinish | None = None,
) -> SweepOutcome:
    """Start a new execution of the sweep and wait for it."""
    ray_environment()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    features = _features(plan, workdir)
    storage_path = Path(storage).resolve() if storage else workdir / "ray"
    exp_name = f"{plan.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    uri = tracking_uri_for(workdir, tracking_uri)
    client = client_for(uri)
    exp_id = ensure_experiment(client, plan.spec.name, local_artifact_root(uri, workdir))
    parent = RunWriter.start(client, exp_id, exp_name, tags=_parent_tags(plan, features))
    client.log_dict(parent.run_id, plan.spec.model_dump(mode="json"), SPEC_ARTIFACT)
    state = SweepState(
        experiment=exp_name,
        path=str(storage_path / exp_name),
        workdir=str(workdir),
        tracking_uri=uri,
        experiment_id=exp_id,
        parent_run_id=parent.run_id,
        source=plan.source,
        spec=plan.spec.model_dump(mode="json"),
    )
    state.save()
    return _fit(plan, state, features, address, restore=False, on_finish=on_finish)


def find_state(target: Path) -> Path:
    """The state file of a sweep directory, or of the newest sweep under a work directory."""
    if (target / STATE_FILE).is_file():
        return target / STATE_FILE
    found = sorted(target.glob(f"ray/*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(
            f"no sweep found (looked for {STATE_FILE} and ray/*/{STATE_FILE})", where=target
        )
    return found[-1]


def resume_sweep(
    target: Path, *, address: str | None = None, on_finish: OnFinish | None = None
) -> SweepOutcome:
    """Restore an interrupted sweep (Tuner.restore) and finish its remaining trials."""
    ray_environment()
    state = SweepState.load(find_state(target))
    plan = plan_sweep(SweepSpec.model_validate(state.spec), state.source)
    features = _features(plan, Path(state.workdir))
    client_for(state.tracking_uri).update_run(state.parent_run_id, status="RUNNING")
    return _fit(plan, state, features, address, restore=True, on_finish=on_finish)


def _parent_tags(plan: SweepPlan, features: dict[str, FeatureSet]) -> dict[str, str]:
    import optuna
    import ray

    fingerprints = ",".join(f.corpus_fingerprint for f in features.values())
    tags = {
        **run_tags(plan.spec.method, plan.spec.scale, fingerprints),
        RAY_VERSION_TAG: ray.__version__,
        OPTUNA_VERSION_TAG: optuna.__version__,
        PLANNED_TAG: str(plan.n_trials),
    }
    commit = _git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _scheduler(plan: SweepPlan) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    s = plan.spec.scheduler
    if s.type == "asha":
        return ASHAScheduler(
            max_t=plan.epochs, grace_period=min(s.grace_period, plan.epochs),
            reduction_factor=s.reduction_factor,
        )  # fmt: skip
    if s.type == "hyperband":
        return HyperBandScheduler(max_t=plan.epochs, reduction_factor=s.reduction_factor)
    if s.type == "median":
        return MedianStoppingRule(grace_period=s.grace_period)
    return FIFOScheduler()


def _fit(
    plan: SweepPlan,
    state: SweepState,
    features: dict[str, FeatureSet],
    address: str | None,
    restore: bool,
    on_finish: OnFinish | None,
) -> SweepOutcome:
    import ray
    from ray import tune

    from sedsweep.sweep.mlflow_callback import MlflowSweepCallback
    from sedsweep.sweep.search import OptunaPruningSearch
    from sedsweep.sweep.trainable import run_trial

    s = plan.spec
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,  # trial errors reach the driver (and MLflow) through Tune
        )
    if s.resources.gpu > 0 and ray.cluster_resources().get("GPU", 0) <= 0:
        raise UserError(
            "asks for GPUs but the Ray cluster has none", where=f"{plan.source}: resources.gpu"
        )
    base_config = plan.base.config.model_dump(mode="json")
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, features=features, method=s.method, base_config=base_config,
            epochs=plan.epochs, threads=int(s.resources.cpu),
        ),
        {"cpu": s.resources.cpu, "gpu": s.resources.gpu},
    )  # fmt: skip
    if restore:
        tuner = tune.Tuner.restore(
            state.path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        callback = MlflowSweepCallback(
            state.tracking_uri, state.experiment_id, state.parent_run_id,
            method=s.method, base_config=base_config, epochs=plan.epochs,
            tags={METHOD_TAG: s.method, SWEEP_NAME_TAG: s.name},
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=s.objective.metric,
                mode=s.objective.mode,
                search_alg=OptunaPruningSearch(plan),
                scheduler=_scheduler(plan),
                num_samples=plan.n_trials,
                max_concurrent_trials=s.budget.max_concurrent,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=state.experiment,
                storage_path=str(Path(state.path).parent),
                callbacks=[callback],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=s.budget.max_failures),
                verbose=1 if sys.stdout.isatty() else 0,
            ),
        )
    results = tuner.fit()
    return _outcome(plan, state, results, on_finish)


def _outcome(
    plan: SweepPlan, state: SweepState, results: Any, on_finish: OnFinish | None
) -> SweepOutcome:
    counts = {"completed": 0, "stopped_early": 0, "errored": 0, "missing": 0}
    for result in results:
        if result.error is not None:
            counts["errored"] += 1
        elif int((result.metrics or {}).get("training_iteration", 0)) >= plan.epochs:
            counts["completed"] += 1
        else:
            counts["stopped_early"] += 1
    counts["missing"] = max(plan.n_trials - len(results), 0)
    outcome = SweepOutcome(
        name=plan.spec.name,
        path=Path(state.path),
        parent_run_id=state.parent_run_id,
        tracking_uri=state.tracking_uri,
        expected=plan.n_trials,
        counts=counts,
    )
    parent = RunWriter(client_for(state.tracking_uri), state.parent_run_id)
    try:
        best = results.get_best_result(plan.spec.objective.metric, plan.spec.objective.mode, "last")
    except (RuntimeError, ValueError):
        best = None
    metric = plan.spec.objective.metric
    if best is not None and best.metrics and metric in best.metrics:
        outcome.best = {"config": best.config["overrides"], "metrics": dict(best.metrics)}
        parent.log_metrics({f"{BEST_METRIC_PREFIX}{metric}": best.metrics[metric]}, step=0)
    parent.set_tags({count_tag(k): str(v) for k, v in counts.items()})
    if on_finish is not None:
        on_finish(outcome)
    if counts["missing"]:
        parent.finish("KILLED")
    else:
        parent.finish("FINISHED" if outcome.complete else "FAILED")
    return outcome
