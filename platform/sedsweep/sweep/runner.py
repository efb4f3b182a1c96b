"""Run and resume sweeps: Ray Tune Tuner + Optuna searcher + scheduler + journaled tracking.

The runner knows nothing of reports: a caller that wants the comparison table logged when a
sweep ends passes an `on_finish` hook (the CLI passes `report.tables.log_sweep_tables`).

Tracking goes through the sweep's journal (`sedsweep.journal`): Tune's callbacks only append
events, and a drainer thread sends them to MLflow. A store that is down at the start is an
error before anything runs; one that goes away during the sweep only delays the record; one
still away at the end leaves the rest in the journal for `sedsweep sync`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from sedsweep.errors import UserError
from sedsweep.features import FeatureSet, build_features
from sedsweep.fsio import disk_full, no_space, writable_dir
from sedsweep.journal import JOURNAL_DIR, PARENT, Drainer, Notify
from sedsweep.metrics import selected_key
from sedsweep.processes import terminate_as_interrupt
from sedsweep.runspec import corpus_for, split_error
from sedsweep.sweep.cluster import check_address, pending_trials, ray_environment, start_ray
from sedsweep.sweep.execution import Execution, running
from sedsweep.sweep.live_journal import mirrored
from sedsweep.sweep.outcome import TABLES_HOOK, OnFinish, SweepOutcome, finish
from sedsweep.sweep.record import JOURNAL_FILE
from sedsweep.sweep.registry import make_scheduler
from sedsweep.sweep.seal import TRUST_OPTION, TUNER_FILE, pickled_files, seal, verify
from sedsweep.sweep.snapshot import (
    check_experiment_state,
    ended_short,
    newest_state,
    recreate_deleted_checkpoints,
    reopen_ended_short,
)
from sedsweep.sweep.spec import (
    CheckpointPolicy,
    SweepPlan,
    SweepSpec,
    check_selection_split,
    conditions,
    data_key,
    plan_sweep,
    trial_method_config,
)
from sedsweep.sweep.state import STATE_FILE, SweepState, find_state
from sedsweep.sweep.tracker import DRAIN_TIMEOUT_S, Tracker, TrackingMode, tracking_environment
from sedsweep.tracking import (
    GIT_COMMIT_TAG,
    METHOD_TAG,
    OPTUNA_VERSION_TAG,
    PLANNED_TAG,
    RAY_VERSION_TAG,
    SPEC_ARTIFACT,
    SWEEP_NAME_TAG,
    adopt_credentials,
    display_uri,
    probe,
    relocate_artifacts,
    run_tags,
    run_url,
    sqlite_db,
    tracking_uri_for,
    ui_base,
)


def _features(plan: SweepPlan, workdir: Path) -> dict[str, FeatureSet]:
    """Each data variant's corpus and features, built (or loaded from the cache) once here."""
    out = {}
    for variant in plan.data_variants:
        corpus = corpus_for(plan.variant_run(variant), workdir)
        out[data_key(variant)] = build_features(
            corpus, plan.base.feature_params, workdir / "feature-cache"
        )
    return out


# Above this, `resources.features: auto` maps the cache on a remote cluster too: every node
# pulling several GB through the object store costs more than a shared --workdir.
OBJECT_STORE_MAX_BYTES = 2 << 30


def transported(features: dict[str, FeatureSet], how: str, local: bool) -> dict[str, FeatureSet]:
    """The feature sets as trials will receive them (`Resources.features`): mapped ones pickle
    by reference (each trial maps the cache entry read-only and reads the pages it touches),
    in-memory ones by value through Ray's object store."""
    if how == "auto":
        large = sum(f.nbytes for f in features.values()) > OBJECT_STORE_MAX_BYTES
        how = "map" if local or large else "object_store"
    if how == "map":
        return features
    return {key: fs.in_memory() for key, fs in features.items()}


def check_method(plan: SweepPlan, features: dict[str, FeatureSet]) -> list[str]:
    """Build the method once per data variant with the sweep's base config, on the CPU here:
    a corpus the method cannot train on (a single fold leaves no training split, a split
    names folds the corpus lacks) is one line before the sweep's run exists, not the same
    error inside every trial. Returns the warnings the splits give (`Splits.notes`)."""
    import torch

    from sedsweep.methods import get_method

    method_cls = get_method(plan.spec.method)
    base = plan.base.config.model_dump(mode="json")
    notes = []
    for variant in plan.data_variants:
        fs = features[data_key(variant)]
        cfg = trial_method_config(method_cls, base, variant, plan.base_epochs)
        try:
            splits = method_cls(cfg, fs, torch.device("cpu")).splits
        except ValueError as exc:
            raise split_error(exc, fs.folds, plan.source) from None
        check_selection_split(plan, splits, fs.folds)
        notes += [f"warning: {plan.source}: {note}" for note in splits.notes(fs.weak, fs.classes)]
    return notes


