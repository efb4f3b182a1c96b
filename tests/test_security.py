"""Open doors, tried as an attacker on the same machine or network would.

A local sweep's Ray keeps Ray's token authentication (Ray 2.60's default for a new local
cluster): its GCS, raylet and worker ports listen on every interface (Ray offers no setting to
bind them to loopback), so the token is what stands between them and anyone who can reach the
machine. A client without the token, or with a wrong one, must not get to run code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from sedsweep.errors import UserError
from sedsweep.sweep.search import OptunaPruningSearch
from sedsweep.sweep.spec import load_sweep
from sedsweep.sweep.trainable import load_state

from .servers import CliProcess, processes_with_env

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"


class Planted:
    """What an attacker with write access to `--storage` plants: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- S2: files in the storage are data, never code ---------------------------------------------
def test_a_planted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    planted = tmp_path / "state.pt"
    torch.save({"epoch": 3, "payload": Planted(marker)}, planted)
    with pytest.raises(UserError) as err:
        load_state(planted)
    assert not marker.exists()
    text = str(err.value)
    assert text.startswith(f"{planted}: refusing a checkpoint that is not plain data")
    assert "\n" not in text
    torch.save({"epoch": 3, "weights": torch.ones(2)}, planted)  # plain data still loads
    assert load_state(planted)["epoch"] == 3


def test_a_planted_searcher_state_is_refused_and_runs_nothing(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    planted = tmp_path / "searcher-state-x.pkl"
    planted.write_bytes(pickle.dumps(Planted(marker)))
    search = OptunaPruningSearch(load_sweep(QUICK))
    with pytest.raises(UserError) as err:
        search.restore(str(planted))
    assert not marker.exists()
    assert str(err.value).startswith(f"{planted}: not a sedsweep searcher state")
    assert "\n" not in str(err.value)
    planted.write_text('{"format": "something else"}')
    with pytest.raises(UserError, match="refusing it"):
        search.restore(str(planted))


def test_the_searcher_state_is_json_and_replays_every_trial(tmp_path):
    plan = load_sweep(QUICK, {"budget.max_epochs": 4, "budget.max_concurrent": 4})
    metric = "best_val/when_frame_auc"
    search = OptunaPruningSearch(plan)
    ids = ["done", "pruned", "broken", "running"]
    for tid in ids:
        search.suggest(tid)
    for step in range(1, 5):
        search.on_trial_result("done", {metric: 0.5 + step / 10, "training_iteration": step})
    search.on_trial_complete("done", {metric: 0.9, "training_iteration": 4})
    search.on_trial_result("pruned", {metric: 0.3, "training_iteration": 1})
    # Tune's order for a scheduler's stop: the result it stops on reaches only on_trial_complete
    search.on_trial_complete("pruned", {metric: 0.25, "training_iteration": 2})
    search.on_trial_complete("broken", None, error=True)
    search.on_trial_result("running", {metric: 0.7, "training_iteration": 1})
    search.on_trial_result("running", {metric: 0.75, "training_iteration": 2})
    path = tmp_path / "searcher-state.pkl"
    search.save(str(path))
    assert path.read_bytes().startswith(b"{")  # JSON, not a pickle

    again = OptunaPruningSearch(plan)
    again.restore(str(path))
    before, after = search.study.trials, again.study.trials
    assert [(t.number, t.state, t.params, t.values, t.intermediate_values) for t in after] == [
        (t.number, t.state, t.params, t.values, t.intermediate_values) for t in before
    ]
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.PRUNED,
                                        TrialState.FAIL, TrialState.RUNNING]  # fmt: skip
    assert list(again.trials) == ["running"] and again.last_step["running"] == 2
    again.on_trial_complete("running", {metric: 0.8, "training_iteration": 4})
    assert again.study.trials[3].state == TrialState.COMPLETE
    assert again.suggest("next")["optuna_trial"] == 4


def test_a_grid_searcher_resumes_at_its_next_cell(tmp_path):
    plan = load_sweep(ROOT / "search_spaces" / "whenwho_table3.yaml", scale="tiny")
    search = OptunaPruningSearch(plan)
    first = [search.suggest(str(n)) for n in range(5)]
    path = tmp_path / "state.json"
    search.save(str(path))
    rest_before = [search.suggest(str(n)) for n in range(5, plan.n_trials)]
    again = OptunaPruningSearch(plan)
    again.restore(str(path))
    rest_after = [again.suggest(str(n)) for n in range(5, plan.n_trials)]
    assert rest_after == rest_before and again.suggest("extra") == again.FINISHED
    assert sorted(again.trials) == sorted(str(n) for n in range(plan.n_trials))
    assert [t.params for t in again.study.trials[:5]] == [
        {k: v for k, v in f["overrides"].items()} for f in first
    ]


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


def sweep_token(marker: str) -> str:
    """The token in the environment of the Ray processes a sweep started (the driver set it
    after it started, so only the processes it started since show it in /proc)."""
    for pid in processes_with_env(marker):
        with contextlib.suppress(OSError):
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if entry.startswith(b"RAY_AUTH_TOKEN="):
                    return entry.split(b"=", 1)[1].decode()
    raise AssertionError("no process of the sweep has RAY_AUTH_TOKEN")


