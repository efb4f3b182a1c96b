"""A Ray cluster across a Slurm allocation, running one sweep: `python -m sedsweep.slurm`.

`docker/slurm/sedsweep.sbatch` executes this as the job's batch step, on the first node of the
allocation. It checks its inputs, writes a Ray token readable only by the user, starts the Ray
head here and one Ray worker per other node through `srun`, waits until every node has joined,
runs `sedsweep sweep` (or `sedsweep resume` with RESUME=1) against that cluster, and stops
Ray on every node when the sweep ends. A signal from Slurm before the time limit
(`--signal=B:USR1@120`), SIGTERM or SIGINT stops the sweep gracefully (its trials are
checkpointed and it prints the resume command), then Ray. It stops only the processes it
started, by PID.

Settings (environment variables; see the sbatch script's header):
  SEDSWEEP_SWEEP      the search-space file (not needed with RESUME=1)
  SEDSWEEP_STORAGE    a directory every node sees: Ray results, checkpoints, journal, token
  SEDSWEEP_WORKDIR    corpora, feature cache, SQLite store (default: SEDSWEEP_STORAGE/work)
  SEDSWEEP_TRACKING_URI  an MLflow server (default: SQLite in the work directory)
  SEDSWEEP_ARGS       more `sedsweep sweep` arguments, e.g. "--scale tiny --set budget.trials=4"
  SEDSWEEP_NODE_TIMEOUT  seconds to wait for every node to join Ray (default 300)
  RESUME=1            continue the newest sweep under SEDSWEEP_STORAGE instead
  RAY_PORT            the head's port (default: 20000 + job id mod 20000)
  RAY_HEAD_IP         the head's address for the other nodes (default: its host name's first
                      non-loopback IPv4 address)

Exit status: the sweep's; 2 for bad settings (one line naming the variable); 3 when the nodes
did not all join in time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError

NODE_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
NODES_JOINED_EXIT = 3
FORWARDED = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


@dataclass
class Settings:
    """What the job was asked to do, checked before anything starts."""

    sweep: Path | None
    storage: Path
    workdir: Path
    tracking_uri: str | None
    extra: list[str]
    resume: bool
    node_timeout: float
    port: int
    nodes: list[str]
    cpus: int
    gpus: int

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        """Read and check the settings; a bad one is a UserError naming its variable."""
        resume = env.get("RESUME", "") in ("1", "true", "yes")
        sweep = None
        if not resume:
            sweep = Path(_required(env, "SEDSWEEP_SWEEP"))
            if not sweep.is_file():
                raise UserError(f"search-space file {sweep} not found", where="SEDSWEEP_SWEEP")
        storage = Path(_required(env, "SEDSWEEP_STORAGE"))
        _writable(storage, "SEDSWEEP_STORAGE")
        workdir = Path(env.get("SEDSWEEP_WORKDIR") or storage / "work")
        _writable(workdir, "SEDSWEEP_WORKDIR")
        try:
            extra = shlex.split(env.get("SEDSWEEP_ARGS", ""))
            timeout = float(env.get("SEDSWEEP_NODE_TIMEOUT", NODE_TIMEOUT_S))
            job = int(env.get("SLURM_JOB_ID", "0"))
            port = int(env.get("RAY_PORT") or 20000 + job % 20000)
        except ValueError as exc:
            raise UserError(f"not a valid setting ({exc})", where="environment") from None
        return cls(
            sweep=sweep.resolve() if sweep else None,
            storage=storage.resolve(),
            workdir=workdir.resolve(),
            tracking_uri=_credentials_adopted(env.get("SEDSWEEP_TRACKING_URI") or None),
            extra=extra,
            resume=resume,
            node_timeout=timeout,
            port=port,
            nodes=allocated_nodes(env),
            cpus=int(env.get("SLURM_CPUS_ON_NODE") or os.cpu_count() or 1),
            gpus=_gpus(env),
        )

    def sweep_command(self, address: str) -> list[str]:
        """The `sedsweep` command line the job runs against its Ray cluster."""
        common = ["--address", address]
        if self.resume:
            return ["sedsweep", "resume", str(self.storage), *common]
        cmd = ["sedsweep", "sweep", str(self.sweep), *common, "--storage",
               str(self.storage / "ray"), "--workdir", str(self.workdir)]  # fmt: skip
        if self.tracking_uri:
            cmd += ["--tracking-uri", self.tracking_uri]
        return cmd + self.extra


def _credentials_adopted(uri: str | None) -> str | None:
    """The URI without its user name and password, which move into this process's
    environment (`tracking.adopt_credentials`): the sweep inherits them, and its command line,
    which `ps` shows to every user of every node, carries none."""
    from sedsweep.tracking import adopt_credentials

    return adopt_credentials(uri) if uri else None


def _required(env: dict[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise UserError("is not set", where=name)
    return value


def _writable(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"{path} is not a writable directory ({reason})", where=name) from None


def _gpus(env: dict[str, str]) -> int:
    """GPUs on this node: Slurm's SLURM_GPUS_ON_NODE, else the visible devices, else 0."""
    if env.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(env["SLURM_GPUS_ON_NODE"])
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in visible.split(",") if d.strip()]) if visible else 0


