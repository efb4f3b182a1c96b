"""Journaled tracking: events go to an append-only file first, to MLflow later.

A sweep's controller thread must never wait on the network, and a tracking server that goes
away must cost nothing but delay. So every tracking write of a sweep (a run created, params,
one epoch's metrics, tags, a status, an artifact) is first an *event*: one JSON line with a
sequence number, appended to `<sweep dir>/tracking/journal.jsonl` (one `write` to the OS per
event, so a killed driver loses nothing that was appended; fsync'd in the background). A
`Drainer` replays the journal into an MLflow store, on a background thread during a sweep or
in the foreground (`sedsweep sync`), and records per target store the last sequence number
the store acknowledged (`tracking/ack-<hash>.json`).

Replay is idempotent, so a crash between a write and its acknowledgement, a retried chunk or
a second `sync` never duplicates anything:
- runs are addressed by a *key* ("parent", or a Ray Tune trial id) and found again by their
  `sweep.execution` and `sweep.trial_id` tags before one is created;
- a metric keeps the timestamp of its event, and MLflow's SQL stores drop a metric identical in
  key, step, timestamp and value;
- params and tags are re-set to the same values, artifacts re-uploaded to the same paths;
- a status never goes backwards: a FINISHED run stays FINISHED;
- a run deleted from the record (an orphan of a killed driver) stays deleted, and events for
  it that a replay meets again are dropped.

This module sits on the base floor: it knows MLflow (lazily, through `tracking`), never Ray.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from sedsweep.errors import UserError
from sedsweep.fsio import disk_full, write_json
from sedsweep.tracking import (
    EXECUTION_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    artifact_root_for,
    client_for,
    display_uri,
    ensure_experiment,
)

JOURNAL_DIR = "tracking"
JOURNAL_FILE = "journal.jsonl"
PARENT = "parent"  # the key of a sweep's parent run; children are keyed by trial id
TERMINAL = ("FINISHED", "FAILED", "KILLED")
DELETED = "DELETED"  # a journal key's status once its run was deleted from the record

# MLflow's log_batch limits (REST API docs): 1000 metrics, 100 params, 100 tags, 1000 in all.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
CHUNK_EVENTS = 2000  # events read per drain step (one acknowledgement each)
POLL_S = 0.05  # how often a background drainer looks for new events
LINGER_S = 0.5  # the least time between two sends of a background drainer
DRAINER_NICE = 10  # a drainer process yields the CPU to the sweep's driver and trials
STOP_TIMEOUT_S = 15.0  # how long a drainer process may take to finish its current request
STATS_FILE = "drain-stats.json"  # a drainer process's lags, written when it stops
CHILD_SIGNALS = {signal.SIGTERM, signal.SIGUSR1}  # what a drainer process handles


class Op(StrEnum):
    """The kinds of journal event (a closed set: a replay refuses any other). Each is one
    `Journal` method on the writing side and one entry of `Drainer`'s dispatch table."""

    EXPERIMENT = "experiment"  # the MLflow experiment of every run of the journal
    CREATE = "create"  # a run (the parent, or a child of run key `parent`)
    PARAMS = "params"
    METRICS = "metrics"  # one epoch's metrics at a step
    TAGS = "tags"
    STATUS = "status"
    ARTIFACTS = "artifacts"  # files to upload
    TEXT = "text"  # a text artifact
    UNTAG = "untag"
    REMOVE_ARTIFACT = "remove_artifact"
    DELETE = "delete"  # the run deleted from the record
    HOOK = "hook"  # a point where a consumer has work to do (e.g. log the tables)


BATCHED = frozenset({Op.PARAMS, Op.METRICS, Op.TAGS})  # sent per run with MLflow's log_batch


# -- the journal ---------------------------------------------------------------------------------
@dataclass
class KeyState:
    """What the journal holds about one run key (rebuilt from the file when it is reopened)."""

    created: bool = False
    status: str | None = None
    last_step: int = 0
    tags: dict[str, str] = field(default_factory=dict)  # tags set so far (and not removed)


