"""Real servers for integration tests: a throwaway PostgreSQL cluster and MLflow tracking servers.

Nothing here is mocked. Every server runs in its own session (process group) and is stopped by
its group id, so no child (PostgreSQL backends, uvicorn workers) outlives the test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_TOOLS = ("initdb", "postgres")
START_TIMEOUT_S = 120.0


# -- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_tool(name: str) -> str:
    """A console script of the running interpreter's environment (e.g. .venv/bin/mlflow)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is neither next to {sys.executable} nor on PATH")
    return found


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes of process group `pgid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def processes_with_env(marker: str) -> list[int]:
    """PIDs of live processes whose initial environment contains `marker` (a unique string)."""
    needle = marker.encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text()
                if state[state.rindex(")") + 2] != "Z":
                    out.append(int(entry.name))
        except OSError:
            continue
    return out


def kill_marked(marker: str, timeout: float = 30.0) -> None:
    """SIGKILL every live process carrying `marker` in its environment (the processes a test
    started, Ray's included), until none is left; fail if some survive `timeout` s."""
    deadline = time.monotonic() + timeout
    while (found := processes_with_env(marker)) and time.monotonic() < deadline:
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not found, describe(found)


@contextlib.contextmanager
def marked_driver(cmd: list[str], log_path: Path, marker_var: str):
    """Run `cmd` (a sweep driver) in its own session with a fresh marker in its environment
    and a short RAY_TMPDIR of its own; on exit, SIGKILL every process carrying the marker
    (the driver and the Ray it started, nothing else) and remove that directory."""
    import uuid

    marker = uuid.uuid4().hex
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, marker_var: marker, "RAY_TMPDIR": str(ray_tmp)}
    log = open(log_path, "w")  # noqa: SIM115 - the child writes to it until killed
    try:
        yield subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    finally:
        log.close()
        kill_marked(marker)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def journal_events(root: Path, op: str) -> int:
    """How many events of kind `op` the sweep journals under `root` (a work or storage
    directory: its ray/*/tracking/journal.jsonl) hold so far."""
    needle = f'"op":"{op}"'.encode()
    return sum(p.read_bytes().count(needle) for p in root.glob("ray/*/tracking/journal.jsonl"))


def wait_for_events(root: Path, op: str, count: int, proc: Any = None, timeout: float = 120):
    """Wait until the journals under `root` hold `count` events of kind `op` (e.g. "metrics":
    epochs reported), failing early if `proc` (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while journal_events(root, op) < count:
        assert proc is None or proc.poll() is None, f"exited before {count} {op} events"
        assert time.monotonic() < deadline, f"fewer than {count} {op} events after {timeout} s"
        time.sleep(0.1)


def describe(pids: list[int]) -> str:
    """`pid: command line` for each pid (for assertion messages)."""
    lines = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        lines.append(f"{pid}: {cmd[:200]}")
    return "\n".join(lines)


@dataclass
class Service:
    """A server process started in its own session, with its output in a log file."""

    name: str
    proc: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    @classmethod
    def start(
        cls,
        name: str,
        cmd: list[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # own process group: stop() takes every child with it
                **_as_user(user),
            )
        return cls(name, proc, log, stop_signal)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Signal the leader, then SIGKILL what is left of its group; returns the PIDs it killed."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 10
        while group_members(self.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            time.sleep(0.2)
        killed = group_members(self.pid)
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_members(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = group_members(self.pid)
        if left:
            raise RuntimeError(f"{self.name}: processes survived SIGKILL:\n{describe(left)}")
        return killed


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop root to `user` (no supplementary groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT does what it does for a command typed in a terminal.
    A test run started in the background by a non-interactive shell (CI's, `nohup ... &`)
    ignores SIGINT, and an ignored signal stays ignored across exec: the child's Python would
    then install no KeyboardInterrupt handler, and a test's Ctrl-C would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class CliProcess:
    """`sedsweep ARGS` as a subprocess in its own session, output to a log file, with a unique
    marker in its environment: Ray processes it starts inherit the marker, so `finish()` can
    say which outlived it and then kill exactly those (never another test's or sweep's)."""

    MARKER_VAR = "SEDSWEEP_TEST_MARKER"

    def __init__(self, args: list[str], log: Path, *, env: Mapping[str, str | None] | None = None,
                 cwd: Path | None = None) -> None:  # fmt: skip
        self.marker = secrets.token_hex(8)
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short socket paths
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
        base.update(
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_TMPDIR=str(self.ray_tmp),
            MPLBACKEND="Agg",
            TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0",
            **{self.MARKER_VAR: self.marker},
        )
        for key, value in (env or {}).items():  # None: leave the variable unset
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        self.log = log
        self.started = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [venv_tool("sedsweep"), *args], cwd=cwd, env=base, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_ctrl_c_as_in_a_terminal,
            )  # fmt: skip
        self.seconds = 0.0
        self.leftovers = ""

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> float:
        """Seconds since start when `pattern` (a regex) first appears in the output."""
        import re

        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never printed {pattern!r}:\n{self.output[-4000:]}")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def finish(self, timeout: float) -> int:
        """Wait for the exit (SIGKILL of the group after `timeout` s, then fail); record what
        outlived it; kill everything carrying its marker. Returns the exit code."""
        try:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(
                    f"sedsweep still running after {timeout} s:\n{self.output[-4000:]}"
                ) from None
            self.seconds = time.monotonic() - self.started
            deadline = time.monotonic() + 20  # Ray's shutdown in atexit may lag a bit
            while (left := processes_with_env(self.marker)) and time.monotonic() < deadline:
                time.sleep(0.25)
            self.leftovers = describe(left)
        finally:
            self.cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the sedsweep process alone (its Ray processes are left to `cleanup`)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        kill_marked(self.marker)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


def http(
    url: str,
    *,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One plain HTTP request (urllib); error statuses are returned, not raised."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, reply.read(), _lower(reply.headers))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), _lower(err.headers or {}))


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# -- PostgreSQL ---------------------------------------------------------------------------------
def find_pg_bindir() -> Path | None:
    """The directory holding initdb and postgres: PATH first, then /usr/lib/postgresql/*/bin."""
    on_path = [shutil.which(tool) for tool in PG_TOOLS]
    if all(on_path):
        return Path(os.path.realpath(on_path[0])).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(versions):
        if all((bindir / tool).exists() for tool in PG_TOOLS):
            return bindir
    return None


def ensure_postgres() -> Path:
    """PostgreSQL's bin directory, installing the Debian `postgresql` package when missing."""
    bindir = find_pg_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, postgres) not found and cannot be installed "
            "here (needs root and apt-get): install the `postgresql` package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError("installed `postgresql` but found no initdb/postgres binaries")
    return bindir


def _unprivileged_user() -> str | None:
    """The user to run PostgreSQL as: None when not root (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:port, its socket and data in `root`."""

    root: Path
    port: int
    service: Service
    bindir: Path
    superuser: str = "postgres"

    @classmethod
    def start(cls) -> Postgres:
        bindir = ensure_postgres()
        user = _unprivileged_user()
        # not under pytest's tmp dir: /tmp/pytest-of-root is 0700, unreadable to `postgres`
        root = Path(tempfile.mkdtemp(prefix="sedsweep-pg-"))
        try:
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(root, entry.pw_uid, entry.pw_gid)
            data = root / "data"
            initdb = subprocess.run(
                [
                    str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth-local=trust", "--auth-host=scram-sha-256",
                    "--encoding=UTF8", "--locale=C", "--no-sync",
                ],
                cwd=root, capture_output=True, text=True, timeout=120, **_as_user(user),
            )  # fmt: skip
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
            port = free_port()
            service = Service.start(
                "postgres",
                [
                    str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                    "-p", str(port), "-k", str(root),
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=50",
                ],
                root / "postgres.log",
                cwd=root,
                user=user,
                stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, exit
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        pg = cls(root, port, service, bindir)
        try:
            pg.wait_ready()
        except BaseException:
            pg.stop()
            raise
        return pg

    def connect(self, dbname: str = "postgres"):
        """A psycopg connection as the superuser over the unix socket (trust auth)."""
        import psycopg

        return psycopg.connect(
            host=str(self.root), port=self.port, user=self.superuser, dbname=dbname,
            autocommit=True, connect_timeout=5,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            self.service.check_alive()
            try:
                self.connect().close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not ready after {timeout} s:\n{self.service.log_tail()}"
                    ) from None
                time.sleep(0.2)

    def create_database(self, name: str, user: str, password: str) -> str:
        """A database owned by a new password-authenticated role; its SQLAlchemy URI (TCP).

        The URI has no driver suffix: SQLAlchemy 2.1 maps `postgresql://` to psycopg (3).
        """
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(user)
                )
            )
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> list[int]:
        try:
            return self.service.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- MLflow -------------------------------------------------------------------------------------
@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1:port with a SQL backend and proxied artifact storage."""

    url: str
    artifacts: Path
    service: Service
    auth: tuple[str, str] | None = None  # admin credentials of a basic-auth server

    @classmethod
    def start(
        cls,
        backend_store_uri: str,
        workdir: Path,
        *,
        auth_database_uri: str | None = None,
        workers: int = 1,
        wait: bool = True,
        port: int | None = None,
    ) -> MlflowServer:
        """Start (and wait for /health); `auth_database_uri` switches on the basic-auth app;
        `port` (default: a free one) lets a stopped server come back at the same address."""
        port = port or free_port()
        artifacts = workdir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        for key in list(env):  # the server must not inherit a test's client settings
            if key.startswith("MLFLOW_TRACKING_"):
                del env[key]
        cmd = [
            venv_tool("mlflow"), "server",
            "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", str(artifacts), "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        admin = None
        if auth_database_uri is not None:
            admin = ("admin", secrets.token_urlsafe(18))
            ini = workdir / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = NO_PERMISSIONS\n"
                f"database_uri = {auth_database_uri}\n"
                f"admin_username = {admin[0]}\n"
                f"admin_password = {admin[1]}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                # cache successful credential checks: otherwise every request pays a PBKDF2
                # hash, which costs a 2-core machine ~15 s over one tiny sweep
                "auth_cache_ttl_seconds = 300\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
            for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
                env.pop(key, None)
            cmd += ["--app-name", "basic-auth"]
        service = Service.start("mlflow server", cmd, workdir / "mlflow-server.log", env=env)
        server = cls(f"http://127.0.0.1:{port}", artifacts, service, admin)
        if wait:
            try:
                server.wait_healthy()
            except BaseException:
                server.stop()
                raise
        return server

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Poll GET /health until it answers 200 (fails early if the server exits)."""
        deadline = time.monotonic() + timeout
        while True:
            self.service.check_alive()
            with contextlib.suppress(OSError):
                if http(f"{self.url}/health", timeout=5).status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy after {timeout} s:\n{self.service.log_tail()}"
                )
            time.sleep(0.3)

    def api(self, path: str, **kwargs: Any) -> Response:
        """A request to `/api/2.0/<path>` (admin credentials unless `auth` is given)."""
        kwargs.setdefault("auth", self.auth)
        return http(f"{self.url}/api/2.0/{path}", **kwargs)

    def stop(self) -> list[int]:
        return self.service.stop()