def allocated_nodes(env: dict[str, str]) -> list[str]:
    """The allocation's host names in order (`scontrol show hostnames`), this one if none."""
    nodelist = env.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return [socket.gethostname()]
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def head_address(host: str, multi_node: bool, override: str | None = None) -> str:
    """The IPv4 address the other nodes reach the head at: `override` (RAY_HEAD_IP), else the
    first non-loopback address `host` resolves to (many systems map their own name to
    127.0.1.1); a loopback address only serves a one-node job."""
    if override:
        return override
    try:
        found = [info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)]
    except OSError as exc:
        raise UserError(
            f"cannot resolve the head node {host} ({exc})", where="RAY_HEAD_IP"
        ) from None
    public = [ip for ip in found if not ip.startswith("127.")]
    if public:
        return public[0]
    if multi_node:
        raise UserError(
            f"the head node {host} resolves only to loopback addresses {sorted(set(found))}; "
            "set it to an address the other nodes reach",
            where="RAY_HEAD_IP",
        )
    return found[0]


def write_token(storage: Path, job: str) -> Path:
    """A fresh Ray token in a file only this user can read, on storage every node sees."""
    path = storage / f".ray-token-{job}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def wait_for_nodes(address: str, expected: int, timeout: float) -> int:
    """Block until `expected` nodes are alive in the Ray cluster at `address`; return how many
    are. Fewer after `timeout` s is a UserError saying how many joined."""
    import ray

    deadline = time.monotonic() + timeout
    alive = 0
    while True:
        with contextlib.suppress(Exception):  # the head may still be starting
            if not ray.is_initialized():
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            alive = sum(1 for node in ray.nodes() if node.get("Alive"))
            if alive >= expected:
                ray.shutdown()
                return alive
        if time.monotonic() > deadline:
            ray.shutdown()
            raise UserError(
                f"only {alive} of {expected} nodes joined the Ray cluster within {timeout:g} s",
                where=address,
            )
        time.sleep(1.0)


