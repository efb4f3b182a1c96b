"""Sweeps tracked by a real `mlflow server` on a real PostgreSQL, checked through the REST API.

No mocks: a throwaway PostgreSQL cluster (installed from Debian packages when missing), two
`mlflow server` processes (one plain, one with the built-in basic-auth app) with proxied
artifact storage, and `sedsweep sweep` run as a subprocess on a local Ray. Everything started
here is stopped by PID / process group, also when a test fails.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.servers import (
    CliProcess,
    MlflowServer,
    Response,
    http,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"
TRIALS = 2
EPOCHS = 2
METRIC = "val/when_frame_auc"
SWEEP_TIMEOUT_S = 300


# -- fixtures -----------------------------------------------------------------------------------
@dataclass
class Servers:
    plain: MlflowServer
    auth: MlflowServer
    plain_db: str  # database names, for direct SQL checks
    auth_users_db: str


@pytest.fixture(scope="module")
def servers(postgres, tmp_path_factory):
    """Two `mlflow server`s on PostgreSQL, started side by side; one with basic auth."""
    started: list[MlflowServer] = []
    try:
        plain = MlflowServer.start(
            postgres.create_database("tracking", "mlflow", _password()),
            tmp_path_factory.mktemp("mlflow-plain"),
            wait=False,
        )
        started.append(plain)
        auth = MlflowServer.start(
            postgres.create_database("tracking_auth", "mlflow_auth", _password()),
            tmp_path_factory.mktemp("mlflow-auth"),
            auth_database_uri=postgres.create_database("auth_users", "mlflow_users", _password()),
            wait=False,
        )
        started.append(auth)
        for server in started:
            server.wait_healthy()
        yield Servers(plain, auth, "tracking", "auth_users")
    finally:
        errors = []
        for server in started:
            try:
                server.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        assert not errors, errors


def _password() -> str:
    return uuid.uuid4().hex


@dataclass
class SweepRun:
    returncode: int
    output: str
    leftovers: str  # processes of the sweep still alive after it exited (should be none)
    seconds: float

    def parent_run_id(self) -> str:
        found = re.search(r"MLflow parent run (\w+) in (\S+)", self.output)
        assert found, self.output[-3000:]
        return found.group(1)


def run_sweep(tracking_uri: str, workdir: Path, credentials: tuple[str, str] | None = None):
    """`sedsweep sweep` as a subprocess; afterwards, none of its processes (Ray's) may remain."""
    env = {}
    if credentials is not None:
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = credentials
    args = [
        "sweep", str(QUICK), "--scale", "tiny",
        "--set", f"budget.trials={TRIALS}", "--set", f"budget.max_epochs={EPOCHS}",
        "--workdir", str(workdir), "--tracking-uri", tracking_uri,
    ]  # fmt: skip
    proc = CliProcess(args, workdir / f"sweep-{uuid.uuid4().hex[:6]}.log", env=env, cwd=ROOT)
    code = proc.finish(SWEEP_TIMEOUT_S)
    return SweepRun(code, proc.output, proc.leftovers, proc.seconds)


@pytest.fixture(scope="module")
def sweep_workdir(tmp_path_factory) -> Path:
    """One work directory for both sweeps: the corpus and its features are made once."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="module")
def plain_sweep(servers, sweep_workdir) -> SweepRun:
    return run_sweep(servers.plain.url, sweep_workdir)


SWEEPER = ("sweeper", "sweeper-" + uuid.uuid4().hex)
OUTSIDER = ("outsider", "outsider-" + uuid.uuid4().hex)


@pytest.fixture(scope="module")
def auth_sweep(servers, sweep_workdir) -> SweepRun:
    """The admin creates two users; the sweep runs as `sweeper` (credentials from env)."""
    for username, password in (SWEEPER, OUTSIDER):
        made = servers.auth.api(
            "mlflow/users/create",
            method="POST",
            body={"username": username, "password": password},
        )
        assert made.status == 200, made.body
    return run_sweep(servers.auth.url, sweep_workdir, SWEEPER)


# -- REST helpers -------------------------------------------------------------------------------
def ok(response: Response) -> dict:
    assert response.status == 200, (response.status, response.body[:1000])
    return response.json()


def kv(items: list[dict] | None) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items or []}


def experiment(server: MlflowServer, name: str, auth=None) -> dict:
    got = server.api(
        "mlflow/experiments/get-by-name", params={"experiment_name": name}, auth=auth or server.auth
    )
    return ok(got)["experiment"]


def search_runs(server: MlflowServer, experiment_id: str, auth=None) -> list[dict]:
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 100}
        if token:
            body["page_token"] = token
        page = ok(
            server.api("mlflow/runs/search", method="POST", body=body, auth=auth or server.auth)
        )
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def split(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(parents, children) by the mlflow.parentRunId tag."""
    parents = [r for r in runs if "mlflow.parentRunId" not in kv(r["data"].get("tags"))]
    children = [r for r in runs if "mlflow.parentRunId" in kv(r["data"].get("tags"))]
    return parents, children


def history(server: MlflowServer, run_id: str, key: str, auth=None) -> list[dict]:
    got = server.api(
        "mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": key},
        auth=auth or server.auth,
    )
    return sorted(ok(got).get("metrics", []), key=lambda m: int(m["step"]))


