"""The Slurm launcher (docker/slurm/sedsweep.sbatch → `python -m sedsweep.slurm`) under a real
Slurm: munged, slurmctld and slurmd from Debian's packages, started here in the foreground on
this machine as the only node, with a private configuration, key and ports. Jobs are submitted
with `sbatch` exactly as a user would. Everything the tests start carries a marker in its
environment (the daemons, and through the submission environment the jobs and their Ray), so
the tests can say that nothing outlived them and stop only what they started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sedsweep.errors import UserError
from sedsweep.slurm import head_address, wait_for_nodes
from tests.servers import (
    Service,
    describe,
    free_port,
    group_members,
    kill_marked,
    processes_with_env,
    wait_for_events,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "docker" / "slurm" / "sedsweep.sbatch"
TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel")
MARKER_VAR = "SEDSWEEP_SLURM_TEST_MARKER"
JOB_TIMEOUT_S = 600


def ensure_slurm() -> None:
    """Slurm and munge binaries, installed from Debian when missing (CI does the same)."""
    if all(shutil.which(t) for t in TOOLS):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Slurm (slurm-wlm, munge) is not installed and cannot be installed here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm",
                 "munge"]):  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@dataclass
class Slurm:
    """A one-node Slurm cluster: its configuration, its daemons and the marker of its jobs."""

    root: Path
    conf: Path
    marker: str
    daemons: list[Service]

    def env(self, **settings: str) -> dict[str, str]:
        """A user's environment for `sbatch`, with the job's settings (exported to the job)."""
        keep = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "SLURM_"))
        }
        return {**keep, "SLURM_CONF": str(self.conf), MARKER_VAR: self.marker,
                "SEDSWEEP_VENV": str(Path(sys.executable).parent.parent),
                "RAY_USAGE_STATS_ENABLED": "0", "MPLBACKEND": "Agg",
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
                **settings}  # fmt: skip

    def sbatch(self, out: Path, *options: str, **settings: str) -> str:
        done = subprocess.run(
            ["sbatch", "--parsable", f"--output={out}", *options, str(SBATCH)],
            env=self.env(**settings), cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], env=self.env(), capture_output=True,
            text=True, timeout=30,
        ).stdout  # fmt: skip
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                       "NODE_FAIL", "OUT_OF_MEMORY"):  # fmt: skip
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.get('JobState')}"
            time.sleep(1.0)

    def leftovers(self) -> list[int]:
        """Processes of the tests' jobs still alive (the daemons themselves excepted)."""
        daemons = {pid for d in self.daemons for pid in group_members(d.pid)}
        return [pid for pid in processes_with_env(self.marker) if pid not in daemons]


@pytest.fixture(scope="module")
def slurm():
    ensure_slurm()
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs")
    root = Path(tempfile.mkdtemp(prefix="sedsweep-slurm-"))
    marker = uuid.uuid4().hex
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "run"):
        (root / sub).mkdir()
    key = root / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, timeout=30)
    socket_path = root / "run" / "munge.sock"
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join([
            "ClusterName=sedsweeptest",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            "AuthType=auth/munge", f"AuthInfo=socket={socket_path}", "CredType=cred/munge",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SchedulerType=sched/builtin", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU", "ReturnToService=2", "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none", "MinJobAge=3600", "KillWait=10",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n"
    )  # fmt: skip
    env = {**os.environ, MARKER_VAR: marker, "SLURM_CONF": str(conf)}
    daemons: list[Service] = []
    try:
        daemons.append(Service.start("munged", [
            "munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
            f"--log-file={root / 'munged.log'}", f"--pid-file={root / 'run' / 'munged.pid'}",
            f"--seed-file={root / 'munged.seed'}"], root / "munged.out", env=env))  # fmt: skip
        _wait(lambda: socket_path.exists(), "munged's socket", daemons[0])
        daemons.append(Service.start("slurmctld", ["slurmctld", "-D", "-f", str(conf)],
                                     root / "slurmctld.out", env=env))  # fmt: skip
        daemons.append(Service.start("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", host],
                                     root / "slurmd.out", env=env))  # fmt: skip
        cluster = Slurm(root, conf, marker, daemons)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=cluster.env(),
                                 capture_output=True, text=True, timeout=30).stdout  # fmt: skip
            return out.strip() == "idle"

        _wait(idle, "the node to be idle", *daemons[1:])
        yield cluster
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        kill_marked(marker)
        shutil.rmtree(root, ignore_errors=True)


