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
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sedsweep.errors import UserError
from sedsweep.features import FeatureSet, build_features
from sedsweep.fsio import writable_dir, write_json
from sedsweep.journal import JOURNAL_DIR, PARENT, Drainer, DrainerProcess, Journal, Notify
from sedsweep.metrics import selected_key
from sedsweep.progress import Progress
from sedsweep.signals import reaped_if_killed, terminate_as_interrupt
from sedsweep.spec import corpus_for, split_error
from sedsweep.sweep.figures import draw_figures
from sedsweep.sweep.record import RECORD_FILE, read_record, write_record
from sedsweep.sweep.spec import (
    EPOCH_KEY,
    CheckpointPolicy,
    SweepPlan,
    SweepSpec,
    conditions,
    data_key,
    epoch_of,
    plan_sweep,
    trial_method_config,
)
from sedsweep.tracking import (
    BEST_METRIC_PREFIX,
    ENDED_SHORT_TAG,
    GIT_COMMIT_TAG,
    METHOD_TAG,
    OPTUNA_VERSION_TAG,
    PLANNED_TAG,
    RAY_VERSION_TAG,
    SPEC_ARTIFACT,
    SQLITE,
    STOPPED_EARLY_TAG,
    SWEEP_NAME_TAG,
    TRACE_TAG,
    adopt_credentials,
    all_finished,
    count_tag,
    display_uri,
    probe,
    run_tags,
    run_url,
    sqlite_db,
    tracking_uri_for,
    ui_base,
)

TrackingMode = Literal["async", "inline", "offline"]
"""async: a background thread sends the journal (the default); offline: nothing is sent (a
later `sedsweep sync` does); inline: each event is sent from the thread that journals it, as
trackers without a journal do (kept to measure what the journal saves: bench_tracking.py)."""

DRAIN_TIMEOUT_S = 120.0
TABLES_HOOK = "tables"

STATE_FILE = "sedsweep.json"


def ray_environment() -> None:
    """Defaults every Ray process here needs (the same for driver and workers). Ray's token
    authentication stays as Ray sets it (on for a new local cluster in Ray 2.60)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def tracking_environment() -> None:
    """MLflow client defaults for a driver with a journal: a request fails within about a
    minute instead of MLflow's default of retrying for minutes (the journal keeps the events and
    the drainer retries on its own schedule). A user's own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


@dataclass
class SweepState:
    """What a sweep execution needs to be resumed: kept as `STATE_FILE` in its Ray directory."""

    experiment: str  # Ray Tune's experiment name: the sweep name and its start time
    path: str  # Ray Tune's experiment directory
    workdir: str  # corpora and the feature cache
    tracking_uri: str
    experiment_id: str  # MLflow's ("" until an offline sweep is synced)
    parent_run_id: str  # ditto
    source: str  # the search-space file the sweep came from
    spec: dict[str, Any]  # the validated search-space spec as JSON
    execution: str  # unique id of this execution: tags every run, keys its journal replay
    offline: bool  # tracked only in the journal

    def save(self) -> None:
        """Write the state file atomically into the sweep's directory."""
        write_json(Path(self.path) / STATE_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> SweepState:
        """Read a state file; an unreadable or incomplete one is a UserError naming it.

        Paths are resolved from where the file is, not where it was written: the sweep
        directory is the file's own, and the work directory and a SQLite store keep their
        place relative to it, so a copied or moved work directory resumes into itself (never
        into the original). A path that only exists where it was written is used there.
        """
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"unreadable sweep state ({exc})", where=path) from None
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if not isinstance(data, dict) or n not in data]
        if missing:
            raise UserError(f"sweep state lacks {', '.join(missing)}", where=path)
        state = cls(**{n: data[n] for n in names})
        written, here = Path(state.path), path.parent.resolve()
        if written != here:
            state.path = str(here)
            state.workdir = str(_rebased(Path(state.workdir), written, here))
            db = sqlite_db(state.tracking_uri)
            if db is not None:
                state.tracking_uri = f"{SQLITE}{_rebased(db, written, here)}"
        return state