class Journal:
    """The append-only event file of one sweep execution.

    `append` is what the controller thread calls: it assigns the next sequence number, writes
    one line with one `os.write` and returns; it is safe from several threads. One Journal
    object per file per process (`Journal.at`), so the Tune callback restored from Ray's
    experiment state and the runner share the same sequence numbers.
    """

    _open: ClassVar[dict[Path, Journal]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        directory.mkdir(parents=True, exist_ok=True)
        self.keys: dict[str, KeyState] = {}
        self.seq = 0
        self.hooks: set[str] = set()
        self._lock = threading.Lock()
        self.after_append: Callable[[], Any] | None = None  # inline tracking: send right away
        self.result_seconds: list[float] = []  # a tracking callback's time per result
        for event in read_events(self.path, repair=True):
            self._index(event)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @classmethod
    def at(cls, directory: str | Path) -> Journal:
        """The process's Journal for `directory`, opened on first use."""
        key = Path(directory).resolve()
        with cls._registry_lock:
            journal = cls._open.get(key)
            if journal is None or journal._fd < 0:
                journal = cls._open[key] = cls(key)
            return journal

    def close(self) -> None:
        """Close the file (further appends reopen it through `Journal.at`)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        with self._registry_lock:
            if self._open.get(self.directory) is self:
                del self._open[self.directory]

    def append(self, op: Op, key: str, **fields: Any) -> int:
        """Write one event; return its sequence number."""
        with self._lock:
            if self._fd < 0:
                raise RuntimeError(f"journal {self.path} is closed")
            event = {"seq": self.seq + 1, "op": op, "key": key, **fields}
            self._write((json.dumps(event, separators=(",", ":")) + "\n").encode())
            self.seq += 1
            self._index(event)
        if self.after_append is not None:
            self.after_append()
        return event["seq"]

    def _write(self, line: bytes) -> None:
        """Append `line` whole or not at all: a write cut short (a full disk) is cut off again,
        so the file never holds half an event with more events after it."""
        start = os.fstat(self._fd).st_size
        try:
            if os.write(self._fd, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            if exc.filename is None:
                exc.filename = str(self.path)
            raise

    def state(self, key: str) -> KeyState:
        """What has been journaled for run `key` so far."""
        return self.keys.get(key) or KeyState()

    def _index(self, event: dict[str, Any]) -> None:
        self.seq = max(self.seq, int(event["seq"]))
        key = self.keys.setdefault(event["key"], KeyState())
        op = event["op"]
        if op == Op.CREATE:
            key.created, key.status = True, "RUNNING"
        elif op == Op.STATUS:
            key.status = event["status"]
        elif op == Op.METRICS:
            key.last_step = max(key.last_step, int(event["step"]))
        elif op == Op.TAGS:
            key.tags.update(event["tags"])
        elif op == Op.UNTAG:
            for name in event["names"]:
                key.tags.pop(name, None)
        elif op == Op.DELETE:
            key.status = DELETED
        elif op == Op.HOOK:
            self.hooks.add(event["name"])

    # -- what the sweep writes ------------------------------------------------------------------
    def experiment(self, name: str) -> int:
        """The MLflow experiment every run of this journal belongs to."""
        return self.append(Op.EXPERIMENT, PARENT, name=name)

    def create(
        self, key: str, run_name: str, tags: dict[str, str], parent: str | None = None
    ) -> int:
        """A run: the parent (`parent=None`) or a child of run key `parent`."""
        return self.append(
            Op.CREATE, key, run_name=run_name, tags=tags, parent=parent, time=_now_ms()
        )

    def params(self, key: str, params: dict[str, str]) -> int:
        return self.append(Op.PARAMS, key, params=params)

    def metrics(self, key: str, metrics: dict[str, float], step: int) -> int:
        return self.append(Op.METRICS, key, metrics=metrics, step=int(step), time=_now_ms())

    def tags(self, key: str, tags: dict[str, str]) -> int:
        return self.append(Op.TAGS, key, tags=tags)

    def status(self, key: str, status: str) -> int:
        return self.append(Op.STATUS, key, status=status, time=_now_ms())

    def artifacts(self, key: str, path: Path, artifact_path: str | None) -> int:
        """Files to upload: a path inside the journal's sweep directory is stored relative."""
        return self.append(
            Op.ARTIFACTS, key, path=_relative(path, self.directory.parent), into=artifact_path
        )

    def text(self, key: str, text: str, artifact_file: str) -> int:
        return self.append(Op.TEXT, key, text=text, file=artifact_file)

    def untag(self, key: str, names: list[str]) -> int:
        """Tags removed from the run (e.g. an error tag once the trial finished)."""
        return self.append(Op.UNTAG, key, names=sorted(names))

    def remove_artifact(self, key: str, artifact_path: str) -> int:
        """An artifact file or directory removed from the run."""
        return self.append(Op.REMOVE_ARTIFACT, key, path=artifact_path)

    def delete(self, key: str) -> int:
        """The run deleted from the record (MLflow keeps it as a deleted run: `mlflow gc`
        removes it for good, `mlflow runs restore` brings it back)."""
        return self.append(Op.DELETE, key, time=_now_ms())

    def hook(self, name: str) -> int:
        """A point in the record where a consumer has work to do (e.g. "tables": log the
        comparison tables once everything before it is in the store)."""
        return self.append(Op.HOOK, PARENT, name=name)


def read_events(path: Path, after: int = 0, *, repair: bool = False) -> Iterator[dict[str, Any]]:
    """The complete events of a journal file with seq > `after`, in order.

    A last line without its newline is an append cut short by a crash: it is skipped, and with
    `repair` cut off the file (only its writer may repair it). A garbled complete line is an
    error naming the file and the line.
    """
    if not path.exists():
        return
    with open(path, "rb") as handle:
        offset = 0
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                if repair:
                    os.truncate(path, offset)
                return
            offset += len(line)
            try:
                event = json.loads(line)
                seq = int(event["seq"])
            except (ValueError, KeyError, TypeError):
                raise UserError(f"line {number} is not a journal event", where=path) from None
            if seq > after:
                yield event


def _now_ms() -> int:
    return int(time.time() * 1000)


def _relative(path: Path, base: Path) -> str:
    path = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(base.resolve()))
    return str(path)


