"""Journaled tracking against a real `mlflow server` on a real PostgreSQL that goes away.

Sweeps of the `null` method (it sleeps instead of training, so timings are predictable) run
as `sedsweep` subprocesses on a local Ray; the server is stopped and started again on the same
port while they run. Every check reads the record back through the server's REST API: each
child run exists once, each epoch of each trial is there once, statuses are right.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import CliProcess, MlflowServer, Postgres, free_port, http
from tests.test_mlflow_server import experiment, history, kv, list_artifacts, search_runs, split

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NULL = ROOT / "search_spaces" / "null_load.yaml"
PARENT_LINE = r"MLflow parent run (\w+) in "
TIMEOUT_S = 400


@dataclass
class Server:
    """A plain `mlflow server` on its own database, which tests stop and start again."""

    postgres: Postgres
    db_uri: str
    workdir: Path
    port: int
    current: MlflowServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.current = MlflowServer.start(self.db_uri, self.workdir, port=self.port)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture
def new_server(postgres, tmp_path_factory):
    """A factory of servers (each on a fresh database); all are stopped at the end."""
    made: list[Server] = []

    def make() -> Server:
        name = f"t{uuid.uuid4().hex[:10]}"
        db = postgres.create_database(name, f"u_{name}", uuid.uuid4().hex)
        server = Server(postgres, db, tmp_path_factory.mktemp(name), free_port())
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def null_sweep(workdir: Path, uri: str, trials: int, epochs: int, sleep_s: float, *extra: str):
    args = [
        "sweep", str(NULL), "--scale", "tiny", "--workdir", str(workdir), "--tracking-uri", uri,
        "--set", f"budget.trials={trials}", "--set", f"budget.max_epochs={epochs}",
        "--set", "budget.max_concurrent=2", "--set", f"fixed.sleep_s={sleep_s}", *extra,
    ]  # fmt: skip
    return CliProcess(args, workdir / f"sweep-{uuid.uuid4().hex[:6]}.log", cwd=ROOT)


def record(server: MlflowServer, name: str = "null_load") -> dict[str, tuple]:
    """The sweep's runs through REST, by run name: status, params, tags (ids left out) and the
    (step, value, timestamp) history of every metric."""
    exp = experiment(server, name)
    runs = search_runs(server, exp["experiment_id"])
    names = {r["info"]["run_id"]: r["info"]["run_name"] for r in runs}
    out = {}
    for run in runs:
        tags = kv(run["data"].get("tags"))
        tags = {k: v for k, v in tags.items() if k not in {"mlflow.parentRunId", "mlflow.user"}}
        parent = kv(run["data"].get("tags")).get("mlflow.parentRunId")
        histories = {
            m["key"]: [
                (int(p["step"]), float(p["value"]), int(p["timestamp"]))
                for p in history(server, run["info"]["run_id"], m["key"])
            ]
            for m in run["data"].get("metrics", [])
        }
        name = run["info"]["run_name"]
        assert name not in out, f"two runs named {name}"
        out[name] = (run["info"]["status"], kv(run["data"].get("params")), tags,
                     names.get(parent), histories)  # fmt: skip
    return out


def assert_complete(server: MlflowServer, trials: int, epochs: int) -> dict[str, tuple]:
    """One FINISHED parent, `trials` FINISHED children, every epoch logged exactly once."""
    exp = experiment(server, "null_load")
    parents, children = split(search_runs(server, exp["experiment_id"]))
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED", parents
    assert len(children) == trials, [c["info"]["run_name"] for c in children]
    assert len({kv(c["data"]["tags"])["sweep.trial_id"] for c in children}) == trials
    for child in children:
        assert child["info"]["status"] == "FINISHED", child["info"]
        for key in ("val/score", "train/loss", "epoch"):
            steps = [int(p["step"]) for p in history(server, child["info"]["run_id"], key)]
            assert steps == list(range(1, epochs + 1)), (child["info"]["run_name"], key, steps)
    tags = kv(parents[0]["data"]["tags"])
    assert tags["sweep.completed"] == str(trials) and tags["sweep.missing"] == "0"
    return record(server)


# -- waiting on the journal, not on the clock ----------------------------------------------------
def journal_progress(workdir: Path) -> tuple[int, int]:
    """(events journaled, events the store acknowledged) of the sweep under `workdir`."""
    import json

    journaled = acknowledged = 0
    for journal in workdir.glob("ray/*/tracking/journal.jsonl"):
        lines = journal.read_bytes().splitlines()
        journaled += json.loads(lines[-1])["seq"] if lines else 0
        for ack in journal.parent.glob("ack-*.json"):
            with contextlib.suppress(OSError, ValueError):  # being replaced
                acknowledged += json.loads(ack.read_text())["seq"]
    return journaled, acknowledged


def wait_until(what: str, ready: Callable[[], bool], sweep: CliProcess, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not ready():
        if sweep.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never {what}:\n{sweep.output[-3000:]}")
        time.sleep(0.1)


def acknowledged_epochs(workdir: Path, sweep: CliProcess, events: int) -> None:
    """Wait until the store has acknowledged `events` events (the trials' first epochs)."""
    wait_until(f"{events} events acknowledged",
               lambda: journal_progress(workdir)[1] >= events, sweep)  # fmt: skip


def backlog(workdir: Path, sweep: CliProcess, events: int) -> None:
    """Wait until `events` journaled events wait for the store."""

    def grown() -> bool:
        journaled, acknowledged = journal_progress(workdir)
        return journaled - acknowledged >= events

    wait_until(f"a backlog of {events} events", grown, sweep)


# -- an outage in the middle ---------------------------------------------------------------------
TRIALS, EPOCHS = 6, 8


@dataclass
class Outage:
    server: Server
    sweep: CliProcess
    code: int
    timeline: dict[str, float]


@pytest.fixture(scope="module")
def outage(postgres, tmp_path_factory):
    """A 6-trial sweep (about 25 s of epochs); its server is killed once the store has the
    trials' first epochs, and started again on the same port once the driver has said it is
    not answering and a backlog of 20 events waits in the journal."""
    name = f"o{uuid.uuid4().hex[:10]}"
    server = Server(
        postgres,
        postgres.create_database(name, f"u_{name}", uuid.uuid4().hex),
        tmp_path_factory.mktemp(name),
        free_port(),
    )
    server.start()
    workdir = tmp_path_factory.mktemp("outage")
    sweep = null_sweep(workdir, server.url, TRIALS, EPOCHS, 1.0)
    timeline = {}
    try:
        timeline["parent run created"] = sweep.wait_for(PARENT_LINE, 120)
        acknowledged_epochs(workdir, sweep, 12)
        server.stop()
        timeline["server killed"] = time.monotonic() - sweep.started
        timeline["outage seen"] = sweep.wait_for("is not answering", 120)
        backlog(workdir, sweep, 20)
        server.start()
        timeline["server back"] = time.monotonic() - sweep.started
        code = sweep.finish(TIMEOUT_S)
        timeline["sweep exited"] = sweep.seconds
        yield Outage(server, sweep, code, timeline)
    finally:
        sweep.cleanup()
        server.stop()


def test_an_outage_mid_sweep_loses_and_duplicates_nothing(outage):
    out = outage.sweep.output
    print("outage timeline (s since start):", outage.timeline)
    assert outage.code == 0, out[-4000:]
    assert not outage.sweep.leftovers, outage.sweep.leftovers
    assert outage.timeline["sweep exited"] > outage.timeline["server back"], outage.timeline
    assert len(re.findall("is not answering", out)) == 1, out[-4000:]
    assert len(re.findall("is back; the backlog is sent", out)) == 1, out[-4000:]
    assert "Traceback" not in out
    assert "sync" not in out  # nothing left for `sedsweep sync`
    assert_complete(outage.server.current, TRIALS, EPOCHS)


def test_sync_into_a_second_empty_server_reproduces_the_sweep(outage, new_server):
    first = assert_complete(outage.server.current, TRIALS, EPOCHS)
    second = new_server()
    sweep_dir = re.search(r"Ray results in (\S+)", outage.sweep.output).group(1)
    sync = CliProcess(["sync", sweep_dir, "--tracking-uri", second.url],
                      Path(sweep_dir).parent / "sync.log", cwd=ROOT)  # fmt: skip
    assert sync.finish(120) == 0, sync.output[-3000:]
    assert "MLflow parent run" in sync.output
    assert record(second.current) == first
    parent = next(run for run in first if not run.startswith("t0"))
    parents, _ = split(search_runs(second.current, experiment(second.current, "null_load")[
        "experiment_id"]))  # fmt: skip
    listed = {f["path"] for f in list_artifacts(second.current, parents[0]["info"]["run_id"])}
    assert {"sweep.yaml", "tables"} <= listed, (parent, listed)  # the replay logged the tables


# -- down at the end, then `sedsweep sync` -------------------------------------------------------
def test_server_down_at_the_end_exits_nonzero_and_sync_completes(new_server, tmp_path):
    server = new_server()
    sweep = null_sweep(tmp_path, server.url, 4, 6, 0.5, "--tracking-drain-timeout", "5")
    try:
        sweep.wait_for(PARENT_LINE, 120)
        acknowledged_epochs(tmp_path, sweep, 8)
        server.stop()
        code = sweep.finish(TIMEOUT_S)
    finally:
        sweep.cleanup()
    out = sweep.output
    assert code == 1, out[-4000:]
    hint = re.search(
        r"tracking: (\d+) events not yet in the tracking store; "
        r"send them with: sedsweep sync (\S+)",
        out,
    )
    assert hint and int(hint.group(1)) > 0, out[-3000:]
    assert "Traceback" not in out and "resume" not in out
    server.start()
    sync = CliProcess(["sync", hint.group(2)], tmp_path / "sync.log", cwd=ROOT)
    assert sync.finish(120) == 0, sync.output[-3000:]
    assert f"sent {hint.group(1)} journaled events to {server.url}" in sync.output
    assert_complete(server.current, 4, 6)
    again = CliProcess(["sync", hint.group(2)], tmp_path / "again.log", cwd=ROOT)
    assert again.finish(120) == 0 and "sent 0 journaled events" in again.output


# -- the driver killed with a backlog, then resumed ----------------------------------------------
def test_driver_sigkill_with_a_backlog_then_resume(new_server, tmp_path):
    server = new_server()
    sweep = null_sweep(tmp_path, server.url, 4, 8, 1.0)
    try:
        sweep.wait_for(PARENT_LINE, 120)
        acknowledged_epochs(tmp_path, sweep, 12)
        server.stop()  # what follows piles up in the journal
        backlog(tmp_path, sweep, 6)
        sweep.kill()
    finally:
        sweep.cleanup()
    journal = next(tmp_path.glob("ray/*/tracking/journal.jsonl"))
    acks = list(journal.parent.glob("ack-*.json"))
    assert len(acks) == 1
    import json

    lines = journal.read_text().splitlines()
    assert int(json.loads(lines[-1])["seq"]) > json.loads(acks[0].read_text())["seq"]
    server.start()
    resume = CliProcess(["resume", str(tmp_path)], tmp_path / "resume.log", cwd=ROOT)
    assert resume.finish(TIMEOUT_S) == 0, resume.output[-4000:]
    assert not resume.leftovers, resume.leftovers
    assert_complete(server.current, 4, 8)


# -- failing fast ---------------------------------------------------------------------------------
def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sedsweep: error:")]


def test_unreachable_server_at_start_is_exit_2_before_anything_runs(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    sweep = null_sweep(tmp_path, uri, 2, 2, 0.0)
    code = sweep.finish(120)
    assert code == 2, sweep.output
    assert error_lines(sweep.output) == [
        f"sedsweep: error: {uri}: MLflow tracking store not usable: no answer"
    ], sweep.output
    assert "Traceback" not in sweep.output
    assert sweep.seconds < 20, sweep.seconds
    assert not sweep.leftovers  # no Ray was started
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()


def test_wrong_password_at_start_is_exit_2(postgres, tmp_path):
    name = f"a{uuid.uuid4().hex[:10]}"
    server = MlflowServer.start(
        postgres.create_database(name, f"u_{name}", uuid.uuid4().hex),
        tmp_path / "server",
        auth_database_uri=postgres.create_database(f"{name}_users", f"v_{name}", uuid.uuid4().hex),
    )
    try:
        assert http(f"{server.url}/health").status == 200
        args = ["sweep", str(NULL), "--scale", "tiny", "--workdir", str(tmp_path),
                "--tracking-uri", server.url]  # fmt: skip
        env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"}
        sweep = CliProcess(args, tmp_path / "sweep.log", env=env, cwd=ROOT)
        assert sweep.finish(120) == 2, sweep.output
        assert error_lines(sweep.output) == [
            f"sedsweep: error: {server.url}: MLflow tracking store not usable: it refused the "
            "credentials (set MLFLOW_TRACKING_USERNAME/PASSWORD)"
        ], sweep.output
        assert not sweep.leftovers and not (tmp_path / "ray").exists()
    finally:
        server.stop()
