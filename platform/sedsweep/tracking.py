"""MLflow tracking: the embedded SQLite store, experiments, and a run writer over MlflowClient."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sedsweep import __version__
from sedsweep.config import flatten
from sedsweep.errors import UserError

# -- names: every MLflow tag, artifact path and metric prefix sedsweep writes or reads ----------
# Every run sedsweep creates (`sedsweep train`, sweep parents, trials, best re-training):
VERSION_TAG = "sedsweep.version"
METHOD_TAG = "sedsweep.method"
SCALE_TAG = "sedsweep.scale"
FINGERPRINT_TAG = "sedsweep.corpus_fingerprint"  # comma-separated for a sweep's data variants
DEVICE_TAG = "sedsweep.device"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: children of a sweep's parent run
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own
FIGURES_DIR = "figures"  # a trial's (or run's) figures, in its checkpoint and its artifacts

# Every run of a sweep execution (parent and children): how a replayed journal finds them.
EXECUTION_TAG = "sweep.execution"
# The experiment of a sweep or a training run: MLflow's UI then opens on the runs table
# (MLflow 3 lands an untagged experiment on its GenAI overview of traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# A sweep's parent run:
PLANNED_TAG = "sweep.trials_planned"  # marks a parent run; trials the sweep plans
RAY_VERSION_TAG = "ray.version"
OPTUNA_VERSION_TAG = "optuna.version"
TABLE_ERROR_TAG = "sweep.table_error"  # why no comparison table was logged
BEST_RUN_TAG = "sweep.best_run"  # the trial `sedsweep best` chose
BEST_FINAL_RUN_TAG = "sweep.best_final_run"  # its re-training run
BEST_METRIC_PREFIX = "best/"  # best/<objective>: the best trial's objective
SPEC_ARTIFACT = "sweep.yaml"  # the search-space spec
TABLES_DIR = "tables"  # tables/<sweep>.{md,csv,html}
CLAIMS_MD, CLAIMS_CSV = "claims.md", "claims.csv"  # a sweep's claim checks, on its parent run
BEST_DIR = "best"  # best/best.md (the report) and best/<best.yaml>
BEST_REPORT = f"{BEST_DIR}/best.md"
IMPORTANCE_DIR = "importance"  # importance/importance.{csv,png}
IMPORTANCE_CSV = f"{IMPORTANCE_DIR}/importance.csv"

# A trial's child run:
SWEEP_NAME_TAG = "sweep.name"
TRIAL_TAG = "sweep.trial_id"  # its Ray Tune trial id: how a resumed sweep finds it
OPTUNA_NUMBER_TAG = "optuna.trial_number"
NODE_TAG = "sweep.node_id"  # the Ray node that ran it
TRACE_TAG = "sweep.trace_sha256"  # hash of the reproducibility record's trace (sweep/record.py)
NONDETERMINISTIC_TAG = "sweep.nondeterministic"  # torch ops a reproducible trial could not pin
STOPPED_EARLY_TAG = "sweep.stopped_early"  # "true" when the scheduler stopped it
# A trial the scheduler stopped (pruned) ends FINISHED, as in MLflow's UI a run that did
# what it was asked to: these tags say it was pruned and at which rung (epoch). Sweeps before
# them ended such trials KILLED with STOPPED_EARLY_TAG; readers accept both.
PRUNED_TAG = "sweep.pruned"
PRUNED_RUNG_TAG = "sweep.pruned_at_epoch"
EPOCHS_RUN_TAG = "sweep.epochs_run"
# "true" when it ended before its budget with no stop decision (FAILED, with sweep.error)
ENDED_SHORT_TAG = "sweep.ended_short"
ERROR_TAG = "sweep.error"  # the last line of a failed trial's error
ERROR_ARTIFACT = "error.txt"  # its whole traceback
# an errored trial that finished after a resume: the error it had (sweep.error is removed)
RECOVERED_ERROR_TAG = "sweep.recovered_error"
# why a child run was deleted from the record: a trial the killed driver started after Ray
# Tune's last snapshot, which runs again under a new trial id when the sweep resumes
ORPHANED_TAG = "sweep.orphaned"
# a trial resumed from an earlier checkpoint than its last, or from scratch: which, and why
RESTORE_NOTE_TAG = "sweep.restore_note"
# the trial's figures were drawn (at the end of the sweep, from its final checkpoint): count
FIGURES_TAG = "sweep.figures"

# The re-training run of `sedsweep best` (a child of the sweep's parent run):
ROLE_TAG = "sweep.role"
BEST_OF_TAG = "sweep.best_of"  # the trial it re-trains

MAX_TAG_CHARS = 5000  # longer tag values are cut (MLflow's limit is 8000)


def all_finished(finished: int, failed: int, planned: int) -> bool:
    """A sweep execution is complete: every planned trial finished (ran its budget, or was
    stopped by the scheduler) and none failed. The one rule for the runner (which counts Ray
    Tune's trials) and for reports on the store (which count the trials' runs)."""
    return finished >= planned and not failed


def count_tag(outcome: str) -> str:
    """The parent-run tag holding how many trials ended `outcome` (completed, errored, ...)."""
    return f"sweep.{outcome}"


def run_tags(method: str, scale: str, fingerprint: str) -> dict[str, str]:
    """The tags every sedsweep run carries: version, method, scale and corpus fingerprint."""
    return {
        VERSION_TAG: __version__,
        METHOD_TAG: method,
        SCALE_TAG: scale,
        FINGERPRINT_TAG: fingerprint,
    }


# MLflow rejects longer parameter values.
MAX_PARAM_CHARS = 6000
BATCH = 100


SQLITE = "sqlite:///"


def sqlite_db(uri: str) -> Path | None:
    """The database file of a SQLite tracking URI; None for any other store."""
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None


def existing_store(workdir: str | Path, override: str | None = None) -> str:
    """`tracking_uri_for`, for commands that only read: a work directory without a store is a
    UserError (never an empty store created by reading it)."""
    uri = tracking_uri_for(workdir, override)
    db = Path(workdir) / "mlflow.db"
    if override:
        probe(uri)  # an unknown scheme or a server that does not answer: one line, exit 2
    elif not db.is_file():
        raise UserError("no MLflow store here (run a sweep or `sedsweep train` first)", where=db)
    return uri


def tracking_uri_for(workdir: str | Path, override: str | None = None) -> str:
    """`override` when given (credentials moved out of it, see `adopt_credentials`), else the
    embedded SQLite store `<workdir>/mlflow.db`."""
    if override:
        return adopt_credentials(override)
    return f"{SQLITE}{(Path(workdir) / 'mlflow.db').resolve()}"


USERNAME_VAR, PASSWORD_VAR = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def adopt_credentials(uri: str) -> str:
    """`uri` without its user name and password, which move into this process's environment
    (MLFLOW_TRACKING_USERNAME / _PASSWORD: MLflow's own basic-auth settings, inherited by the
    drainer). So credentials given as `http://user:pw@host` are kept in memory only: never
    printed, stored in sedsweep.json or Ray's experiment state, logged, or rendered."""
    from urllib.parse import unquote

    parts = _with_userinfo(uri)
    if parts is None:
        return uri
    os.environ[USERNAME_VAR] = unquote(parts.username or "")
    if parts.password is not None:
        os.environ[PASSWORD_VAR] = unquote(parts.password)
    return display_uri(uri)