def list_artifacts(server: MlflowServer, run_id: str, path: str = "", auth=None) -> list[dict]:
    params = {"run_id": run_id, **({"path": path} if path else {})}
    listed = ok(server.api("mlflow/artifacts/list", params=params, auth=auth or server.auth))
    return listed.get("files", [])


def download(server: MlflowServer, run: dict, path: str) -> bytes:
    """An artifact through the server's proxy: /api/2.0/mlflow-artifacts/artifacts/<root>/path."""
    root = run["info"]["artifact_uri"]
    assert root.startswith("mlflow-artifacts:/"), root  # proxied, not a client-side path
    rel = root.removeprefix("mlflow-artifacts:").lstrip("/")
    got = server.api(f"mlflow-artifacts/artifacts/{rel}/{path}")
    assert got.status == 200, (got.status, got.body[:500])
    return got.body


def sweep_runs(server: MlflowServer, sweep: SweepRun, auth=None):
    assert sweep.returncode == 0, sweep.output[-4000:]
    exp = experiment(server, "quickstart", auth)
    runs = search_runs(server, exp["experiment_id"], auth)
    parents, children = split(runs)
    return exp, parents, children


# -- the plain server ---------------------------------------------------------------------------
def test_sweep_against_the_server_exits_cleanly(servers, plain_sweep):
    assert plain_sweep.returncode == 0, plain_sweep.output[-4000:]
    summary = re.search(rf"sweep quickstart: (.*) of {TRIALS} planned", plain_sweep.output)
    assert summary and "errored" not in summary.group(1), plain_sweep.output[-2000:]
    assert f"in {servers.plain.url}" in plain_sweep.output
    assert not plain_sweep.leftovers, f"Ray processes outlived the sweep:\n{plain_sweep.leftovers}"
    print(f"plain sweep: {plain_sweep.seconds:.1f} s")


def test_one_parent_with_a_child_per_trial_through_rest(servers, plain_sweep, postgres):
    exp, parents, children = sweep_runs(servers.plain, plain_sweep)
    assert exp["artifact_location"].startswith("mlflow-artifacts:")
    assert len(parents) == 1, parents
    parent = parents[0]
    assert parent["info"]["run_id"] == plain_sweep.parent_run_id()
    assert parent["info"]["status"] == "FINISHED"
    tags = kv(parent["data"]["tags"])
    assert tags["sedsweep.method"] == "whenwho" and tags["sweep.trials_planned"] == str(TRIALS)
    assert int(tags["sweep.completed"]) + int(tags["sweep.stopped_early"]) == TRIALS
    assert tags["sweep.errored"] == "0" and tags["sweep.missing"] == "0"

    assert len(children) == TRIALS
    assert {kv(c["data"]["tags"])["mlflow.parentRunId"] for c in children} == {
        parent["info"]["run_id"]
    }
    assert len({kv(c["data"]["tags"])["sweep.trial_id"] for c in children}) == TRIALS
    for child in children:
        ctags, params = kv(child["data"]["tags"]), kv(child["data"].get("params"))
        stopped = ctags.get("sweep.stopped_early") == "true"
        assert child["info"]["status"] == "FINISHED"  # pruned ones too, tagged sweep.pruned
        assert (ctags.get("sweep.pruned") == "true") == stopped
        assert params["method"] == "whenwho" and params["mode"] == "separate"
        assert params["epochs"] == str(EPOCHS)
        assert params["when_loss"] in {"mmm", "max"}
        assert 3.0e-4 <= float(params["optim.lr"]) <= 1.0e-2
        if params["when_loss"] == "mmm":  # it acts (and is logged) only there
            assert 0.0 <= float(params["mmm.w_min"]) <= 1.0
        else:
            assert "mmm.w_min" not in params

    # the runs really live in PostgreSQL, the server's backend store
    with postgres.connect("tracking") as conn:
        rows = conn.execute(
            "SELECT run_uuid, status FROM runs WHERE experiment_id = %s",
            [int(exp["experiment_id"])],
        ).fetchall()
    assert dict(rows) == {r["info"]["run_id"]: r["info"]["status"] for r in parents + children}