PREPARE_JOIN_S = 60.0  # the longest a failed start waits for `_prepare` (seconds, usually 3)


def _prepare(plan: SweepPlan, features: dict[str, FeatureSet]) -> list[str]:
    """What the driver does before `fit()` that needs no Ray, run while `start_ray` starts a
    local cluster (a CPU-bound 6 s on 2 cores that leaves a third of them idle): Tune's modules
    imported (2.8 s), matplotlib's for the figures at the end (0.6 s) and `check_method`
    (3.2 s: a first optimiser imports `torch._dynamo`). Returns `check_method`'s warnings."""
    import matplotlib.backends.backend_agg  # the figures use Figure, never pyplot
    import matplotlib.figure  # noqa: F401
    from ray import tune  # noqa: F401

    from sedsweep.sweep import figures, search, tracking_callback, trainable  # noqa: F401

    return check_method(plan, features)


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sweep(
    plan: SweepPlan,
    *,
    workdir: Path,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    on_finish: OnFinish | None = None,
    tracking: TrackingMode = "async",
    drain_timeout: float = DRAIN_TIMEOUT_S,
    notify: Notify = _print,
) -> SweepOutcome:
    """Start a new execution of the sweep and wait for it.

    The tracking store is asked first (unless `tracking="offline"`): one that does not answer is
    a UserError before any corpus, Ray or run exists.
    """
    ray_environment()
    tracking_environment()
    check_address(address)  # the cheap refusals first: nothing is created before them
    storage_path = writable_dir(storage, "--storage") if storage else None
    workdir = writable_dir(workdir, "--workdir")
    storage_path = storage_path or workdir / "ray"
    uri = tracking_uri_for(workdir, tracking_uri)
    if tracking != "offline":
        probe(uri)
    features = _features(plan, workdir)
    pool = ThreadPoolExecutor(1, thread_name_prefix="sedsweep-prepare")
    prepared = pool.submit(_prepare, plan, features)  # while Ray starts
    pool.shutdown(wait=False)  # the one task still runs
    execution = uuid.uuid4().hex
    # unique per execution: two sweeps of one file started in the same second get two
    # directories (and two resumable states), never one shared Ray experiment
    exp_name = f"{plan.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{execution[:6]}"
    state = SweepState(
        experiment=exp_name,
        path=str(storage_path / exp_name),
        workdir=str(workdir),
        tracking_uri=uri,
        experiment_id="",
        parent_run_id="",
        source=plan.source,
        spec=plan.spec.model_dump(mode="json"),
        execution=execution,
        offline=tracking == "offline",
    )
    if earlier := earlier_executions(storage_path, plan.spec.name):
        notify(
            f"sweep {plan.spec.name} has {len(earlier)} earlier execution(s) in {storage_path} "
            f"(newest {earlier[-1].name}): this is execution {len(earlier) + 1}, {exp_name}; "
            "tables of the name read the newest"
        )
    try:
        start_ray(plan, address)
    except BaseException:
        futures.wait([prepared], PREPARE_JOIN_S)  # not torch half-imported at the exit
        raise
    for line in prepared.result():  # its errors after Ray's: the cluster is the cheaper check
        print(line, file=sys.stderr, flush=True)
    tracker = Tracker(state, Path(state.path), tracking, notify)
    state.save()  # resumable from here: a driver killed now leaves a journal to finish
    journal = tracker.journal
    journal.experiment(plan.spec.name)
    journal.create(PARENT, exp_name, _parent_tags(plan, features))
    journal.text(PARENT, yaml.safe_dump(state.spec, sort_keys=False), SPEC_ARTIFACT)
    if not state.offline:
        try:
            tracker.drainer.drain()  # the parent exists before any trial runs
        except Exception as exc:
            tracker.journal.close()
            shutil.rmtree(state.path, ignore_errors=True)  # nothing of it ran
            raise UserError(
                f"MLflow tracking store failed while creating the sweep's parent run ({exc})",
                where=display_uri(uri),
            ) from None
        tracker.record_ids()  # saves the state with the store's ids
        notify(_where(state))
    return _fit(Execution(plan, state, tracker, features, address, False, on_finish, drain_timeout))


def earlier_executions(storage: Path, name: str) -> list[Path]:
    """The Ray directories of earlier executions of sweep `name` under `storage` (those that
    got as far as saving their state), oldest first."""
    stamp = re.compile(re.escape(name) + r"-\d{8}-\d{6}-[0-9a-f]{6}")
    found = [d for d in storage.glob("*") if stamp.fullmatch(d.name)]
    return sorted((d for d in found if (d / STATE_FILE).is_file()), key=lambda d: d.name)