@pytest.mark.slow
def test_a_local_sweep_refuses_clients_without_its_token(tmp_path):
    """A sweep's local Ray, as the product starts it (token auth on, no token chosen), has a
    token of its own (issue 32): in the driver's environment only (not in any process's
    argv, no ~/.ray/auth_token written), so a client with the user's ~/.ray/auth_token is
    refused like one without a token; with the sweep's token it runs code. The trials sleep
    long enough to outlast the clients; the sweep is then Ctrl-C'd and ends as interrupted."""
    home = tmp_path / "home"
    users_token = home / ".ray" / "auth_token"  # what Ray 2.60 shares among local clusters
    users_token.parent.mkdir(parents=True)
    users_token.write_text(secrets.token_hex(32))
    sweep = CliProcess(
        ["sweep", str(ROOT / "search_spaces" / "null_load.yaml"), "--scale", "tiny",
         "--set", "fixed.sleep_s=60", "--set", "budget.trials=2",
         "--workdir", str(tmp_path / "work")],
        tmp_path / "sweep.log",
        env={"RAY_AUTH_MODE": None, "HOME": str(home)},  # the product default
    )  # fmt: skip
    try:
        sweep.wait_for(r"View detailed results here", timeout=120)
        ports = list((sweep.ray_tmp / "ray" / "session_latest").glob("gcs_server_port_*"))
        assert ports, sweep.output[-2000:]
        host = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
        address = f"{host[0] if host else '127.0.0.1'}:{ports[0].read_text().strip()}"
        token = sweep_token(sweep.marker)
        assert len(token) == 64 and token != users_token.read_text()
        argv = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert token not in argv
        # the same address with the token works: the refusals below are the token's doing
        owner = connect(address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, 60)
        assert "RESULT ran code" in owner, owner[-2000:]
        strangers = (
            {"RAY_AUTH_MODE": "disabled"},
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(users_token)},
        )
        with ThreadPoolExecutor(len(strangers)) as pool:  # both try at once
            tried = list(pool.map(lambda env: connect(address, env, 30), strangers))
        for env, stranger in zip(strangers, tried, strict=True):
            assert "ran code" not in stranger, (env, stranger[-2000:])
        assert sweep.proc.poll() is None, sweep.output[-3000:]  # the clients ran beside it
        sweep.proc.send_signal(signal.SIGINT)
    finally:
        code = sweep.finish(timeout=300)
    assert code == 1, sweep.output[-3000:]
    assert "sweep incomplete: " in sweep.output and "resume with" in sweep.output
    assert "Traceback" not in sweep.output
    assert [p.name for p in users_token.parent.iterdir()] == ["auth_token"]


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    damaged = tmp_path / "state.pt"
    torch.save({"epoch": 3, "weights": torch.ones(1000)}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:200])  # truncated
    with pytest.raises(UserError) as err:
        load_state(damaged)
    assert str(err.value).startswith(f"{damaged}: unreadable checkpoint (")
    assert "\n" not in str(err.value)


def test_resume_refuses_a_planted_or_damaged_tune_state_before_touching_anything(tmp_path, capsys):
    """Issue 32: Ray swallowed the searcher's refusal ("Failed to restore the run state"),
    resumed from an empty state and deleted three child runs as orphans. Now `resume` checks
    what Tune will read first and stops in one line naming the file; nothing is written."""
    import json
    import pickle

    from sedsweep.cli import main
    from sedsweep.sweep.seal import seal

    sweep = tmp_path / "ray" / "quickstart-1"
    sweep.mkdir(parents=True)
    (sweep / "sedsweep.json").write_text(json.dumps({
        "experiment": "quickstart-1", "path": str(sweep), "workdir": str(tmp_path),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment_id": "1",
        "parent_run_id": "p", "source": str(QUICK), "spec": {}, "execution": "e",
        "offline": False,
    }))  # fmt: skip
    state = sweep / "experiment_state-2026-12-06_07-00-00.json"
    state.write_text("{not json")
    seal(sweep, [state])  # as the driver would have (sealing is tested in test_seal.py)
    before = sorted(p.name for p in sweep.iterdir())
    assert main(["resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sedsweep: error: {state}: unreadable Ray Tune experiment state (JSONDecodeError)"
    )
    state.write_text(json.dumps({"trial_data": []}))
    seal(sweep, [state])
    marker = tmp_path / "pwned"
    planted = sweep / "searcher-state-2026-12-06_07-00-00.pkl"
    planted.write_bytes(pickle.dumps(Planted(marker)))
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sedsweep: error: {planted}: not a sedsweep searcher state"), err
    assert not marker.exists()
    assert sorted(p.name for p in sweep.iterdir()) == sorted([*before, planted.name])
    assert not (tmp_path / "mlflow.db").exists()  # no store opened, no run touched