def _wait(ready, what: str, *services: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for service in services:
            service.check_alive()
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.3)


def runs(workdir: Path, experiment: str) -> tuple[list, list]:
    """(parents, children) of an experiment in the job's SQLite store."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return [r for r in found if r not in children], children


def no_leftovers(slurm: Slurm) -> None:
    deadline = time.monotonic() + 30
    while (left := slurm.leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes of the job outlived it:\n{describe(left)}"


# -- a whole sweep as a job ---------------------------------------------------------------------
def test_a_job_runs_the_quickstart_on_ray_and_leaves_nothing_behind(slurm, tmp_path):
    storage = tmp_path / "storage"
    out = tmp_path / "job.out"
    submitted = time.time()
    job_id = slurm.sbatch(
        out, "--cpus-per-task=2", SEDSWEEP_SWEEP=str(ROOT / "search_spaces" / "quickstart.yaml"),
        SEDSWEEP_STORAGE=str(storage),
        SEDSWEEP_ARGS="--scale tiny --set budget.trials=2 --set budget.max_epochs=2",
    )  # fmt: skip
    job = slurm.wait(job_id)
    log = out.read_text()
    print(log[-3000:])
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (job, log[-3000:])
    assert "sedsweep-slurm: all 1 node(s) joined" in log and "Ray stopped on every node" in log
    assert "sweep quickstart: 2 completed of 2 planned" in log and "Traceback" not in log
    parents, children = runs(storage / "work", "quickstart")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    journal = next((storage / "ray").glob("*/tracking/journal.jsonl"))
    first = min(e["time"] for e in map(json.loads, journal.read_text().splitlines())
                if e["op"] == "create" and e["parent"])  # fmt: skip
    print(f"submission to first trial: {first / 1000 - submitted:.1f} s")
    assert not list(storage.glob(".ray-token-*"))  # the job's Ray token is gone with it
    no_leftovers(slurm)


def test_the_pre_timeout_signal_stops_the_sweep_and_a_new_job_resumes_it(slurm, tmp_path):
    storage = tmp_path / "storage"
    first_out = tmp_path / "first.out"
    null = ROOT / "search_spaces" / "null_load.yaml"
    job_id = slurm.sbatch(
        first_out, "--cpus-per-task=2", SEDSWEEP_SWEEP=str(null),
        SEDSWEEP_STORAGE=str(storage),
        SEDSWEEP_ARGS="--scale tiny --set budget.trials=4 --set budget.max_epochs=16 "
                      "--set fixed.sleep_s=0.5",
    )  # fmt: skip
    wait_for_events(storage, "metrics", 4, timeout=300)  # a few epochs in
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm.env(), check=True)
    job = slurm.wait(job_id)
    log = first_out.read_text()
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "1:0", (job, log[-3000:])
    assert "received SIGUSR1: stopping the sweep" in log and "resume with: sedsweep resume" in log
    assert "Ray stopped on every node" in log and "Traceback" not in log
    no_leftovers(slurm)

    second_out = tmp_path / "second.out"
    job_id = slurm.sbatch(second_out, "--cpus-per-task=2", RESUME="1",
                          SEDSWEEP_STORAGE=str(storage))  # fmt: skip
    job = slurm.wait(job_id)
    log = second_out.read_text()
    assert job["JobState"] == "COMPLETED", (job, log[-3000:])
    assert "sweep null_load: 4 completed of 4 planned" in log
    parents, children = runs(storage / "work", "null_load")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    client = MlflowClient(f"sqlite:///{storage / 'work' / 'mlflow.db'}")
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val/score"))
        assert steps == list(range(1, 17)), (child.info.run_name, steps)
    no_leftovers(slurm)


# -- bad settings: one line in the job's output, a non-zero exit, no Ray ------------------------
@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"SEDSWEEP_SWEEP": "/nowhere/sweep.yaml"},
         "SEDSWEEP_SWEEP: search-space file /nowhere/sweep.yaml not found"),
        ({"SEDSWEEP_STORAGE": "/proc/sedsweep-storage"},
         "SEDSWEEP_STORAGE: /proc/sedsweep-storage is not a writable directory"),
        ({"SEDSWEEP_TRACKING_URI": "http://127.0.0.1:{port}"},
         "http://127.0.0.1:{port}: MLflow tracking store not usable: no answer"),
        ({"SEDSWEEP_VENV": "/nowhere/venv"},
         "SEDSWEEP_VENV: no Python environment at /nowhere/venv"),
    ],
    ids=["missing-sweep-file", "storage-not-writable", "tracking-unreachable", "no-venv"],
)  # fmt: skip
def test_bad_settings_fail_the_job_with_one_line(slurm, tmp_path, settings, line):
    port = str(free_port())
    settings = {k: v.replace("{port}", port) for k, v in settings.items()}
    line = line.replace("{port}", port)
    base = {"SEDSWEEP_SWEEP": str(ROOT / "search_spaces" / "null_load.yaml"),
            "SEDSWEEP_STORAGE": str(tmp_path / "storage")}  # fmt: skip
    out = tmp_path / "job.out"
    job = slurm.wait(slurm.sbatch(out, **{**base, **settings}), timeout=120)
    log = out.read_text()
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "2:0", (job, log)
    errors = [x for x in log.splitlines() if x.startswith("sedsweep-slurm: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"sedsweep-slurm: error: {line}"), log
    assert "Traceback" not in log and "Ray head" not in log  # nothing was started
    no_leftovers(slurm)


# -- nodes that do not join ----------------------------------------------------------------------
def test_fewer_nodes_than_the_allocation_is_one_line_after_the_timeout():
    """A real one-node Ray cluster while the job expects two: the launcher's wait gives up."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        assert wait_for_nodes(cluster.address, 1, 30) == 1
        started = time.monotonic()
        with pytest.raises(UserError) as err:
            wait_for_nodes(cluster.address, 2, 3)
        assert 3 <= time.monotonic() - started < 30
        assert str(err.value) == (
            f"{cluster.address}: only 1 of 2 nodes joined the Ray cluster within 3 s"
        )
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()


