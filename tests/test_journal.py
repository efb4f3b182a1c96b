"""The tracking journal and its replay into real MLflow stores (SQLite here; the server tests
in tests/test_tracking_outage.py take it through outages of a real `mlflow server`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sedsweep.errors import UserError
from sedsweep.journal import (
    JOURNAL_FILE,
    MAX_BATCH_METRICS,
    PARENT,
    Drainer,
    DrainerProcess,
    Journal,
    ack_path,
    read_events,
)
from sedsweep.tracking import (
    EXECUTION_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    artifact_root_for,
    client_for,
    display_uri,
    new_sqlite_store,
    probe,
    ui_base,
)
from tests.servers import free_port

EXECUTION = "exec-test"


def store(tmp_path: Path, name: str = "mlflow.db") -> str:
    """A new SQLite store (a copy of the migrated empty one: tracking.new_sqlite_store)."""
    new_sqlite_store(tmp_path / name)
    return f"sqlite:///{tmp_path / name}"


def record(journal: Journal, *, children: int = 2, epochs: int = 3, figures: Path | None = None):
    """A small sweep's worth of events: experiment, parent, children with params, metrics,
    tags, an artifact, a text, the tables hook and final statuses."""
    journal.experiment("exp")
    journal.create(PARENT, "the-parent", {"sweep.trials_planned": str(children)})
    journal.text(PARENT, "name: exp\n", "sweep.yaml")
    for i in range(children):
        key = f"trial{i}"
        journal.create(key, f"t{i:03d} x={i}", {TRIAL_TAG: key}, parent=PARENT)
        journal.params(key, {"x": str(i), "method": "null"})
        for epoch in range(1, epochs + 1):
            journal.metrics(key, {"val/score": i + epoch / 10, "epoch": float(epoch)}, epoch)
        journal.tags(key, {"sweep.node_id": "node"})
        if figures is not None:
            journal.artifacts(key, figures, "figures")
        journal.status(key, "FINISHED")
    journal.metrics(PARENT, {"best/val/score": 1.3}, 0)
    journal.hook("tables")
    journal.status(PARENT, "FINISHED")


def runs_of(uri: str) -> dict[str, object]:
    """Every run of experiment `exp`, by name: (status, params, tags without ids, histories)."""
    client = client_for(uri)
    exp = client.get_experiment_by_name("exp")
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        histories = {
            key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(
                run.info.run_id, key))
            for key in run.data.metrics
        }  # fmt: skip
        tags = {
            k: v
            for k, v in run.data.tags.items()
            if not k.startswith("mlflow.") or k == "mlflow.runName"
        }
        assert run.info.run_name not in out, f"two runs named {run.info.run_name}"
        out[run.info.run_name] = (run.info.status, run.data.params, tags, histories)
    return out


# -- the journal file ---------------------------------------------------------------------------
def test_appends_are_numbered_and_a_reopened_journal_continues(tmp_path):
    journal = Journal(tmp_path / "j")
    record(journal, children=1)
    last = journal.seq
    journal.close()
    again = Journal.at(tmp_path / "j")
    assert again.seq == last
    assert again.state("trial0").created and again.state("trial0").status == "FINISHED"
    assert again.state("trial0").last_step == 3 and "sweep.node_id" in again.state("trial0").tags
    assert again.hooks == {"tables"}
    assert again.append("status", PARENT, status="RUNNING", time=0) == last + 1
    seqs = [e["seq"] for e in read_events(again.path)]
    assert seqs == list(range(1, last + 2))
    again.close()


def test_a_torn_last_line_is_cut_off_and_a_garbled_one_is_an_error(tmp_path):
    journal = Journal(tmp_path / "j")
    journal.experiment("exp")
    journal.create(PARENT, "p", {})
    journal.close()
    path = tmp_path / "j" / JOURNAL_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq":3,"op":"tags","key":"par')  # a crash mid-append
    reopened = Journal(tmp_path / "j")
    assert reopened.seq == 2 and path.read_bytes() == whole
    assert reopened.append("tags", PARENT, tags={"a": "b"}) == 3
    reopened.close()
    path.write_bytes(whole + b"not json\n")
    with pytest.raises(UserError, match=f"{path}: line 3 is not a journal event"):
        Journal(tmp_path / "j")


def test_a_replay_refuses_an_event_kind_it_does_not_know(tmp_path):
    """Event kinds are a closed set (journal.Op): an unknown one stops the replay with the
    journal's path, and the chunk that holds it is not acknowledged."""
    journal = Journal(tmp_path / "j")
    journal.experiment("exp")
    journal.create(PARENT, "p", {})
    journal.close()
    path = tmp_path / "j" / JOURNAL_FILE
    with open(path, "a") as handle:
        handle.write('{"seq":3,"op":"rename","key":"parent","name":"q"}\n')
    drainer = Drainer(tmp_path / "j", store(tmp_path), execution=EXECUTION)
    with pytest.raises(UserError, match=f"{path}: unknown journal event 'rename'"):
        drainer.drain()
    assert drainer.ack.seq < 3