def carries_password(uri: str) -> bool:
    """Whether `uri` has a password in it (`http://user:pw@host`)."""
    parts = _with_userinfo(uri)
    return parts is not None and parts.password is not None


def artifact_root_for(uri: str) -> Path | None:
    """Where artifacts go for a SQLite store: `mlartifacts` beside the database (for the
    embedded store, `<workdir>/mlartifacts`); a tracking server decides for itself (None)."""
    db = sqlite_db(uri)
    return None if db is None else db.parent / "mlartifacts"


ARTIFACT_COLUMNS = (  # where MLflow 3's SQLite schema records artifact locations
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)


def relocate_artifacts(uri: str) -> tuple[Path, Path] | None:
    """Point a SQLite store's recorded artifact locations at its own artifact root
    (`artifact_root_for`) when they lie under another directory's `mlartifacts`: the store
    was copied or moved with its work directory, and MLflow, which records absolute
    locations, would otherwise write the copy's artifacts into the original (or recreate a
    moved one's old path). Returns (old root, new root), or None when there was nothing to
    move or the locations name more than one other root (not guessed). One transaction."""
    import sqlite3

    db = sqlite_db(uri)
    if db is None or not db.is_file():
        return None
    root = artifact_root_for(uri).resolve()  # type: ignore[union-attr]  # SQLite: has one
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        olds = set()
        for (location,) in con.execute("SELECT artifact_location FROM experiments"):
            path = Path(str(location).removeprefix("file://"))
            if path.is_absolute() and "mlartifacts" in path.parts:
                last = len(path.parts) - 1 - path.parts[::-1].index("mlartifacts")
                olds.add(Path(*path.parts[: last + 1]))
        olds.discard(root)
        if len(olds) != 1:
            return None
        old = olds.pop()
        for table, column in ARTIFACT_COLUMNS:
            if table not in tables:
                continue
            for before, after in ((old.as_uri(), root.as_uri()), (str(old), str(root))):
                con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE substr({column}, 1, ?) = ? "
                    f"AND (length({column}) = ? OR substr({column}, ?, 1) = '/')",
                    (after, len(before) + 1, len(before), before, len(before), len(before) + 1),
                )
    return old, root