@dataclass
class RayOnSlurm:
    """The Ray processes this job started (the head here, `srun` steps for the workers)."""

    settings: Settings
    token: Path
    head_ip: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def temp_dir(self) -> Path:
        """The head's Ray session files (short: Ray's socket paths must fit in 107 bytes)."""
        return Path(tempfile.gettempdir()) / f"sedsweep-ray-{self.token.name.rpartition('-')[2]}"

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.settings.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip

    def node_env(self) -> dict[str, str]:
        """`env()` for Ray's own processes: without MLflow credentials (only the driver
        tracks)."""
        from sedsweep.tracking import PASSWORD_VAR, USERNAME_VAR

        return {k: v for k, v in self.env().items() if k not in (USERNAME_VAR, PASSWORD_VAR)}

    def start(self) -> None:
        s = self.settings
        resources = ["--num-cpus", str(s.cpus), "--num-gpus", str(s.gpus)]
        # A temp dir of the job's own: Ray's "current cluster" file lives there, so no other
        # `ray.init()` on this node attaches to this cluster by accident.
        head = ["ray", "start", "--head", "--block", "--port", str(s.port),
                "--node-ip-address", self.head_ip, "--include-dashboard", "false",
                "--temp-dir", str(self.temp_dir), "--disable-usage-stats", *resources]  # fmt: skip
        self.procs.append(subprocess.Popen(head, env=self.node_env(), stdin=subprocess.DEVNULL))
        workers = s.nodes[1:]
        if workers:
            step = ["srun", "--overlap", f"--nodes={len(workers)}", f"--ntasks={len(workers)}",
                    "--ntasks-per-node=1", f"--nodelist={','.join(workers)}",
                    "ray", "start", "--block", "--address", self.address,
                    "--disable-usage-stats", *resources]  # fmt: skip
            self.procs.append(subprocess.Popen(step, env=self.node_env(), stdin=subprocess.DEVNULL))

    def stop(self) -> None:
        """SIGTERM what this job started (`ray start --block` then stops its node's Ray; srun
        passes it to every worker node), then SIGKILL whatever is left after a while."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        with contextlib.suppress(FileNotFoundError):
            self.token.unlink()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def run(env: dict[str, str]) -> int:
    """The job: settings, Ray across the allocation, the sweep, then Ray stopped everywhere."""
    s = Settings.from_env(env)
    if s.tracking_uri:
        from sedsweep.tracking import probe

        probe(s.tracking_uri)  # an unreachable server: one line now, not after Ray started
    head_ip = head_address(s.nodes[0], len(s.nodes) > 1, env.get("RAY_HEAD_IP"))
    ray = RayOnSlurm(s, write_token(s.storage, env.get("SLURM_JOB_ID", "local")), head_ip)
    os.environ.update(ray.env())  # this process joins the cluster too, to count its nodes
    say(f"Ray head on {s.nodes[0]} ({ray.address}); {len(s.nodes)} node(s), "
        f"{s.cpus} CPUs and {s.gpus} GPUs each")  # fmt: skip
    sweep: subprocess.Popen | None = None
    stopping: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stopping.append(signum)
        say(f"received {signal.Signals(signum).name}: stopping the sweep (it can be resumed)")
        if sweep is not None and sweep.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                sweep.send_signal(signal.SIGINT)  # Tune's graceful stop

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        ray.start()
        started = time.monotonic()
        wait_for_nodes(ray.address, len(s.nodes), s.node_timeout)
        say(f"all {len(s.nodes)} node(s) joined in {time.monotonic() - started:.1f} s")
        if stopping:
            return 1
        cmd = s.sweep_command(ray.address)
        say("running: " + " ".join(shlex.quote(c) for c in cmd))
        sweep = subprocess.Popen(cmd, env=ray.env(), stdin=subprocess.DEVNULL)
        while True:
            try:
                return sweep.wait()
            except KeyboardInterrupt:  # a second Ctrl-C while waiting: keep waiting for it
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ray.stop()
        say("Ray stopped on every node")


def say(line: str) -> None:
    print(f"sedsweep-slurm: {line}", file=sys.stderr, flush=True)


def main() -> int:
    try:
        return run(dict(os.environ))
    except UserError as exc:
        print(f"sedsweep-slurm: error: {exc}", file=sys.stderr, flush=True)
        return NODES_JOINED_EXIT if "nodes joined" in exc.message else 2


if __name__ == "__main__":
    raise SystemExit(main())