def _where(state: SweepState) -> str:
    url = run_url(ui_base(state.tracking_uri), state.experiment_id, state.parent_run_id)
    return f"MLflow parent run {state.parent_run_id} in {display_uri(state.tracking_uri)}: {url}"


def resume_sweep(
    target: Path,
    *,
    address: str | None = None,
    on_finish: OnFinish | None = None,
    drain_timeout: float = DRAIN_TIMEOUT_S,
    notify: Notify = _print,
    trust_unsealed: bool = False,
) -> SweepOutcome:
    """Restore an interrupted sweep (Tuner.restore) and finish its remaining trials; tracking
    continues from the journal's last acknowledged event.

    Every file Ray would unpickle must match the seal its driver wrote (`sweep.seal`), else a
    UserError before anything is touched; `trust_unsealed` seals them as they are instead
    (the user vouches for them: a sweep from before sealing)."""
    ray_environment()
    tracking_environment()
    check_address(address)
    state_file = find_state(target)
    state = SweepState.load(state_file)
    # what Tune will restore is checked first: a refused state stops here, nothing touched
    from sedsweep.sweep.search import check_saved_state

    experiment = Path(state.path)
    if trust_unsealed:
        seal(experiment, pickled_files(experiment))
        notify(f"note: {TRUST_OPTION}: the Ray state in {experiment} is sealed as it is now")
    verify(experiment)
    check_experiment_state(experiment)
    check_saved_state(experiment)
    state.save()  # paths as resolved from where the sweep is now (a copy, a move)
    if not state.offline:
        probe(state.tracking_uri)
        _relocate_store(state, notify)
    plan = plan_sweep(SweepSpec.model_validate(state.spec), state.source)
    features = _features(plan, Path(state.workdir))
    tracker = Tracker(state, state_file.parent, "async", notify)
    tracker.journal.status(PARENT, "RUNNING")
    return _fit(Execution(plan, state, tracker, features, address, True, on_finish, drain_timeout))


def _relocate_store(state: SweepState, notify: Notify) -> None:
    """A copied or moved work directory's own SQLite store writes its artifacts into its own
    `mlartifacts`, not the original's (`tracking.relocate_artifacts`). A store outside the
    work directory is shared with the original and left as it is."""
    db = sqlite_db(state.tracking_uri)
    if db is None or not db.resolve().is_relative_to(Path(state.workdir).resolve()):
        return
    moved = relocate_artifacts(state.tracking_uri)
    if moved:
        notify(f"note: the store's artifact locations moved from {moved[0]} to {moved[1]} "
               "(a copied or moved work directory)")  # fmt: skip


@dataclass
class SyncOutcome:
    """What `sync_sweep` sent, and where."""

    uri: str
    sent: int
    pending: int
    parent_run_id: str | None
    ui_url: str | None
    error: str | None = None


def sync_sweep(
    target: Path,
    *,
    tracking_uri: str | None = None,
    on_finish: OnFinish | None = None,
    notify: Notify = _print,
) -> SyncOutcome:
    """Replay a sweep's journal into its tracking store (or into `tracking_uri`, e.g. another
    server); what the store has already acknowledged is skipped. When the replay reaches the
    point where the sweep logged its tables, `on_finish` logs them in this store too."""
    tracking_environment()
    state_file = find_state(target)
    state = SweepState.load(state_file)
    uri = adopt_credentials(tracking_uri) if tracking_uri else state.tracking_uri
    probe(uri)
    if not tracking_uri:
        _relocate_store(state, notify)

    def hook(name: str, drainer: Drainer) -> None:
        parent = drainer.run_id(PARENT)
        if name == TABLES_HOOK and on_finish is not None and parent is not None:
            spec = SweepSpec.model_validate(state.spec)
            plan = plan_sweep(spec, state.source, check_data=False)  # the corpus may be elsewhere
            on_finish(SweepOutcome(state.spec["name"], state_file.parent, parent, uri,
                                   plan.n_trials))  # fmt: skip

    drainer = Drainer(
        state_file.parent / JOURNAL_DIR, uri, execution=state.execution, on_hook=hook,
        notify=notify,
    )  # fmt: skip
    error = None
    sent = 0
    try:
        sent = drainer.drain()
    except UserError:
        raise
    except Exception as exc:  # the store went away during the replay
        error = " ".join(str(exc).split())[:200] or type(exc).__name__
    parent = drainer.run_id(PARENT)
    if display_uri(uri) == display_uri(state.tracking_uri) and parent and not state.parent_run_id:
        state.experiment_id, state.parent_run_id = drainer.ack.experiment_id or "", parent
        state.save()
    url = None
    if parent and drainer.ack.experiment_id:
        url = run_url(ui_base(uri), drainer.ack.experiment_id, parent)
    return SyncOutcome(display_uri(uri), sent, drainer.pending(), parent, url, error)


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