def _with_userinfo(uri: str) -> Any:
    """The URI's parts (`urlsplit`) when it carries a user name or password, else None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    return None if parts.username is None and parts.password is None else parts


def display_uri(uri: str) -> str:
    """`uri` without a user name or password, for anything printed, stored or rendered; a URI
    too malformed to parse (a bad port, an unclosed `[`) loses its `user:password@` as text."""
    from urllib.parse import urlunsplit

    parts = _with_userinfo(uri)
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        parts = None
    if parts is None:
        return _USERINFO.sub(r"\1", uri)
    host = parts.hostname or ""
    netloc = f"{host}:{port}" if port else host
    return urlunsplit(parts._replace(netloc=netloc))


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")  # scheme://user:password@


DEFAULT_UI = "http://127.0.0.1:5000"  # where `sedsweep ui` serves a SQLite store


def ui_base(tracking_uri: str, override: str | None = None) -> str:
    """The MLflow UI that shows a store's runs: `override`, else the tracking server itself,
    else `sedsweep ui`'s default address (a SQLite store); never with credentials."""
    if override:
        return display_uri(override).rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return display_uri(tracking_uri).rstrip("/")
    return DEFAULT_UI


MAX_RUN_NAME = 240  # MLflow's limit is 250 characters


def run_name(head: str, overrides: Mapping[str, Any]) -> str:
    """`head` and the values, within MLflow's length: `t007 pooling=gap mtl.alpha=0.001` (a
    trial), `best t007 …` (its retrain by `sedsweep best`)."""
    name = " ".join([head] + [f"{k}={_short(v)}" for k, v in overrides.items()])
    return name if len(name) <= MAX_RUN_NAME else name[: MAX_RUN_NAME - 3] + "..."


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


UI_VIEW = "workflowType=machine_learning"
"""The query that opens MLflow's UI (3.17) in its model-training view. With its workflow
switch on, the UI picks the view from this parameter, then from the browser's last choice,
then GenAI (Traces, Judges, Prompts): it ignores the experiment's `mlflow.experimentKind`
there (read from the UI's code: the `workflowType` search parameter of the hash route)."""


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run, in the model-training view (`UI_VIEW`)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"


def ui_hint(uri: str) -> str | None:
    """How to serve the UI that a run link points at, for an embedded SQLite store (no server
    runs for it); None for a tracking server, whose link works as it is."""
    db = sqlite_db(uri)
    return None if db is None else f"(open it with: sedsweep ui --workdir {db.parent})"


PROBE_TIMEOUT_S = 10


@contextlib.contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Serialise processes' first use of one SQLite store (MLflow creates its tables then: two
    sweeps starting together failed with 'table experiments already exists')."""
    db = sqlite_db(uri)
    if db is None or not db.parent.is_dir():
        yield
        return
    import fcntl

    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def probe(uri: str) -> None:
    """Fail fast: a UserError naming the store when it does not answer or refuses us.

    One request (list one experiment) without MLflow's retries and with a short timeout, so an
    unreachable server is reported in about `PROBE_TIMEOUT_S` s, before anything is started.
    """
    from mlflow.exceptions import MlflowException

    where = display_uri(uri)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT")}  # fmt: skip
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(PROBE_TIMEOUT_S)
    try:
        with _first_use_lock(uri):
            client_for(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        text = " ".join(str(exc).split())
        if "401" in text or "403" in text or "Unauthorized" in text or "PERMISSION" in text:
            cause = "it refused the credentials (set MLFLOW_TRACKING_USERNAME/PASSWORD)"
        elif "Max retries" in text or "Connection" in text or "timed out" in text.lower():
            cause = "no answer"
        else:
            cause = text[:200]
        raise UserError(f"MLflow tracking store not usable: {cause}", where=where) from None
    except Exception as exc:  # e.g. an unsupported scheme, a SQLite file in a missing folder
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"MLflow tracking store not usable: {text}", where=where) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client_for(uri: str):  # -> MlflowClient (imported lazily: mlflow is slow to import)
    """An MlflowClient bound to `uri` (no global state is touched but MLflow's telemetry,
    which is switched off: nothing here may call out). A SQLite store that does not exist yet
    starts as a copy of a migrated empty one (`new_sqlite_store`)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    db = sqlite_db(uri)
    if db is not None and not db.exists() and db.parent.is_dir():
        new_sqlite_store(db)
    return MlflowClient(tracking_uri=uri)