def test_per_epoch_metric_history_through_rest(servers, plain_sweep):
    _, parents, children = sweep_runs(servers.plain, plain_sweep)
    last_values = []
    for child in children:
        run_id = child["info"]["run_id"]
        stopped = kv(child["data"]["tags"]).get("sweep.stopped_early") == "true"
        for key in (METRIC, "train/loss"):
            points = history(servers.plain, run_id, key)
            steps = [int(p["step"]) for p in points]
            assert steps == list(range(1, len(steps) + 1)), (key, steps)
            assert len(steps) < EPOCHS if stopped else len(steps) == EPOCHS
            assert all(math.isfinite(float(p["value"])) for p in points)
            latest = {m["key"]: m for m in child["data"]["metrics"]}[key]
            assert float(latest["value"]) == pytest.approx(float(points[-1]["value"]))
        last_values.append(float(history(servers.plain, run_id, METRIC)[-1]["value"]))
    best = {m["key"]: float(m["value"]) for m in parents[0]["data"]["metrics"]}
    assert best[f"best/{METRIC}"] == pytest.approx(max(last_values))  # objective mode: max


def test_artifacts_are_stored_and_served_by_the_server(servers, plain_sweep):
    _, parents, children = sweep_runs(servers.plain, plain_sweep)
    parent = parents[0]
    listed = {f["path"]: f for f in list_artifacts(servers.plain, parent["info"]["run_id"])}
    assert "sweep.yaml" in listed and not listed["sweep.yaml"]["is_dir"]
    text = download(servers.plain, parent, "sweep.yaml")
    assert len(text) == int(listed["sweep.yaml"]["file_size"])
    spec = yaml.safe_load(text)
    assert spec["name"] == "quickstart" and spec["method"] == "whenwho"
    assert spec["budget"]["trials"] == TRIALS and spec["budget"]["max_epochs"] == EPOCHS
    # the same bytes through the UI's download route, and on the server's artifact destination
    via_ui = http(
        f"{servers.plain.url}/get-artifact",
        params={"run_id": parent["info"]["run_id"], "path": "sweep.yaml"},
    )
    assert via_ui.status == 200 and via_ui.body == text
    on_disk = list(servers.plain.artifacts.rglob("sweep.yaml"))
    assert len(on_disk) == 1 and on_disk[0].read_bytes() == text

    finished = [c for c in children if "sweep.pruned" not in kv(c["data"]["tags"])]
    assert finished, "no trial ran its full budget"
    # a search draws the figures of its best trial only (which one that is, is the search's)
    drawn = [
        (child, figures)
        for child in finished
        if (figures := list_artifacts(servers.plain, child["info"]["run_id"], "figures"))
    ]
    assert len(drawn) == 1, [c["info"]["run_name"] for c, _ in drawn]
    child, figures = drawn[0]
    assert all(f["path"].startswith("figures/") for f in figures)
    png = next(f["path"] for f in figures if f["path"].endswith(".png"))
    assert download(servers.plain, child, png).startswith(b"\x89PNG\r\n\x1a\n")