def _rebased(old: Path, written: Path, here: Path) -> Path:
    """`old`, kept at the same place relative to the sweep directory that moved from `written`
    to `here`, when that exists (or `old` does not); else `old` itself."""
    moved = (here / os.path.relpath(old, written)).resolve()
    return moved if moved.exists() or not old.exists() else old


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
    journal: Path | None = None  # the tracking journal's directory
    tracking_pending: int = 0  # journaled events the store has not acknowledged
    offline: bool = False
    ui_url: str | None = None  # the parent run in MLflow's UI, once it exists there
    tracking: dict[str, float] = field(default_factory=dict)  # timings (bench_tracking.py)
    trace_sha256: str | None = None  # the reproducibility record's trace (sweep/record.py)

    @property
    def complete(self) -> bool:
        """Every trial ran (to the end or stopped by the scheduler) and none errored."""
        finished = self.counts.get("completed", 0) + self.counts.get("stopped_early", 0)
        return all_finished(finished, self.counts.get("errored", 0), self.expected)

    def summary(self) -> str:
        """One line for the terminal."""
        parts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items() if v)
        return f"sweep {self.name}: {parts or 'no trials'} of {self.expected} planned"

    def sync_hint(self) -> str | None:
        """What to say when the store does not hold the whole record yet, else None."""
        if not self.tracking_pending:
            return None
        where = "journaled (offline)" if self.offline else "not yet in the tracking store"
        return (
            f"tracking: {self.tracking_pending} events {where}; "
            f"send them with: sedsweep sync {self.path}"
        )


OnFinish = Callable[[SweepOutcome], None]
"""Called when a sweep's trials are done, before its parent run is marked finished."""


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


def check_method(plan: SweepPlan, features: dict[str, FeatureSet]) -> None:
    """Build the method once per data variant with the sweep's base config, on the CPU here:
    a corpus the method cannot train on (a single fold leaves no training split, a split
    names folds the corpus lacks) is one line before Ray starts or a run exists, not the same
    error inside every trial."""
    import torch

    from sedsweep.methods import get_method

    method_cls = get_method(plan.spec.method)
    base = plan.base.config.model_dump(mode="json")
    for variant in plan.data_variants:
        fs = features[data_key(variant)]
        cfg = trial_method_config(method_cls, base, variant, plan.epochs)
        try:
            splits = method_cls(cfg, fs, torch.device("cpu")).splits
        except ValueError as exc:
            raise split_error(exc, fs.folds, plan.source) from None
        for note in splits.notes(fs.weak, fs.classes):
            print(f"warning: {plan.source}: {note}", file=sys.stderr, flush=True)


class Tracker:
    """A sweep execution's journal and what sends it to the tracking store: a drainer in a
    child process (async), the journaling thread itself (inline), or nothing (offline)."""

    def __init__(self, state: SweepState, directory: Path, mode: TrackingMode, notify: Notify):
        self.state, self.notify = state, notify
        self.mode: TrackingMode = "offline" if state.offline else mode
        self.journal = Journal.at(directory / JOURNAL_DIR)
        self.drainer = Drainer(
            directory / JOURNAL_DIR, state.tracking_uri, execution=state.execution, notify=notify
        )
        self.process = DrainerProcess(directory / JOURNAL_DIR, state.tracking_uri, state.execution)
        self.phases: dict[str, float] = {}  # seconds of the fit, the final drain, the tables

    def start(self) -> None:
        if self.mode == "async":
            self.process.start()
        elif self.mode == "inline":
            self.journal.after_append = self.drainer.drain

    def settle(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the store to acknowledge every event; True when it has."""
        if self.mode == "offline":
            return False
        if self.mode == "inline":
            try:
                self.drainer.drain()
            except Exception:  # the store is away: the journal keeps the events
                return False
            return True
        return self.process.wait(self.journal.seq, timeout)

    def stop(self) -> None:
        self.process.stop()
        self.journal.after_append = None

    def pending(self) -> int:
        """Events journaled that the store has not acknowledged (as its ack file says)."""
        return max(self.journal.seq - self.process.acknowledged(), 0)

    def record_ids(self) -> None:
        """Copy the store's ids of the experiment and parent run into the sweep state."""
        ack = self.drainer.ack
        parent = ack.runs.get(PARENT)
        if ack.experiment_id and parent and not self.state.parent_run_id:
            self.state.experiment_id, self.state.parent_run_id = ack.experiment_id, parent
            self.state.save()

    def close_open_children(self, status: str) -> None:
        """Mark every child still RUNNING in the journal as `status` (an interrupted sweep)."""
        for key, known in list(self.journal.keys.items()):
            if key != PARENT and known.created and known.status == "RUNNING":
                self.journal.status(key, status)

    def timings(self) -> dict[str, float]:
        """Time the controller spent per result, and the lag until the store had it (s)."""
        import numpy as np

        lags = self.process.lags() if self.mode == "async" else self.drainer.lags
        out: dict[str, float] = dict(self.phases)
        for name, values in (("callback", self.journal.result_seconds), ("lag", lags)):
            if values:
                out[f"{name}_p50_s"] = float(np.percentile(values, 50))
                out[f"{name}_p99_s"] = float(np.percentile(values, 99))
                out[f"{name}_n"] = float(len(values))
        return out


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
    check_method(plan, features)
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
    start_ray(plan, address)
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
    return _fit(plan, state, tracker, features, address, False, on_finish, drain_timeout)


ADDRESS_TIMEOUT_S = 10


def check_address(address: str | None) -> None:
    """A `--address HOST:PORT` must answer within `ADDRESS_TIMEOUT_S`: Ray itself retries
    an address where nothing listens for minutes, warning all the while."""
    import socket

    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError("expected HOST:PORT (or auto)", where=f"--address {address}")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"no Ray head answers there ({reason})", where=f"--address {address}"
        ) from None