class _TuneRestoreHint(logging.Filter):
    """Drops Tune's "Resume experiment with: Tuner.restore(...)" warning after an interrupt: a
    sweep resumes with `sedsweep resume DIR` (seals verified, tracking reopened), the one
    recipe the CLI prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


@contextlib.contextmanager
def _without_tune_restore_hint() -> Iterator[None]:
    """While `fit()` runs, Tune's own resume hint is not logged."""
    hint = _TuneRestoreHint()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addFilter(hint)
    try:
        yield
    finally:
        tune_logger.removeFilter(hint)


def _fit(execution: Execution) -> SweepOutcome:
    """Run the execution's trials with Ray Tune (a new Tuner, or `Tuner.restore` of its Ray
    directory) and close its record (`outcome.finish`)."""
    from ray import tune

    from sedsweep.sweep.search import OptunaPruningSearch
    from sedsweep.sweep.tracking_callback import SealCallback, TrackingCallback
    from sedsweep.sweep.trainable import run_trial

    plan, state, tracker, address = (
        execution.plan,
        execution.state,
        execution.tracker,
        execution.address,
    )
    s = plan.spec
    tracker.start()
    try:
        start_ray(plan, address)
        base_config = plan.base.config.model_dump(mode="json")
        # The small arguments travel with the function; only the features go through the
        # object store, which `with_parameters` reads again at every trial (an actor's reuse
        # included): one `ray.get` per trial instead of one per argument.
        bound = functools.partial(
            run_trial, method=s.method, base_config=base_config, epochs=plan.base_epochs,
            threads=s.resources.threads, policy=CheckpointPolicy.of(s, plan.epochs),
            deterministic=s.search.reproducible,
        )  # fmt: skip
        bound.__name__ = run_trial.__name__  # names the trials' folders: run_trial_<id>
        trainable = tune.with_resources(
            tune.with_parameters(
                bound,
                features=transported(execution.features, s.resources.features, address is None),
            ),
            {"cpu": s.resources.cpu, "gpu": s.resources.gpu},
        )
        if execution.resume:
            reopened = reopen_ended_short(Path(state.path), ended_short(tracker.journal))
            for trial_id in reopened:
                tracker.notify(f"trial {trial_id} ended short with no stop decision: running again")
            if reopened:
                seal(Path(state.path), [newest_state(Path(state.path))])
            recreate_deleted_checkpoints(Path(state.path))
            tuner = tune.Tuner.restore(
                state.path, trainable=trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            callback = TrackingCallback(
                str(tracker.journal.directory), method=s.method, base_config=base_config,
                epochs=plan.base_epochs, tags={METHOD_TAG: s.method, SWEEP_NAME_TAG: s.name},
                when=conditions(s.space), objective=s.primary.metric, maximise=s.primary.maximise,
            )  # fmt: skip
            search = OptunaPruningSearch(plan)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=selected_key(s.primary.metric),
                    mode=s.primary.mode,
                    search_alg=search,
                    scheduler=make_scheduler(plan, search),  # may share the searcher's record
                    num_samples=plan.n_trials,  # the searcher limits trials in flight
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=state.experiment,
                    storage_path=str(Path(state.path).parent),
                    callbacks=[callback, SealCallback()],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    failure_config=tune.FailureConfig(max_failures=s.budget.max_failures),
                    verbose=0,  # progress comes from the tracking callback
                ),
            )
            seal(Path(state.path), [Path(state.path) / TUNER_FILE])  # written by Tuner()
        started = time.perf_counter()
        live = mirrored(Path(state.path) / JOURNAL_FILE)  # optuna-dashboard follows the sweep
        ahead = pending_trials(plan)  # the actors of trials that may run at once start together
        quiet = _without_tune_restore_hint()
        with running(execution), terminate_as_interrupt(), quiet, live, ahead:
            results = tuner.fit()
        tracker.phases["fit_s"] = time.perf_counter() - started
    except BaseException as exc:
        # The execution ends here without an outcome: record it as such, as far as possible
        # (with a full disk the journal may refuse even that: the resume records it).
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        full = disk_full(exc)
        with contextlib.suppress(OSError, UserError) if full else contextlib.nullcontext():
            tracker.close_open_children("KILLED")
            tracker.journal.status(PARENT, status)
        tracker.settle(min(execution.drain_timeout, 10.0))
        tracker.stop()
        if full:
            resume = f"resume with: sedsweep resume {state.path}"
            raise no_space(full.filename or state.path, resume) from None
        raise
    return finish(execution, results)
