"""Sweeps that survive a killed driver, and sweeps across a two-node Ray cluster (real engines).

These tests stop only what they started: the killed driver's own Ray processes are found by a
marker in their environment and killed by PID (never Ray's machine-wide stop command, which
would take down every Ray on the machine, other users' sweeps included); the two-node cluster
is shut down by its own handle.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from sedsweep.cli import main
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.tracking import ORPHANED_TAG, tracking_uri_for

from .servers import marked_driver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"
MARKER_VAR = "SEDSWEEP_CLUSTER_TEST_MARKER"


def _children(workdir: Path, experiment: str) -> list:
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _snapshotted_since_checkpoint(workdir: Path) -> bool:
    """Whether Tune wrote its experiment state after some trial's second checkpoint."""
    checkpoints = list(workdir.glob("ray/*/run_trial*/checkpoint_000001"))
    states = list(workdir.glob("ray/*/experiment_state-*.json"))
    if not checkpoints or not states:
        return False
    first = min(c.stat().st_mtime for c in checkpoints)
    return max(s.stat().st_mtime for s in states) > first


def test_sigkilled_driver_resumes_every_trial_once(tmp_path):
    ray.shutdown()  # this process's own connection only
    workdir = tmp_path / "w"
    sets = [
        "budget.trials=4",
        "budget.max_epochs=4",
        "scheduler.type=none",
        "budget.max_concurrent=2",
        "checkpoint.every_epochs=1",  # the kill waits for a trial's second checkpoint
    ]
    cmd = [sys.executable, "-c", "from sedsweep.cli import main; main()", "sweep", str(QUICK)]
    cmd += ["--workdir", str(workdir)] + [a for s in sets for a in ("--set", s)]
    with marked_driver(cmd, tmp_path / "driver.log", MARKER_VAR) as driver:
        deadline = time.monotonic() + 420
        # kill the driver mid-sweep: once some trial has checkpointed its second epoch and
        # Tune has snapshotted its experiment since, so that trial at least is one it restores
        while not _snapshotted_since_checkpoint(workdir):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no snapshot after a second checkpoint"
            time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    before = _children(workdir, "quickstart")
    assert len(before) < 4 or any(r.info.status == "RUNNING" for r in before)

    try:
        assert main(["resume", str(workdir)]) == 0
    finally:
        ray.shutdown()
    after = _children(workdir, "quickstart")
    ids = [r.data.tags["sweep.trial_id"] for r in after]
    assert len(ids) == 4 and len(set(ids)) == 4, ids
    assert {r.info.status for r in after} == {"FINISHED"}
    # A run is continued, not new; except one the killed driver started after Tune's last
    # snapshot: Tune does not know it, the search asks for it again, and the resume tags the
    # first run and deletes it from the record (whether any is such depends on the kill's timing)
    client = MlflowClient(tracking_uri_for(workdir))
    continued = {a.info.run_id for a in after}
    for b in before:
        if b.info.run_id not in continued:
            gone = client.get_run(b.info.run_id)
            assert gone.info.lifecycle_stage == "deleted", gone.info
            assert ORPHANED_TAG in gone.data.tags, gone.data.tags
    assert any(b.info.run_id in continued for b in before)  # the snapshotted one, at least
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert steps == [1, 2, 3, 4], steps
    parents = [
        r
        for r in client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.fixture
def two_nodes():
    """A head and a worker node (1 CPU each) on 127.0.0.1, in this process."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_two_node_cluster_runs_trials_on_both_nodes(two_nodes, tmp_path):
    plan = load_sweep(
        QUICK,
        {"budget.trials": 4, "budget.max_epochs": 2, "scheduler.type": "none"},
    )
    outcome = run_sweep(plan, workdir=tmp_path, address=two_nodes.address)
    assert outcome.complete, outcome.summary()
    nodes = {r.data.tags["sweep.node_id"] for r in _children(tmp_path, "quickstart")}
    cluster_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and nodes <= cluster_nodes