def start_ray(plan: SweepPlan, address: str | None) -> None:
    """Join (or start) the Ray cluster and check the trials' resources fit one of its nodes:
    done before the sweep's parent run exists, so a sweep that cannot run leaves no record."""
    import ray

    if not ray.is_initialized():
        # the processes a local ray.init starts, and the workers its raylet forks later, are
        # ended by a reaper if this driver is killed and they outlive it (nothing is started
        # here when it joins a cluster)
        local = not address or address == "local"
        with reaped_if_killed() if local else contextlib.nullcontext():
            ray.init(
                # No --address: a new local cluster, never one that happens to run on this
                # machine (Ray's default attaches to the last `ray start` cluster it finds).
                address=address or "local",
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,  # trial errors reach the driver (and MLflow) through Tune
            )
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    r = plan.spec.resources
    for name, wanted in (("gpu", r.gpu), ("cpu", r.cpu)):
        most = max((n.get(name.upper(), 0.0) for n in nodes), default=0.0)
        if wanted > most:
            has = f"at most {most:g} per node" if most else "none"
            raise UserError(
                f"asks for {wanted:g} {name.upper()} per trial but the Ray cluster has {has}",
                where=f"{plan.source}: resources.{name}",
            )


def _where(state: SweepState) -> str:
    url = run_url(ui_base(state.tracking_uri), state.experiment_id, state.parent_run_id)
    return f"MLflow parent run {state.parent_run_id} in {display_uri(state.tracking_uri)}: {url}"


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


def load_record(target: Path) -> dict[str, Any]:
    """The reproducibility record of a sweep directory (or of the newest sweep under a work
    directory): `sweep/record.py`."""
    return read_record(find_state(target).parent / RECORD_FILE)


def resume_sweep(
    target: Path,
    *,
    address: str | None = None,
    on_finish: OnFinish | None = None,
    drain_timeout: float = DRAIN_TIMEOUT_S,
    notify: Notify = _print,
) -> SweepOutcome:
    """Restore an interrupted sweep (Tuner.restore) and finish its remaining trials; tracking
    continues from the journal's last acknowledged event."""
    ray_environment()
    tracking_environment()
    check_address(address)
    state_file = find_state(target)
    state = SweepState.load(state_file)
    state.save()  # paths as resolved from where the sweep is now (a copy, a move)
    if not state.offline:
        probe(state.tracking_uri)
        elsewhere = _artifacts_elsewhere(state)
        if elsewhere:
            notify(
                f"note: this store keeps its artifacts in {elsewhere}, outside {state.workdir} "
                "(MLflow records absolute artifact locations): the resumed runs' artifacts go there"
            )
    plan = plan_sweep(SweepSpec.model_validate(state.spec), state.source)
    features = _features(plan, Path(state.workdir))
    tracker = Tracker(state, state_file.parent, "async", notify)
    tracker.journal.status(PARENT, "RUNNING")
    return _fit(plan, state, tracker, features, address, True, on_finish, drain_timeout)