# -- acknowledgements ----------------------------------------------------------------------------
def ack_path(directory: Path, uri: str) -> Path:
    """Where the progress of `directory`'s journal into store `uri` is kept."""
    digest = hashlib.sha256(display_uri(uri).encode()).hexdigest()[:12]
    return directory / f"ack-{digest}.json"


@dataclass
class Ack:
    """How far a journal has been replayed into one store, and that store's ids."""

    uri: str  # without credentials
    seq: int = 0
    experiment_id: str | None = None
    runs: dict[str, str] = field(default_factory=dict)  # key -> MLflow run id

    @classmethod
    def load(cls, path: Path, uri: str) -> Ack:
        if not path.exists():
            return cls(display_uri(uri))
        try:
            data = json.loads(path.read_text())
            return cls(data["uri"], int(data["seq"]), data["experiment_id"], dict(data["runs"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"unreadable tracking acknowledgement ({exc})", where=path) from None

    def save(self, path: Path) -> None:
        write_json(path, self.__dict__)


# -- replay into MLflow --------------------------------------------------------------------------
Notify = Callable[[str], None]
OnHook = Callable[[str, "Drainer"], None]


class Drainer:
    """Replays a journal into the MLflow store at `uri`, from its last acknowledged event.

    `drain()` sends what is there now (raising on a store error, with nothing acknowledged that
    was not sent); `run()` keeps draining in the background, through outages (a sweep runs it
    in a child process, `DrainerProcess`, so it never competes with Tune's controller thread
    for the driver's GIL).
    """

    def __init__(
        self,
        directory: Path,
        uri: str,
        *,
        execution: str,
        notify: Notify | None = None,
        on_hook: OnHook | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self.directory = directory
        self.journal_path = directory / JOURNAL_FILE
        self.uri = uri
        self.execution = execution
        self.notify = notify or (lambda line: None)
        self.on_hook = on_hook
        self.max_backoff = max_backoff
        self.ack_file = ack_path(directory, uri)
        self.ack = Ack.load(self.ack_file, uri)
        self._client: Any = None
        self._status: dict[str, str] = {}  # run id -> status in the store, as far as known
        self._offset = 0  # byte offset in the journal up to which everything is acknowledged
        self._found: bool = False  # this execution's runs in the store have been looked up
        self._wake = threading.Event()  # ends a backoff pause or a poll wait early
        self.lags: list[float] = []  # journal append -> acknowledged, seconds (metric events)
        self.error: str | None = None  # the last store error while behind, else None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client_for(self.uri)
        return self._client

    def pending(self) -> int:
        """Events journaled but not yet acknowledged by this store."""
        return max(_last_seq(self.journal_path) - self.ack.seq, 0)

    def run_id(self, key: str) -> str | None:
        """The store's run id of run key `key`, once it has been created there."""
        return self.ack.runs.get(key)

    # -- foreground ------------------------------------------------------------------------------
    def drain(self) -> int:
        """Send every complete event after the acknowledged one; return how many were sent."""
        sent = 0
        while True:
            chunk, offset = self._read_chunk()
            if not chunk:
                return sent
            self._apply(chunk)
            self.ack.seq = int(chunk[-1]["seq"])
            self.ack.save(self.ack_file)
            self._offset = offset
            now = time.time() * 1000
            self.lags.extend((now - e["time"]) / 1000 for e in chunk if e["op"] == Op.METRICS)
            sent += len(chunk)

    def _read_chunk(self) -> tuple[list[dict[str, Any]], int]:
        """Up to CHUNK_EVENTS complete events after the acknowledged one, and the file offset
        after the last of them (reading resumes there, so a sweep's drain stays linear)."""
        chunk: list[dict[str, Any]] = []
        if not self.journal_path.exists():
            return chunk, self._offset
        with open(self.journal_path, "rb") as handle:
            handle.seek(self._offset)
            offset = self._offset
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # an append in progress
                offset += len(line)
                try:
                    event = json.loads(line)
                    seq = int(event["seq"])
                except (ValueError, KeyError, TypeError):
                    raise UserError(
                        f"a line at byte {offset - len(line)} is not a journal event",
                        where=self.journal_path,
                    ) from None
                if seq <= self.ack.seq:
                    self._offset = offset  # acknowledged before: skip it for good
                    continue
                chunk.append(event)
                if len(chunk) >= CHUNK_EVENTS:
                    break
        return chunk, offset

    # -- background ------------------------------------------------------------------------------
    def run(
        self, should_stop: Callable[[], bool], poll: float = POLL_S, linger: float = LINGER_S
    ) -> None:
        """Drain until `should_stop()`: poll the journal, send what is new (at most every
        `linger` s, so a busy sweep's results reach MLflow in fewer, larger batches), and through
        a store outage retry with capped exponential backoff, saying once that tracking fell
        behind and once that it caught up. `wake()` cuts a pause short."""
        backoff = 0.0
        last_sync = last_drain = time.monotonic()
        while not should_stop():
            if time.monotonic() - last_sync > 1.0:
                _fsync(self.journal_path)
                last_sync = time.monotonic()
            if backoff or not self._has_more():
                self._wake.wait(backoff or poll)
                self._wake.clear()
                if not backoff:
                    continue
            elif time.monotonic() - last_drain < linger:
                self._wake.wait(linger - (time.monotonic() - last_drain))
                self._wake.clear()
            last_drain = time.monotonic()
            try:
                self.drain()
            except Exception as exc:  # a store outage: keep everything, retry later
                backoff = min(max(2 * backoff, 0.5), self.max_backoff)
                if self.error is None:
                    self.notify(
                        f"tracking: {display_uri(self.uri)} is not answering ({_cause(exc)}); "
                        f"the sweep goes on, {self.pending()} events wait in {self.journal_path}"
                    )
                self.error = _cause(exc)
                continue
            if self.error is not None:
                self.notify(f"tracking: {display_uri(self.uri)} is back; the backlog is sent")
                self.error = None
            backoff = 0.0
        _fsync(self.journal_path)

    def wake(self) -> None:
        """Retry now (ends a backoff pause or a poll wait)."""
        self._wake.set()

    def _has_more(self) -> bool:
        """Whether the journal has grown past what has been read and acknowledged."""
        try:
            return self.journal_path.stat().st_size > self._offset
        except FileNotFoundError:
            return False

    # -- one chunk -------------------------------------------------------------------------------
    def _apply(self, events: list[dict[str, Any]]) -> None:
        """Send a chunk of events, batching params/metrics/tags per run between other events."""
        batches: dict[str, _Batch] = {}
        if self.ack.experiment_id is not None:
            self._find_runs()  # what the store holds already, deleted runs included
        for event in events:
            key = event["key"]
            try:
                op = Op(event["op"])
            except ValueError:
                raise UserError(
                    f"unknown journal event {event['op']!r}", where=self.journal_path
                ) from None
            if op != Op.CREATE and self._status.get(self.ack.runs.get(key, "")) == DELETED:
                continue  # a run deleted from the record takes nothing more (a replay)
            if op in BATCHED:
                batches.setdefault(key, _Batch()).add(event)
                continue
            # what was batched goes first: every batch before a hook, else the run's own
            before = list(batches) if op == Op.HOOK else [k for k in (key,) if k in batches]
            for other in before:
                self._send(other, batches.pop(other))
            APPLY[op](self, key, event)
        for key, batch in batches.items():
            self._send(key, batch)

    def _run(self, key: str) -> str:
        run_id = self.ack.runs.get(key)
        if run_id is None:
            raise UserError(f"an event for run {key!r} precedes its creation", self.journal_path)
        return run_id

    def _experiment(self, name: str) -> None:
        if self.ack.experiment_id is None:
            self.ack.experiment_id = ensure_experiment(
                self.client, name, artifact_root_for(self.uri)
            )

    def _find_runs(self) -> None:
        """Once per drainer: the runs of this execution the store already has (a crash may have
        come between creating one and acknowledging it)."""
        if self._found:
            return
        self._found = True
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.client.search_runs(
                [self.ack.experiment_id],
                filter_string=f"tags.`{EXECUTION_TAG}` = '{self.execution}'",
                run_view_type=ViewType.ALL,  # a deleted orphan is found, not created again
                max_results=1000,
                page_token=token,
            )
            for run in page:
                key = run.data.tags.get(TRIAL_TAG, PARENT)
                self.ack.runs.setdefault(key, run.info.run_id)
                deleted = run.info.lifecycle_stage == "deleted"
                self._status[run.info.run_id] = DELETED if deleted else run.info.status
            token = page.token
            if not token:
                return

    def _create(self, event: dict[str, Any]) -> None:
        key = event["key"]
        if key not in self.ack.runs:
            self._find_runs()
        if key in self.ack.runs:
            return  # created before an acknowledgement was lost: the events after it follow
        tags = {**event["tags"], EXECUTION_TAG: self.execution}
        if event.get("parent"):
            tags[PARENT_TAG] = self._run(event["parent"])
        run = self.client.create_run(
            self.ack.experiment_id, start_time=event["time"], tags=tags, run_name=event["run_name"]
        )
        self.ack.runs[key] = run.info.run_id
        self._status[run.info.run_id] = "RUNNING"

    def _set_status(self, key: str, status: str, end_time: int | None) -> None:
        run_id = self._run(key)
        if status == self._status.get(run_id) or self._status.get(run_id) == "FINISHED":
            return  # nothing to do, or a status going backwards
        if status in TERMINAL:
            self.client.set_terminated(run_id, status, end_time=end_time)
        else:
            self.client.update_run(run_id, status=status)
        self._status[run_id] = status

    def _untag(self, key: str, names: list[str]) -> None:
        run_id = self._run(key)
        tags = self.client.get_run(run_id).data.tags
        for name in names:
            if name in tags:
                self.client.delete_tag(run_id, name)

    def _remove_artifact(self, key: str, artifact_path: str) -> None:
        """Remove an artifact through the run's artifact repository (local, proxied by a
        server, or cloud); gone already is fine."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        run = self.client.get_run(self._run(key))
        names = {f.path for f in self.client.list_artifacts(run.info.run_id)}
        if artifact_path in names:
            get_artifact_repository(run.info.artifact_uri).delete_artifacts(artifact_path)

    def _delete(self, key: str) -> None:
        run_id = self._run(key)
        if self._status.get(run_id) != DELETED:
            self.client.delete_run(run_id)
            self._status[run_id] = DELETED

    def _artifacts(self, key: str, event: dict[str, Any]) -> None:
        path = Path(event["path"])
        if not path.is_absolute():
            path = self.directory.parent / path
        if path.is_dir():
            self.client.log_artifacts(self._run(key), str(path), event["into"])
        elif path.exists():
            self.client.log_artifact(self._run(key), str(path), event["into"])

    def _send(self, key: str, batch: _Batch) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._run(key)
        params = [Param(k, v) for k, v in batch.params.items()]
        tags = [RunTag(k, v) for k, v in batch.tags.items()]
        metrics = [Metric(k, v, t, s) for k, v, t, s in batch.metrics]
        for i in range(0, len(params), MAX_BATCH_PARAMS):
            self.client.log_batch(run_id, params=params[i : i + MAX_BATCH_PARAMS])
        for i in range(0, len(tags), MAX_BATCH_TAGS):
            self.client.log_batch(run_id, tags=tags[i : i + MAX_BATCH_TAGS])
        for i in range(0, len(metrics), MAX_BATCH_METRICS):
            self.client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH_METRICS])


@dataclass
class _Batch:
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)

    def add(self, event: dict[str, Any]) -> None:
        if event["op"] == Op.PARAMS:
            self.params.update(event["params"])
        elif event["op"] == Op.TAGS:
            self.tags.update(event["tags"])
        else:
            self.metrics.extend(
                (k, float(v), event["time"], event["step"]) for k, v in event["metrics"].items()
            )


def _last_seq(path: Path) -> int:
    last = 0
    for event in read_events(path):
        last = int(event["seq"])
    return last


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cause(exc: BaseException) -> str:
    """A short reason for a store error (MLflow's messages can span a page)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if disk_full(exc) or "database or disk is full" in text:
        return "its disk is full"
    return text if len(text) <= 160 else text[:157] + "..."


# -- the drainer as a child process --------------------------------------------------------------
def _hook(drainer: Drainer, key: str, event: dict[str, Any]) -> None:
    if drainer.on_hook is not None:
        drainer.on_hook(event["name"], drainer)


# How a replay applies each event that is not batched (one entry per unbatched `Op`).
APPLY: dict[Op, Callable[[Drainer, str, dict[str, Any]], None]] = {
    Op.EXPERIMENT: lambda d, key, e: d._experiment(e["name"]),
    Op.CREATE: lambda d, key, e: d._create(e),
    Op.STATUS: lambda d, key, e: d._set_status(key, e["status"], e["time"]),
    Op.ARTIFACTS: lambda d, key, e: d._artifacts(key, e),
    Op.TEXT: lambda d, key, e: d.client.log_text(d._run(key), e["text"], e["file"]),
    Op.UNTAG: lambda d, key, e: d._untag(key, e["names"]),
    Op.REMOVE_ARTIFACT: lambda d, key, e: d._remove_artifact(key, e["path"]),
    Op.DELETE: lambda d, key, e: d._delete(key),
    Op.HOOK: _hook,
}
assert set(APPLY) | BATCHED == set(Op), "every journal event kind is applied or batched"


class DrainerProcess:
    """`Drainer.run` in a child process of the sweep driver (`python -m sedsweep.journal`).

    The driver's controller thread then shares no interpreter lock with MLflow's client or SQL
    store. The child reads the journal file and writes the acknowledgement file, so the driver
    learns its progress from that file; its warnings go to the driver's stderr. It stops on
    SIGTERM after its current request, retries at once on SIGUSR1, runs in its own process
    group (a terminal's Ctrl-C reaches the driver, which decides), and exits by itself when the
    driver is gone (the journal keeps what was not sent, for `sedsweep resume` or `sync`).
    """

    def __init__(self, directory: Path, uri: str, execution: str) -> None:
        self.directory = directory
        self.uri = uri
        self.execution = execution
        self.proc: Any = None

    def start(self) -> None:
        import subprocess
        import sys

        # The child starts with our signals blocked and unblocks them once its handlers are
        # in place: a SIGUSR1 nudge during its start-up would otherwise kill it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sedsweep.journal", str(self.directory), self.uri,
                 self.execution, "--parent", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                process_group=0,  # Ctrl-C in a terminal reaches the driver, which decides
            )  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def acknowledged(self) -> int:
        """The last sequence number the store has acknowledged."""
        return Ack.load(ack_path(self.directory, self.uri), self.uri).seq

    def wait(self, last_seq: int, timeout: float) -> bool:
        """Wait up to `timeout` s for the store to acknowledge `last_seq`; True when it has."""
        deadline = time.monotonic() + timeout
        nudged = 0.0
        while self.acknowledged() < last_seq:
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            if time.monotonic() - nudged > 1.0:  # retry now rather than after a long backoff
                self._signal(signal.SIGUSR1)
                nudged = time.monotonic()
            time.sleep(POLL_S)
        return True

    def stop(self) -> None:
        """Ask the child to stop after its current request; kill it if it takes too long."""
        import subprocess

        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # safe: the journal and the acknowledgement file are crash-safe
            self.proc.wait()
        self.proc = None

    def lags(self) -> list[float]:
        """Seconds from journaling a metric to its acknowledgement, as the child measured."""
        path = self.directory / STATS_FILE
        with contextlib.suppress(OSError, ValueError, KeyError):
            return [float(x) for x in json.loads(path.read_text())["lags"]]
        return []

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)


def main(argv: list[str] | None = None) -> int:
    """The child process of `DrainerProcess`: drain DIRECTORY into URI until told to stop."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m sedsweep.journal")
    parser.add_argument("directory", type=Path)
    parser.add_argument("uri")
    parser.add_argument("execution")
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    # the store's errors reach the user as one line each ("is not answering (...)"), not as
    # the tracebacks MLflow's SQL store logs for every failed attempt
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    drainer = Drainer(
        args.directory, args.uri, execution=args.execution,
        notify=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()
        drainer.wake()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, lambda signum, frame: drainer.wake())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)
    with contextlib.suppress(OSError):
        os.nice(DRAINER_NICE)  # tracking is background work: lag is cheap, a slower sweep is not
    drainer.run(lambda: stopping.is_set() or os.getppid() != args.parent)
    with contextlib.suppress(UserError, OSError):  # statistics only: a full disk may refuse them
        write_json(args.directory / STATS_FILE, {"lags": drainer.lags})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
