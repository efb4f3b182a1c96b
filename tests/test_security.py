"""Open doors, tried as an attacker on the same machine or network would.

A local sweep's Ray keeps Ray's token authentication (Ray 2.60's default for a new local
cluster): its GCS, raylet and worker ports listen on every interface (Ray offers no setting to
bind them to loopback), so the token is what stands between them and anyone who can reach the
machine. A client without the token, or with a wrong one, must not get to run code.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import CliProcess

ROOT = Path(__file__).resolve().parents[1]
CLIENT = """
import sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
@ray.remote(num_cpus=0)
def probe():
    return "ran code"
print("RESULT", ray.get(probe.remote(), timeout=20), flush=True)
"""


def connect(address: str, env: dict[str, str | None], timeout: float) -> str:
    """Run a Ray client against `address`; its output, or 'TIMEOUT' if it never got in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    base["RAY_USAGE_STATS_ENABLED"] = "0"
    base.update({k: v for k, v in env.items() if v is not None})
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, address], env=base, capture_output=True,
            text=True, timeout=timeout, start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "TIMEOUT"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_a_local_sweep_refuses_clients_without_its_token(tmp_path):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    sweep = CliProcess(
        ["sweep", str(ROOT / "search_spaces" / "null_load.yaml"), "--scale", "tiny",
         "--set", "fixed.sleep_s=5", "--set", "budget.trials=8",
         "--workdir", str(tmp_path / "work")],
        tmp_path / "sweep.log",
        env={"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN_PATH": str(token)},  # the product default
    )  # fmt: skip
    try:
        sweep.wait_for(r"View detailed results here", timeout=120)
        ports = list((sweep.ray_tmp / "ray" / "session_latest").glob("gcs_server_port_*"))
        assert ports, sweep.output[-2000:]
        host = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
        address = f"{host[0] if host else '127.0.0.1'}:{ports[0].read_text().strip()}"
        # the same address with the token works: the refusals below are the token's doing
        owner = connect(address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}, 60)
        assert "RESULT ran code" in owner, owner[-2000:]
        for env in (
            {"RAY_AUTH_MODE": "disabled"},
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
        ):
            stranger = connect(address, env, 30)
            assert "ran code" not in stranger, (env, stranger[-2000:])
    finally:
        code = sweep.finish(timeout=300)
    assert code == 0, sweep.output[-3000:]