def _artifacts_elsewhere(state: SweepState) -> Path | None:
    """The experiment's local artifact directory when it lies outside the sweep's work
    directory (a copied work directory's SQLite store still points at the original's)."""
    from sedsweep.tracking import client_for

    if sqlite_db(state.tracking_uri) is None or not state.experiment_id:
        return None
    location = client_for(state.tracking_uri).get_experiment(state.experiment_id).artifact_location
    if not location.startswith(("file://", "/")):
        return None
    path = Path(location.removeprefix("file://")).resolve()
    return None if path.is_relative_to(Path(state.workdir).resolve()) else path


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


def recreate_deleted_checkpoints(experiment: Path) -> list[Path]:
    """Empty folders for the trial checkpoints that Tune's newest experiment snapshot still
    lists but that are gone from disk (returns them); a workaround for Ray Tune 2.60.

    With `CheckpointConfig.num_to_keep`, Tune deletes a trial's oldest kept checkpoint when it
    registers a new one and only then snapshots the experiment: a driver killed in between
    leaves a snapshot that lists a deleted checkpoint. After `resume` Tune deletes it again,
    its delete raises FileNotFoundError ("Error handling checkpoint") before the trial's
    checkpoint index is advanced, and the next checkpoint after a later restore overwrites
    the newest one; two entries then share one folder, deleting the older removes the newer,
    and a trial restored from it fails. An empty folder lets the delete succeed. Only trials
    that will run again are repaired, and only below a checkpoint that exists (the newest one
    Tune knows is always on disk: a worker writes it before reporting it). The snapshot is
    JSON; the checkpoint list inside is a pickle, read here as bytes (folder names), never
    unpickled.
    """
    import re

    states = sorted(experiment.glob("experiment_state-*.json"))  # Tune restores the newest
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (OSError, ValueError, KeyError, TypeError):
        return []
    made = []
    for entry in trials:
        try:
            trial, meta = (json.loads(part) if isinstance(part, str) else part for part in entry)
            raw = bytes.fromhex(meta["checkpoint_manager"]["value"])
            folder = experiment / trial["relative_logdir"]
        except (ValueError, KeyError, TypeError):
            continue
        if trial.get("status") == "TERMINATED" or not folder.is_dir():
            continue
        listed = {int(n) for n in re.findall(rb"checkpoint_(\d{6})(?!\d)", raw)}
        on_disk = [int(p.name[11:]) for p in folder.glob("checkpoint_[0-9]*") if p.is_dir()]
        for number in sorted(listed):
            path = folder / f"checkpoint_{number:06d}"
            if not path.exists() and any(n > number for n in on_disk):
                path.mkdir()
                made.append(path)
    return made


def ended_short(journal: Journal) -> list[str]:
    """The trials the journal records as failed for ending short with no stop decision."""
    return [
        key
        for key, run in journal.keys.items()
        if run.status == "FAILED" and ENDED_SHORT_TAG in run.tags
    ]


def reopen_ended_short(experiment: Path, trial_ids: Collection[str]) -> list[str]:
    """Mark as errored, in Tune's newest experiment snapshot, the given trials that Tune holds
    as TERMINATED (returns those changed), so that `Tuner.restore(resume_errored=True)` runs
    them again from their last checkpoint.

    For the trials the journal records as ended before their epochs with no stop decision
    (`sweep.ended_short`, FAILED): Tune counts them as finished and would never run them
    again, so a resume could not finish the sweep. Only the snapshot's plain-JSON status
    field changes; the file is rewritten atomically.
    """
    states = sorted(experiment.glob("experiment_state-*.json"))  # Tune restores the newest
    if not trial_ids or not states:
        return []
    data = json.loads(states[-1].read_text())
    reopened = []
    for entry in data["trial_data"]:
        trial = json.loads(entry[0])
        if trial.get("trial_id") in trial_ids and trial.get("status") == "TERMINATED":
            trial["status"] = "ERROR"
            entry[0] = json.dumps(trial)
            reopened.append(trial["trial_id"])
    if reopened:
        write_json(states[-1], data)
    return reopened