# -- the basic-auth server ----------------------------------------------------------------------
def test_basic_auth_refuses_requests_without_valid_credentials(servers):
    server = servers.auth
    search = {"method": "POST", "body": {"max_results": 10}}
    anonymous = server.api("mlflow/experiments/search", auth=None, **search)
    assert anonymous.status == 401, anonymous.body
    assert anonymous.headers.get("www-authenticate", "").lower().startswith("basic")
    wrong = server.api("mlflow/experiments/search", auth=("admin", "not-the-password"), **search)
    assert wrong.status == 401
    assert server.api("mlflow/experiments/search", **search).status == 200  # admin


def test_sweep_with_credentials_is_tracked_and_visible_only_with_them(
    servers, auth_sweep, postgres
):
    assert not auth_sweep.leftovers, f"Ray processes outlived the sweep:\n{auth_sweep.leftovers}"
    server = servers.auth
    exp, parents, children = sweep_runs(server, auth_sweep, auth=SWEEPER)
    assert len(parents) == 1 and parents[0]["info"]["run_id"] == auth_sweep.parent_run_id()
    assert parents[0]["info"]["status"] == "FINISHED"
    assert len(children) == TRIALS
    assert {c["info"]["status"] for c in children} <= {"FINISHED", "KILLED"}
    for child in children:
        assert history(server, child["info"]["run_id"], METRIC, auth=SWEEPER)
    listed = list_artifacts(server, parents[0]["info"]["run_id"], auth=SWEEPER)
    assert "sweep.yaml" in {f["path"] for f in listed}
    print(f"auth sweep: {auth_sweep.seconds:.1f} s")

    exp_id = exp["experiment_id"]
    anonymous = server.api(
        "mlflow/runs/search", method="POST", body={"experiment_ids": [exp_id]}, auth=None
    )
    assert anonymous.status == 401
    # the sweep's user created the experiment; another user (default NO_PERMISSIONS) is refused
    outsider = server.api("mlflow/experiments/get", params={"experiment_id": exp_id}, auth=OUTSIDER)
    assert outsider.status == 403, (outsider.status, outsider.body[:300])
    with postgres.connect(servers.auth_users_db) as conn:
        users = {row[0] for row in conn.execute("SELECT username FROM users").fetchall()}
    assert users >= {"admin", SWEEPER[0], OUTSIDER[0]}


def test_credentials_in_the_tracking_uri_are_kept_in_memory_only(servers, auth_sweep, tmp_path):
    """`--tracking-uri http://user:pw@host` works, and the password appears nowhere: not in
    what the sweep printed, its work directory (sedsweep.json, Ray's experiment state, the
    journal), the runs' params and tags, the server's artifacts, nor the dashboard."""
    server = servers.auth
    user, password = SWEEPER
    with_credentials = server.url.replace("://", f"://{user}:{password}@", 1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    sweep = run_sweep(with_credentials, workdir)  # no MLFLOW_TRACKING_* in its environment
    assert sweep.returncode == 0, sweep.output[-3000:]
    assert password not in sweep.output and server.url in sweep.output
    _, parents, children = sweep_runs(server, sweep, auth=SWEEPER)  # this sweep's and earlier
    mine = [
        c
        for c in children
        if kv(c["data"].get("tags"))["mlflow.parentRunId"] == sweep.parent_run_id()
    ]
    assert len(mine) == TRIALS
    out = tmp_path / "dash"
    code = CliProcess(
        ["dashboard", "quickstart", "--workdir", str(workdir), "--tracking-uri", with_credentials,
         "--out", str(out)],
        tmp_path / "dashboard.log", cwd=ROOT,
    ).finish(120)  # fmt: skip
    assert code == 0 and (out / "index.html").is_file()
    secret = password.encode()
    leaks = [
        str(path)
        for root in (workdir, out, server.artifacts)
        for path in root.rglob("*")
        if path.is_file() and secret in path.read_bytes()
    ]
    assert not leaks, leaks
    for run in [*parents, *children]:
        data = run["data"]
        for item in (*data.get("params", []), *data.get("tags", [])):
            assert password not in item["value"], (item["key"], run["info"]["run_id"])