def test_appends_from_many_threads_get_distinct_consecutive_numbers(tmp_path):
    journal = Journal(tmp_path / "j")

    def write(n: int) -> None:
        for i in range(200):
            journal.metrics(f"k{n}", {"m": float(i)}, i + 1)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e["seq"] for e in read_events(journal.path)]
    assert seqs == list(range(1, 801))
    journal.close()


# -- replay into a store ------------------------------------------------------------------------
def test_drain_writes_the_record_and_acknowledges_it(tmp_path):
    figures = tmp_path / "sweep" / "ckpt" / "figures"
    figures.mkdir(parents=True)
    (figures / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    journal = Journal(tmp_path / "sweep" / "tracking")
    record(journal, figures=figures)
    uri = store(tmp_path)
    drainer = Drainer(journal.directory, uri, execution=EXECUTION)
    assert drainer.pending() == journal.seq
    assert drainer.drain() == journal.seq and drainer.pending() == 0
    runs = runs_of(uri)
    assert set(runs) == {"the-parent", "t000 x=0", "t001 x=1"}
    status, params, tags, histories = runs["t001 x=1"]
    assert status == "FINISHED" and params == {"x": "1", "method": "null"}
    assert tags[TRIAL_TAG] == "trial1" and tags[EXECUTION_TAG] == EXECUTION
    assert [(s, v) for s, v, _ in histories["val/score"]] == [(1, 1.1), (2, 1.2), (3, 1.3)]
    client = client_for(uri)
    exp = client.get_experiment_by_name("exp")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    parent = drainer.run_id(PARENT)
    child = client.get_run(drainer.run_id("trial0"))
    assert child.data.tags[PARENT_TAG] == parent
    assert [a.path for a in client.list_artifacts(child.info.run_id, "figures")] == [
        "figures/curve.png"
    ]
    assert [a.path for a in client.list_artifacts(parent)] == ["sweep.yaml"]
    assert Path(exp.artifact_location.removeprefix("file://")) == tmp_path / "mlartifacts"
    ack = json.loads(ack_path(journal.directory, uri).read_text())
    assert ack["seq"] == journal.seq and ack["runs"]["trial1"] == drainer.run_id("trial1")
    journal.close()


def test_replay_after_a_lost_acknowledgement_duplicates_nothing(tmp_path):
    """A crash between writing to the store and saving the acknowledgement: the next drainer
    replays everything, and finds runs, drops identical metrics and keeps statuses."""
    journal = Journal(tmp_path / "j")
    record(journal)
    uri = store(tmp_path)
    Drainer(journal.directory, uri, execution=EXECUTION).drain()
    before = runs_of(uri)
    ack_path(journal.directory, uri).unlink()
    again = Drainer(journal.directory, uri, execution=EXECUTION)
    assert again.pending() == journal.seq
    again.drain()
    assert runs_of(uri) == before
    journal.close()


def test_a_finished_run_never_goes_back_to_running(tmp_path):
    journal = Journal(tmp_path / "j")
    record(journal, children=1)
    journal.status("trial0", "RUNNING")  # e.g. a resumed sweep reopening a finished trial
    journal.metrics("trial0", {"val/score": 9.0}, 4)
    journal.status("trial0", "KILLED")
    uri = store(tmp_path)
    Drainer(journal.directory, uri, execution=EXECUTION).drain()
    status, *_, histories = runs_of(uri)["t000 x=0"]
    assert status == "FINISHED"
    assert [s for s, _, _ in histories["val/score"]] == [1, 2, 3, 4]
    journal.close()


def test_batches_respect_mlflow_limits(tmp_path):
    """One run with more metrics than one log_batch may carry, and 150 params."""
    journal = Journal(tmp_path / "j")
    journal.experiment("exp")
    journal.create(PARENT, "p", {})
    journal.params(PARENT, {f"p{i}": str(i) for i in range(150)})
    steps = 1 + (MAX_BATCH_METRICS * 2) // 20
    for step in range(1, steps + 1):
        journal.metrics(PARENT, {f"m{i}": float(step * i) for i in range(20)}, step)
    uri = store(tmp_path)
    Drainer(journal.directory, uri, execution=EXECUTION).drain()
    _, params, _, histories = runs_of(uri)["p"]
    assert len(params) == 150
    assert len(histories) == 20 and all(len(h) == steps for h in histories.values())
    assert [v for _, v, _ in histories["m7"]] == [7.0 * s for s in range(1, steps + 1)]
    journal.close()


def test_sync_into_a_second_store_reproduces_the_record(tmp_path):
    journal = Journal(tmp_path / "j")
    record(journal, children=3)
    first, second = store(tmp_path, "a.db"), store(tmp_path, "b.db")
    Drainer(journal.directory, first, execution=EXECUTION).drain()
    hooks = []
    into = Drainer(
        journal.directory, second, execution=EXECUTION, on_hook=lambda n, d: hooks.append(n)
    )
    into.drain()
    assert runs_of(second) == runs_of(first)
    assert hooks == ["tables"]
    assert ack_path(journal.directory, first) != ack_path(journal.directory, second)
    journal.close()


def test_an_unreachable_store_keeps_everything_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    journal = Journal(tmp_path / "j")
    record(journal, children=1)
    uri = f"http://127.0.0.1:{free_port()}"
    lines: list[str] = []
    drainer = Drainer(
        journal.directory, uri, execution=EXECUTION, notify=lines.append, max_backoff=0.2
    )
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a refused connection
        drainer.drain()
    assert drainer.pending() == journal.seq and not ack_path(journal.directory, uri).exists()
    stop = threading.Event()
    background = threading.Thread(target=drainer.run, args=(stop.is_set,))
    background.start()
    time.sleep(2.0)  # several retries
    journal.tags(PARENT, {"more": "events"})
    time.sleep(0.5)
    stop.set()
    drainer.wake()
    background.join(timeout=30)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tracking: {uri} is not answering")
    assert f"{journal.seq - 1} events wait in {journal.path}" in lines[0]
    assert drainer.pending() == journal.seq
    journal.close()


def test_the_drainer_process_sends_in_the_background_and_stops_cleanly(tmp_path):
    journal = Journal(tmp_path / "j")
    record(journal, children=2)
    uri = store(tmp_path)
    child = DrainerProcess(journal.directory, uri, EXECUTION)
    child.start()
    try:
        assert child.wait(journal.seq, 60), "the child never caught up"
        journal.metrics("trial0", {"val/score": 5.0}, 4)  # more while it runs
        assert child.wait(journal.seq, 30)
    finally:
        child.stop()
    assert child.proc is None
    _, _, _, histories = runs_of(uri)["t000 x=0"]
    assert [s for s, _, _ in histories["val/score"]] == [1, 2, 3, 4]
    lags = child.lags()
    assert len(lags) == 2 * 3 + 1 + 1 and all(0 <= lag < 60 for lag in lags)
    journal.close()


def test_a_drainer_process_whose_driver_is_gone_exits_by_itself(tmp_path):
    journal = Journal(tmp_path / "j")
    record(journal, children=1)
    started = time.monotonic()  # --parent 1: as if its driver had died (it was re-parented)
    done = subprocess.run(
        [sys.executable, "-m", "sedsweep.journal", str(journal.directory), store(tmp_path),
         EXECUTION, "--parent", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert (journal.directory / "drain-stats.json").exists()
    journal.close()


# -- URIs and the fail-fast probe ---------------------------------------------------------------
def test_credentials_never_leave_a_uri_meant_for_display():
    assert display_uri("http://alice:s3cret@host:5000/x") == "http://host:5000/x"
    assert display_uri("postgresql://u:pw@db/mlflow") == "postgresql://db/mlflow"
    assert display_uri("sqlite:////tmp/a/mlflow.db") == "sqlite:////tmp/a/mlflow.db"
    assert ui_base("https://u:p@mlflow.lab:443/") == "https://mlflow.lab:443"
    assert ui_base("sqlite:////tmp/mlflow.db") == "http://127.0.0.1:5000"
    assert artifact_root_for("sqlite:////data/x/mlflow.db") == Path("/data/x/mlartifacts")
    assert artifact_root_for("http://host") is None
    # too malformed to parse (issue 32: echoed with its password): the credentials go as text
    assert display_uri("http://alice:s3cret@host:99999/x") == "http://host:99999/x"
    assert display_uri("http://alice:s3cret@[::1/x") == "http://[::1/x"
    assert display_uri("http://host/a@b") == "http://host/a@b"  # an @ in the path is no userinfo


def test_a_malformed_tracking_uri_is_one_line_without_its_password(tmp_path, capsys):
    from sedsweep.cli import main

    quick = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
    # (the URI, the warnings before its error: a password that parses is warned about)
    for uri, warnings in (("http://alice:s3cret@127.0.0.1:99999", 1),
                          ("http://alice:s3cret@[::1", 0)):  # fmt: skip
        args = ["sweep", str(quick), "--workdir", str(tmp_path), "--tracking-uri", uri]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "s3cret" not in err and "alice" not in err, err
        *warned, error = err.splitlines()  # one error line
        assert error.startswith("sedsweep: error: http://"), err
        assert len(warned) == warnings, err
        assert all(w.startswith("warning: --tracking-uri carries a password, which `ps` shows")
                   for w in warned), err  # fmt: skip


def test_probe_names_an_unreachable_server_within_seconds():
    uri = f"http://user:pw@127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        probe(uri)
    assert time.monotonic() - started < 15
    text = str(err.value)
    assert text.startswith(f"{display_uri(uri)}: MLflow tracking store not usable")
    assert "pw" not in text and "\n" not in text
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") != "0"  # restored


def test_probe_refuses_an_unknown_scheme():
    with pytest.raises(UserError, match="bogus://x: MLflow tracking store not usable"):
        probe("bogus://x")


# -- the null method's landscape ----------------------------------------------------------------
def test_null_method_follows_its_documented_curve(tmp_path):
    """s(e) = s*·(1 − e^(−e/τ)) + noise, s* = 0.55 + 0.3·exp(−(log10 lr + 3)²/2) + 0.1·q + bonus,
    computed here by hand; the same config and seed give the same numbers."""
    from sedsweep.methods.null import Null, NullConfig

    features = _tiny_features(tmp_path)
    cfg = NullConfig(optim={"lr": 1e-2}, quality=0.3, choice="b", noise=0.0, tau=2.0, epochs=3)
    method = Null(cfg, features, None)
    expected_final = 0.55 + 0.3 * np.exp(-((-2 + 3) ** 2) / 2) + 0.03 + 0.04
    for epoch in (1, 2, 3):
        method.train_epoch()
        assert method.evaluate("val")["score"] == pytest.approx(
            expected_final * (1 - np.exp(-epoch / 2.0))
        )
    noisy = NullConfig(noise=0.05, seed=7)
    a, b = Null(noisy, features, None), Null(noisy, features, None)
    a.train_epoch(), b.train_epoch()
    assert a.evaluate("test") == b.evaluate("test")
    other = Null(NullConfig(noise=0.05, seed=8), features, None)
    other.train_epoch()
    assert other.evaluate("test") != a.evaluate("test")
    best = Null(NullConfig(noise=0.0, quality=1.0, choice="b"), features, None)
    assert best.final_score() == pytest.approx(0.99)


def _tiny_features(tmp_path: Path):
    from sedsweep.features import build_features
    from sedsweep.runspec import RunSpec, corpus_for, resolve

    resolved = resolve(RunSpec(method="null", scale="tiny"))
    corpus = corpus_for(resolved, tmp_path)
    return build_features(corpus, resolved.feature_params, tmp_path / "cache", progress=False)


def test_a_resumed_driver_deletes_the_runs_of_trials_tune_does_not_know(tmp_path):
    """`TrackingCallback.reconcile`: a trial the killed driver started after Tune's last
    snapshot runs again under a new id; its first run is tagged, killed and deleted, and a
    trial Tune restores keeps its run."""
    from sedsweep.sweep.tracking_callback import TrackingCallback
    from sedsweep.tracking import ORPHANED_TAG

    journal = Journal.at(tmp_path / "j")
    journal.experiment("exp")
    journal.create(PARENT, "the-parent", {})
    for i in range(3):
        journal.create(f"trial{i}", f"t{i:03d}", {TRIAL_TAG: f"trial{i}"}, parent=PARENT)
    journal.status("trial2", "FINISHED")
    callback = TrackingCallback(
        str(journal.directory), method="null", base_config={}, epochs=1, tags={}
    )
    assert callback.reconcile({"trial0"}) == ["trial1", "trial2"]
    assert callback.reconcile({"trial0"}) == []  # deleted once
    uri = store(tmp_path)
    drainer = Drainer(journal.directory, uri, execution=EXECUTION)
    drainer.drain()
    client = client_for(uri)
    kept = client.get_run(drainer.run_id("trial0"))
    assert kept.info.lifecycle_stage == "active" and ORPHANED_TAG not in kept.data.tags
    for key, status in (("trial1", "KILLED"), ("trial2", "FINISHED")):
        gone = client.get_run(drainer.run_id(key))
        assert gone.info.lifecycle_stage == "deleted" and gone.info.status == status
        assert ORPHANED_TAG in gone.data.tags
    journal.close()