def _scheduler(plan: SweepPlan, search: Any) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    from sedsweep.sweep.halving import SynchronousHalving

    s = plan.spec.scheduler
    if plan.spec.search.reproducible and s.type == "asha":  # the same rungs, decided per batch
        return SynchronousHalving(search, plan.spec.budget.max_concurrent)
    # time is the method's epoch (`epoch_of`), so a trial resumed from an earlier checkpoint
    # is judged at the epoch its weights have, and grace periods count epochs, not seconds
    if s.type == "asha":
        return ASHAScheduler(
            time_attr=EPOCH_KEY, max_t=plan.epochs, grace_period=min(s.grace_period, plan.epochs),
            reduction_factor=s.reduction_factor,
        )  # fmt: skip
    if s.type == "hyperband":
        return HyperBandScheduler(
            time_attr=EPOCH_KEY, max_t=plan.epochs, reduction_factor=s.reduction_factor
        )
    if s.type == "median":
        return MedianStoppingRule(time_attr=EPOCH_KEY, grace_period=s.grace_period)
    return FIFOScheduler()


def _fit(
    plan: SweepPlan,
    state: SweepState,
    tracker: Tracker,
    features: dict[str, FeatureSet],
    address: str | None,
    restore: bool,
    on_finish: OnFinish | None,
    drain_timeout: float,
) -> SweepOutcome:
    from ray import tune

    from sedsweep.sweep.search import OptunaPruningSearch
    from sedsweep.sweep.tracking_callback import TrackingCallback
    from sedsweep.sweep.trainable import run_trial

    s = plan.spec
    tracker.start()
    try:
        start_ray(plan, address)
        base_config = plan.base.config.model_dump(mode="json")
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial, features=transported(features, s.resources.features, address is None),
                method=s.method, base_config=base_config,
                epochs=plan.epochs, threads=int(s.resources.cpu),
                policy=CheckpointPolicy.of(s, plan.epochs),
                deterministic=s.search.reproducible,
            ),
            {"cpu": s.resources.cpu, "gpu": s.resources.gpu},
        )  # fmt: skip
        if restore:
            for trial_id in reopen_ended_short(Path(state.path), ended_short(tracker.journal)):
                tracker.notify(f"trial {trial_id} ended short with no stop decision: running again")
            recreate_deleted_checkpoints(Path(state.path))
            tuner = tune.Tuner.restore(
                state.path, trainable=trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            callback = TrackingCallback(
                str(tracker.journal.directory), method=s.method, base_config=base_config,
                epochs=plan.epochs, tags={METHOD_TAG: s.method, SWEEP_NAME_TAG: s.name},
                when=conditions(s.space),
            )  # fmt: skip
            search = OptunaPruningSearch(plan)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=selected_key(s.primary.metric),
                    mode=s.primary.mode,
                    search_alg=search,
                    scheduler=_scheduler(plan, search),  # may share the searcher's record
                    num_samples=plan.n_trials,  # the searcher limits trials in flight
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=state.experiment,
                    storage_path=str(Path(state.path).parent),
                    callbacks=[callback],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    failure_config=tune.FailureConfig(max_failures=s.budget.max_failures),
                    verbose=0,  # progress comes from the tracking callback
                ),
            )
        started = time.perf_counter()
        TrackingCallback.current_journal_dir = str(tracker.journal.directory)
        TrackingCallback.progress = Progress(plan.n_trials, "trials ended", "trial")
        try:
            with terminate_as_interrupt():
                results = tuner.fit()
        finally:
            TrackingCallback.current_journal_dir = None
            TrackingCallback.progress.close()
            TrackingCallback.progress = None
        tracker.phases["fit_s"] = time.perf_counter() - started
    except BaseException as exc:
        # The execution ends here without an outcome: record it as such, as far as possible.
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        tracker.close_open_children("KILLED")
        tracker.journal.status(PARENT, status)
        tracker.settle(min(drain_timeout, 10.0))
        tracker.stop()
        raise
    return _outcome(plan, state, tracker, results, features, on_finish, drain_timeout)


