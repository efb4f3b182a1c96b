"""The Ray cluster a sweep runs on: a new local one (reaped if the driver is killed) or the
one at `--address`, checked to answer and to have nodes the trials fit on."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator

from sedsweep.errors import UserError
from sedsweep.processes import interrupt_held, reaped_if_killed
from sedsweep.progress import phase
from sedsweep.sweep.spec import SweepPlan


def ray_environment() -> None:
    """Defaults every Ray process here needs (the same for driver and workers). Ray's token
    authentication stays as Ray sets it (on for a new local cluster in Ray 2.60)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


ADDRESS_TIMEOUT_S = 10


def check_address(address: str | None) -> None:
    """A `--address HOST:PORT` must answer within `ADDRESS_TIMEOUT_S`, and answer as a Ray
    head's GCS does (gRPC: an HTTP/2 server's SETTINGS frame): Ray itself retries an address
    where nothing listens, or where another service answers, for minutes."""
    import socket

    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    where = f"--address {address}"
    if not host or not port.isdigit():
        raise UserError("expected HOST:PORT (or auto)", where=where)
    if not 1 <= int(port) <= 65535:
        raise UserError("a port is 1 to 65535", where=where)
    try:
        with socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S) as sock:
            first = _http2_reply(sock, ADDRESS_TIMEOUT_S)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"no Ray head answers there ({reason})", where=where) from None
    if first is None:
        raise UserError(
            f"something accepts connections there but says nothing in {ADDRESS_TIMEOUT_S} s: "
            "not a Ray head", where=where,
        )  # fmt: skip
    if len(first) < 9 or first[3] != SETTINGS_FRAME:
        raise UserError(
            "another service answers there, not a Ray head (it does not speak gRPC)", where=where
        )


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4
SETTINGS_FRAME = 0x4


def _http2_reply(sock: socket.socket, timeout: float) -> bytes | None:
    """Send HTTP/2's client preface and an empty SETTINGS frame; return the first 9 bytes the
    server sends back (a frame header: a gRPC server's is its SETTINGS frame, an HTTP/1 server
    answers with text), fewer if it closes, or None if it stays silent for `timeout` s."""
    sock.sendall(HTTP2_PREFACE + bytes([0, 0, 0, SETTINGS_FRAME, 0, 0, 0, 0, 0]))
    got, deadline = b"", time.monotonic() + timeout
    while len(got) < 9:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(9 - len(got))
        except TimeoutError:
            return None
        if not chunk:
            break
        got += chunk
    return got


def own_token() -> None:
    """A new local cluster gets a token of its own, in this process's environment (which Ray's
    processes and workers inherit; readable only by this user, never in argv or a file),
    unless the user chose one (`RAY_AUTH_TOKEN` / `RAY_AUTH_TOKEN_PATH`) or turned auth off.
    Ray 2.60 would otherwise make and reuse `~/.ray/auth_token` (mode 0644): one token for
    every local cluster of the user, and for any process that reads that file."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def start_ray(plan: SweepPlan, address: str | None) -> None:
    """Join (or start) the Ray cluster and check the trials' resources fit one of its nodes:
    done before the sweep's parent run exists, so a sweep that cannot run leaves no record."""
    import ray

    if not ray.is_initialized():
        # the processes a local ray.init starts, and the workers its raylet forks later, are
        # ended by a reaper if this driver is killed and they outlive it (nothing is started
        # here when it joins a cluster)
        local = not address or address == "local"
        if local:
            own_token()
        what = "starting a local Ray cluster" if local else f"joining the Ray cluster at {address}"
        reaper = reaped_if_killed() if local else contextlib.nullcontext()
        with reaper, phase(what), interrupt_held(what):
            ray.init(
                # No --address: a new local cluster, never one that happens to run on this
                # machine (Ray's default attaches to the last `ray start` cluster it finds).
                address=address or "local",
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,  # trial errors reach the driver (and MLflow) through Tune
            )
    nodes = live_nodes()
    r = plan.spec.resources
    for name, wanted in (("gpu", r.gpu), ("cpu", r.cpu)):
        most = max((n.get(name.upper(), 0.0) for n in nodes), default=0.0)
        if wanted > most:
            has = f"at most {most:g} per node" if most else "none"
            raise UserError(
                f"asks for {wanted:g} {name.upper()} per trial but the Ray cluster has {has}",
                where=f"{plan.source}: resources.{name}",
            )


PENDING_VAR = "TUNE_MAX_PENDING_TRIALS_PG"  # Ray Tune's setting, read when `fit()` starts


def live_nodes() -> list[dict[str, float]]:
    """The resources (CPU, GPU, ...) of each live node of the connected Ray cluster."""
    import ray

    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def trial_slots(plan: SweepPlan) -> int:
    """How many of the plan's trials the cluster's live nodes hold at once (at least 1)."""
    r = plan.spec.resources
    wants = {"CPU": r.cpu, "GPU": r.gpu}
    total = 0
    for has in live_nodes():
        fits = [int(has.get(key, 0.0) / want + 1e-9) for key, want in wants.items() if want > 0]
        total += min(fits) if fits else 0
    return max(1, total)


@contextlib.contextmanager
def pending_trials(plan: SweepPlan) -> Iterator[int]:
    """Let Tune start the actors of as many trials ahead as may run at once.

    Tune starts at most `TUNE_MAX_PENDING_TRIALS_PG` trials' actors ahead of time, and for a
    searcher it does not see limited by its ConcurrencyLimiter (ours limits itself: see
    `search.py`) it assumes 1. Trials then start one actor at a time: trials shorter than an
    actor's start never overlap, and the actors started for trials that took a freed actor
    meanwhile are left stopping, which `fit()` waits 5 s for at its end. Inside, the limit is
    `budget.max_concurrent` (or the trials the cluster holds at once), unless the user set
    the variable; yields the limit in force.
    """
    if os.environ.get(PENDING_VAR):
        yield int(os.environ[PENDING_VAR])
        return
    limit = max(1, min(plan.spec.budget.max_concurrent or trial_slots(plan), plan.n_trials))
    os.environ[PENDING_VAR] = str(limit)
    try:
        yield limit
    finally:
        os.environ.pop(PENDING_VAR, None)