def store_template_dir() -> Path:
    """Where migrated empty SQLite stores are kept: `$XDG_CACHE_HOME/sedsweep` (or
    `~/.cache/sedsweep`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sedsweep"


def new_sqlite_store(db: Path) -> None:
    """Create the SQLite store `db` as a copy of an empty store MLflow has migrated (one per
    MLflow version, kept in `store_template_dir`): MLflow's migration of ~40 tables costs about
    a second for every new store, a copy a few milliseconds. The copy's Default experiment is
    pointed at this store's artifact root (MLflow would point it at the creating process's
    working directory). Written under a temporary name and hard-linked into place, so a store
    another process made meanwhile is never replaced; when the template cannot be made or
    read, nothing is written and MLflow migrates `db` itself on first use."""
    import shutil
    import sqlite3
    import time

    import mlflow

    template = store_template_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.is_file():
            template.parent.mkdir(parents=True, exist_ok=True)
            scratch = template.with_name(f".{template.name}.{os.getpid()}.tmp")
            scratch.unlink(missing_ok=True)
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=f"{SQLITE}{scratch}").search_experiments(max_results=1)
            os.replace(scratch, template)
        partial = db.with_name(f".{db.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(template, partial)
            now = int(time.time() * 1000)
            root = artifact_root_for(f"{SQLITE}{db}")
            assert root is not None  # a SQLite store has one
            with contextlib.closing(sqlite3.connect(partial)) as con, con:
                con.execute(
                    "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                    "last_update_time = ? WHERE experiment_id = 0",
                    (str(root / "0"), now, now),
                )
            os.link(partial, db)  # fails if another process made `db` meanwhile: theirs stays
        finally:
            partial.unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        return  # MLflow creates the store itself (or another process did)


def ensure_experiment(client, name: str, artifact_root: Path | None = None) -> str:
    """The id of experiment `name`, created (with local artifact root for SQLite) if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            from mlflow.exceptions import MlflowException

            # a UI nicety: another user's experiment may not let us tag it
            with contextlib.suppress(MlflowException):
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return client.create_experiment(
        name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, string values truncated to MLflow's limit."""
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in flatten(config).items()}


class RunWriter:
    """Writes one MLflow run: params, per-epoch metrics with steps, artifacts, final status."""

    def __init__(self, client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def start(
        cls, client, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None
    ) -> RunWriter:
        """Create a new run in RUNNING state."""
        run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
        return cls(client, run.info.run_id)

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log params in batches."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one step's metrics in one call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + BATCH])

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's contents."""
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set several tags."""
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status)


def log_torch_model(uri: str, run_id: str, module: Any, name: str = "model") -> str:
    """Log a torch module to a run with `mlflow.pytorch.log_model`; return the model's URI."""
    import mlflow
    import mlflow.pytorch
    import torch

    import sedsweep

    mlflow.set_tracking_uri(uri)
    # Pickle format: the WHEN/WHO ModuleDict has no single forward() to trace (pt2 needs one).
    # The sedsweep sources travel with the model (code_paths), so it loads with torch alone.
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow.pytorch.log_model(
            module.to("cpu"),
            name=name,
            serialization_format="pickle",
            code_paths=[str(Path(sedsweep.__file__).parent)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )
    return info.model_uri


CHAMPION = "champion"


def register_champion(
    uri: str, name: str, model_uri: str, tags: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """Register a logged model under `name` and move the alias `champion` to the new version.

    Every version that becomes champion also gets the permanent alias `champion-vN`, so a
    previous champion stays addressable (`models:/NAME@champion-v3`) after the alias moves.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    try:
        previous = client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        previous = None
    mlflow.set_tracking_uri(uri)
    version = mlflow.register_model(model_uri, name, tags=dict(tags or {})).version
    client.set_registered_model_alias(name, f"{CHAMPION}-v{version}", version)
    client.set_registered_model_alias(name, CHAMPION, version)
    return {"name": name, "version": str(version), "previous": previous}


def serve_ui(workdir: str | Path, host: str, port: int) -> int:
    """Run `mlflow ui` on `<workdir>/mlflow.db` until interrupted; return its exit code."""
    import subprocess
    import sys

    uri = existing_store(workdir)
    db = sqlite_db(uri)
    cmd = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri,
        "--default-artifact-root", (Path(workdir) / "mlartifacts").resolve().as_uri(),
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    print(f"MLflow UI on http://{host}:{port}/#/experiments?{UI_VIEW} (store {db})", flush=True)
    # A browsing UI needs no background job runner (MLflow 3 starts one by default).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # its own process group: when this command ends (Ctrl-C, SIGTERM), `mlflow ui` and its
    # web workers end with it, never left holding the port
    child = subprocess.Popen(cmd, env=env, start_new_session=True)
    from sedsweep.processes import terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            return child.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(child)


def _stop_group(child: Any) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after 10 s."""
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