def _outcome(
    plan: SweepPlan,
    state: SweepState,
    tracker: Tracker,
    results: Any,
    features: dict[str, FeatureSet],
    on_finish: OnFinish | None,
    drain_timeout: float,
) -> SweepOutcome:
    # Only the scheduler's decisions count as stopped early (the tracking callback tags them
    # when Tune completes the trial); a trial cut short any other way — Ctrl-C, SIGTERM, never
    # given resources — is interrupted: the sweep is incomplete and `resume` finishes it.
    journal = tracker.journal
    counts = {"completed": 0, "stopped_early": 0, "interrupted": 0, "errored": 0, "missing": 0}
    primary = plan.spec.primary
    best = None
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None:
            counts["errored"] += 1
        elif epoch_of(metrics) >= plan.epochs:
            counts["completed"] += 1
            value = plan.objective_value(metrics)
            if value is not None and (
                best is None or (value > best[0] if primary.maximise else value < best[0])
            ):
                best = (value, result)
        elif STOPPED_EARLY_TAG in (tags := journal.state(str(metrics.get("trial_id"))).tags):
            counts["stopped_early"] += 1
        elif ENDED_SHORT_TAG in tags:  # ended short with no stop decision: a failed trial
            counts["errored"] += 1
        else:
            counts["interrupted"] += 1
    counts["missing"] = max(plan.n_trials - len(results), 0)
    outcome = SweepOutcome(
        name=plan.spec.name,
        path=Path(state.path),
        parent_run_id=state.parent_run_id,
        tracking_uri=state.tracking_uri,
        expected=plan.n_trials,
        counts=counts,
        journal=tracker.journal.directory,
        offline=state.offline,
    )
    if best is not None:  # the best completed trial: a cut-short one is no candidate
        value, result = best
        outcome.best = {  # Tune's best; the tables hook replaces it with the best trained one
            "config": result.config["overrides"], "metrics": dict(result.metrics),
            "checked": False,
        }  # fmt: skip
        # at step = trials completed so far: the history shows the best value as the sweep
        # grew, and an execution that completed nothing new (killed again) adds no point
        if counts["completed"] > journal.state(PARENT).last_step:
            journal.metrics(
                PARENT, {f"{BEST_METRIC_PREFIX}{primary.metric}": value}, counts["completed"]
            )
    journal.tags(PARENT, {count_tag(k): str(v) for k, v in counts.items()})
    record = write_record(plan, features, Path(state.path))
    if record is not None:
        outcome.trace_sha256 = record["trace_sha256"]
        journal.text(PARENT, json.dumps(record, indent=2) + "\n", RECORD_FILE)
        journal.tags(PARENT, {TRACE_TAG: record["trace_sha256"]})
    started = time.perf_counter()
    draw_figures(plan, features, journal, list(results))
    tracker.phases["figures_s"] = time.perf_counter() - started
    cut = counts["missing"] or counts["interrupted"]
    if cut:  # interrupted: trials still open were stopped with the driver
        tracker.close_open_children("KILLED")
    journal.hook(TABLES_HOOK)  # a replay (`sedsweep sync`) logs the tables at this point
    started = time.perf_counter()
    drained = tracker.settle(drain_timeout)
    tracker.phases["drain_s"] = time.perf_counter() - started
    if drained and on_finish is not None:
        started = time.perf_counter()
        on_finish(outcome)
        tracker.phases["tables_s"] = time.perf_counter() - started
    if cut:
        journal.status(PARENT, "KILLED")
    else:
        journal.status(PARENT, "FINISHED" if outcome.complete else "FAILED")
    if drained:
        tracker.settle(min(drain_timeout, 30.0))
    tracker.stop()
    outcome.tracking_pending = tracker.pending()
    outcome.tracking = tracker.timings()
    if state.parent_run_id:
        outcome.ui_url = run_url(
            ui_base(state.tracking_uri), state.experiment_id, state.parent_run_id
        )
    return outcome