def test_the_head_address_is_one_other_nodes_can_reach():
    assert head_address("localhost", multi_node=False) == "127.0.0.1"
    with pytest.raises(UserError, match="RAY_HEAD_IP: the head node localhost resolves only to"):
        head_address("localhost", multi_node=True)
    assert head_address("localhost", multi_node=True, override="10.0.0.5") == "10.0.0.5"
    with pytest.raises(UserError, match="RAY_HEAD_IP: cannot resolve the head node"):
        head_address("no-such-host.invalid", multi_node=True)


def test_the_sweeps_command_line_carries_no_tracking_password(tmp_path, monkeypatch):
    """Issue 32: SEDSWEEP_TRACKING_URI's credentials reach the sweep through its environment
    (MLflow's own variables), never its argv (`ps` shows it to every user of every node);
    Ray's node processes get neither."""
    from sedsweep.slurm import RayOnSlurm, Settings
    from sedsweep.tracking import PASSWORD_VAR, USERNAME_VAR

    for var in (USERNAME_VAR, PASSWORD_VAR):
        monkeypatch.delenv(var, raising=False)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\n")
    env = {"SEDSWEEP_SWEEP": str(sweep), "SEDSWEEP_STORAGE": str(tmp_path / "storage"),
           "SEDSWEEP_TRACKING_URI": "http://alice:s3cret@mlflow.lab:5000",
           "SLURM_JOB_ID": "7"}  # fmt: skip
    settings = Settings.from_env(env)
    cmd = settings.sweep_command("10.0.0.1:6379")
    assert cmd[cmd.index("--tracking-uri") + 1] == "http://mlflow.lab:5000"
    assert "s3cret" not in " ".join(cmd)
    assert (os.environ[USERNAME_VAR], os.environ[PASSWORD_VAR]) == ("alice", "s3cret")
    ray = RayOnSlurm(settings, tmp_path / "token", "127.0.0.1")
    assert ray.env()[PASSWORD_VAR] == "s3cret" and PASSWORD_VAR not in ray.node_env()
