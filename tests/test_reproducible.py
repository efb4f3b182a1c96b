"""Reproducible sweeps (`search.reproducible`): the same file and seed give the same trials,
decisions and metrics on one worker, two workers, two nodes, and after a kill and resume.

The pieces are tested alone first (halving against a brute-force ranking, batches driven in
different completion orders, the record comparison); then whole sweeps on real Ray Tune,
Optuna and MLflow (SQLite), and a driver SIGKILLed at a random point and resumed.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.cluster_utils import Cluster
from ray.tune.search import Searcher

from sedsweep.cli import main
from sedsweep.errors import UserError
from sedsweep.sweep.record import JOURNAL_FILE, RECORD_FILE, compare_records
from sedsweep.sweep.rungs import halving
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.search import OptunaPruningSearch
from sedsweep.sweep.spec import load_sweep, trial_seed
from sedsweep.sweep.state import load_record
from sedsweep.tracking import tracking_uri_for

from .servers import marked_driver

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"
METRIC = "best_val/when_frame_auc"
SMALL = {"search.reproducible": True, "budget.trials": 6, "budget.max_epochs": 4}


# -- the pieces ---------------------------------------------------------------------------------
def _brute_force_kept(values: dict[int, float | None], rf: float, maximise: bool) -> set[int]:
    """Successive halving by pairwise comparison: a trial beats another when its value is
    better (a missing value loses to any value), or equal with a lower number."""

    def better(a: int, b: int) -> int:
        va, vb = values[a], values[b]
        if (va is None) != (vb is None):
            return -1 if vb is None else 1
        if va is not None and vb is not None and va != vb:
            return -1 if (va > vb) == maximise else 1
        return -1 if a < b else 1

    ranked = sorted(values, key=functools.cmp_to_key(better))
    return set(ranked[: max(1, math.floor(len(values) / rf))])


@pytest.mark.parametrize("rf", [2.0, 3.0, 2.5])
@pytest.mark.parametrize("maximise", [True, False])
def test_halving_keeps_the_best_fraction_like_a_brute_force_ranking(rf, maximise):
    rng = np.random.default_rng(int(rf * 10) + maximise)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        numbers = sorted(rng.choice(100, size=m, replace=False).tolist())
        pool = [0.1, 0.5, 0.5, 0.9, None]  # ties and missing values on purpose
        values = {n: (pool[int(rng.integers(5))] if rng.random() < 0.5 else float(rng.random()))
                  for n in numbers}  # fmt: skip
        kept = halving(values, rf, maximise)
        assert kept == sorted(kept)
        assert set(kept) == _brute_force_kept(values, rf, maximise), values


def test_trial_seeds_differ_per_trial_and_per_sweep_seed_and_fit_31_bits():
    seeds = [trial_seed(0, n) for n in range(2000)]
    assert len(set(seeds)) == 2000 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [trial_seed(0, n) for n in range(2000)]  # a function of (seed, number)
    assert len(set(seeds) & {trial_seed(1, n) for n in range(2000)}) < 5
    # independent of the value: numpy's SeedSequence of the pair, as documented
    assert trial_seed(7, 3) == int(np.random.SeedSequence([7, 3]).generate_state(1)[0]) >> 1


def _result(step: int, value: float) -> dict:
    return {METRIC: value, "epoch": step, "training_iteration": step}


def _value(params: dict) -> float:
    """A made-up objective of a trial's parameters (so later suggestions depend on it)."""
    w_min = params.get("mmm.w_min", 0.0)  # suggested only where when_loss = mmm
    return 1.0 - (math.log10(params["optim.lr"]) + 2.5) ** 2 / 4 + w_min / 10


def _drive(order: list[int], max_concurrent: int | None) -> OptunaPruningSearch:
    """A reproducible searcher (batches of 3, 7 trials) whose trials report and end in
    `order` of their numbers, as far as what is in flight allows."""
    overrides = {**SMALL, "budget.trials": 7, "search.batch_size": 3,
                 "budget.max_concurrent": max_concurrent, "scheduler.type": "none"}  # fmt: skip
    search = OptunaPruningSearch(load_sweep(QUICK, overrides))
    tids = itertools.count()
    ended = 0
    while ended < 7:
        flying = {}
        while (tid := f"t{next(tids)}") and (config := search.suggest(tid)) is not None:
            flying[config["optuna_trial"]] = tid
        assert flying, "the searcher suggested nothing while nothing was in flight"
        for number in sorted(flying, key=order.index):
            value = _value(search.trials[flying[number]].params)
            for step in range(1, 5):
                search.on_trial_result(flying[number], _result(step, value * step / 4))
            search.on_trial_complete(flying[number], _result(4, value))
            ended += 1
    return search


def test_a_reproducible_search_suggests_each_batch_from_the_batches_before_it_only():
    runs = [
        _drive(list(range(7)), None),
        _drive([2, 1, 0, 5, 3, 4, 6], None),
        _drive([1, 2, 0, 4, 5, 3, 6], 1),  # one trial at a time
    ]
    params = [[(t.number, t.state, t.params, t.values) for t in r.study.trials] for r in runs]
    assert len(params[0]) == 7 and params[0] == params[1] == params[2]
    # while a batch is in flight nothing more is suggested
    search = OptunaPruningSearch(load_sweep(QUICK, {**SMALL, "search.batch_size": 2}))
    assert search.suggest("a") is not None and search.suggest("b") is not None
    assert search.suggest("c") is None
    search.on_trial_complete("a", _result(4, 0.5))
    assert search.suggest("c") is None  # "b" is still running
    search.on_trial_complete("b", _result(4, 0.6))
    assert search.suggest("c")["optuna_trial"] == 2
    # every trial has its own seed, and all share the sweep's validation split
    first = search.overrides(search.study.trials[0])
    assert first["seed"] == trial_seed(0, 0) and first["split_seed"] == 0


def test_a_reproducible_grid_without_early_stopping_is_one_batch_and_keeps_its_seeds():
    table = ROOT / "search_spaces" / "whenwho_table3.yaml"  # 6 rows x 3 seeds, scheduler none
    plan = load_sweep(table, {"search.reproducible": True}, scale="tiny")
    search = OptunaPruningSearch(plan)
    configs = [search.suggest(f"t{n}") for n in range(plan.n_trials)]
    assert None not in configs and search.suggest("more") == Searcher.FINISHED
    plain = OptunaPruningSearch(load_sweep(table, scale="tiny"))
    assert [c["overrides"] for c in configs] == [
        plain.suggest(f"t{n}")["overrides"] for n in range(plan.n_trials)
    ]  # the replicate seeds, no derived ones


def test_synchronous_halving_waits_for_the_batch_and_survives_save_and_restore(tmp_path):
    plan = load_sweep(QUICK, {**SMALL, "budget.trials": 4, "budget.max_epochs": 6})
    search = OptunaPruningSearch(plan)  # quickstart: asha, grace 2, rf 2 -> rungs 2 and 4
    record = search.halving
    assert record.rungs == [2, 4] and record.batch == 4
    ids = [f"t{n}" for n in range(4)]
    for tid in ids:
        search.suggest(tid)
    assert record.at_rung(0, 2, 0.9) == "wait" and record.at_rung(2, 2, 0.3) == "wait"
    search.on_trial_complete("t1", None, error=True)  # ends before the rung: left out
    path = tmp_path / "state.json"
    search.save(str(path))
    again = OptunaPruningSearch(plan)
    again.restore(str(path))
    kept = again.halving
    assert kept.standing(0) == "wait" and kept.standing(3) == "run"
    # the last of the batch arrives: 3 reached the rung, floor(3 / 2) = 1 goes on
    assert kept.at_rung(3, 2, 0.6) == "stop"
    assert kept.decisions == {(0, 2): [0]} and kept.pruned == {2: 2, 3: 2}
    assert kept.standing(0) == "run" and kept.standing(2) == "stop"
    assert kept.at_rung(3, 2, 0.99) == "stop"  # a replayed rung keeps its decision


def _record(trace_objective: dict) -> dict:
    trace = {
        "batch_size": 2,
        "suggestions": [
            {"number": n, "overrides": {"optim.lr": 0.001 * (n + 1)}} for n in range(3)
        ],
        "decisions": [{"first": 0, "rung": 1, "kept": [1]}],
        "objective": trace_objective,
        "outcomes": {str(n): {"state": "COMPLETE", "values": [0.5]} for n in range(3)},
    }
    return {"format": "sedsweep.reproducibility/1", "reproducible": True, "spec": {},
            "data": {}, "packages": {}, "platform": "x", "trace": trace}  # fmt: skip


def test_compare_names_the_first_divergence_and_honours_a_tolerance():
    objective = {"0": {"1": 0.5, "2": 0.6}, "1": {"1": 0.7, "2": 0.8}, "2": {"1": 0.4}}
    a = _record(objective)
    assert compare_records(a, _record(json.loads(json.dumps(objective)))).same
    changed = json.loads(json.dumps(objective))
    changed["1"]["2"] = 0.8 + 1e-12
    found = compare_records(a, _record(changed))
    assert not found.same and found.first.startswith("trial 1's objective at epoch 2")
    assert compare_records(a, _record(changed), tolerance=1e-9).same
    b = _record(objective)
    b["trace"]["decisions"][0]["kept"] = [0]
    found = compare_records(a, b)
    assert found.first.startswith("the decision at epoch 1 for trials 0-1")
    b = _record(objective)
    b["trace"]["suggestions"][2]["overrides"]["optim.lr"] = 0.5
    assert compare_records(a, b).first.startswith("trial 2's suggestion")


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["search.batch_size=3"], "search.batch_size"),
        (["search.reproducible=true", "scheduler.type=hyperband"], "scheduler.type"),
        (["search.reproducible=true", "scheduler.type=median"], "scheduler.type"),
        (["search.reproducible=true", "search.batch_size=0"], "search.batch_size"),
    ],
)
def test_a_reproducible_search_it_cannot_run_is_one_line_exit_2(tmp_path, capsys, sets, field):
    args = ["sweep", str(QUICK), "--dry-run", "--workdir", str(tmp_path / "w")]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err, err
    assert not (tmp_path / "w").exists()


# -- whole sweeps -----------------------------------------------------------------------------
def _children(workdir: Path) -> dict[int, object]:
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    return {int(r.data.tags["optuna.trial_number"]): r for r in runs
            if "mlflow.parentRunId" in r.data.tags}  # fmt: skip


def _histories(workdir: Path, key: str) -> dict[int, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri_for(workdir))
    return {
        number: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for number, run in _children(workdir).items()
    }


def _record_of(outcome) -> dict:
    return json.loads((outcome.path / RECORD_FILE).read_text())


@pytest.fixture(scope="module")
def executions(tmp_path_factory):
    """The small reproducible quickstart run with 1 and 2 trials at once, and on two nodes."""
    root = tmp_path_factory.mktemp("repro")
    out = {}
    for name, extra in (("one", {"budget.max_concurrent": 1}),
                        ("two", {"budget.max_concurrent": 2})):  # fmt: skip
        ray.shutdown()
        out[name] = (root / name, run_sweep(load_sweep(QUICK, {**SMALL, **extra}),
                                            workdir=root / name))  # fmt: skip
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        plan = load_sweep(QUICK, SMALL)
        out["nodes"] = (root / "nodes", run_sweep(plan, workdir=root / "nodes",
                                                  address=cluster.address))  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


@pytest.mark.slow
def test_one_worker_two_workers_and_two_nodes_run_the_same_sweep(executions):
    records = {name: _record_of(outcome) for name, (_, outcome) in executions.items()}
    for name, (_, outcome) in executions.items():
        assert outcome.complete, (name, outcome.summary())
    one = records["one"]
    assert len(one["trace"]["suggestions"]) == 6 and one["trace"]["decisions"]
    for name in ("two", "nodes"):
        found = compare_records(one, records[name])
        assert found.same, (name, found.first)
        assert records[name]["trace"] == one["trace"]
    bests = {name: outcome.best["config"] for name, (_, outcome) in executions.items()}
    assert bests["one"] == bests["two"] == bests["nodes"]
    # every logged per-epoch metric, not only the objective, is bit-equal
    for key in ("val/when_frame_auc", "train/loss", "val/who_auc_macro"):
        reference = _histories(executions["one"][0], key)
        assert reference and all(reference.values())
        for name in ("two", "nodes"):
            assert _histories(executions[name][0], key) == reference, (name, key)
    # pruning: the same trials stopped at the same epochs, tagged as the scheduler's decision
    stopped = {}
    for name, (workdir, _) in executions.items():
        stopped[name] = {n: (r.data.tags.get("sweep.pruned_at_epoch"), r.info.status)
                         for n, r in _children(workdir).items()}  # fmt: skip
    assert stopped["one"] == stopped["two"] == stopped["nodes"]
    assert {s for _, s in stopped["one"].values()} == {"FINISHED"}
    assert any(at is not None for at, _ in stopped["one"].values())
    # the study is also an Optuna journal that Optuna (and optuna-dashboard) open
    storage = JournalStorage(JournalFileBackend(str(executions["one"][1].path / JOURNAL_FILE)))
    study = storage.get_all_studies()[0]
    trials = storage.get_all_trials(study._study_id)
    assert [t.state for t in trials] == [TrialState[o["state"]] for o in
                                         one["trace"]["outcomes"].values()]  # fmt: skip
    assert {t.number: t.params for t in trials} == {
        s["number"]: {k: v for k, v in s["overrides"].items() if k not in ("seed", "split_seed")}
        for s in one["trace"]["suggestions"]
    }
    # with the times the live journal saw (issue 35: all trials had one start and end time)
    assert all(t.datetime_start < t.datetime_complete for t in trials)
    assert len({t.datetime_complete for t in trials}) == len(trials)


@pytest.mark.slow
def test_compare_says_same_or_names_where_another_seed_diverges(executions, tmp_path, capsys):
    one, two = executions["one"][1].path, executions["two"][1].path
    assert main(["compare", str(one), str(two)]) == 0
    out = capsys.readouterr().out
    assert "same sweep" in out and "budget.max_concurrent (1 vs 2)" in out
    ray.shutdown()
    other = run_sweep(load_sweep(QUICK, {**SMALL, "search.seed": 1}), workdir=tmp_path / "s1")
    ray.shutdown()
    assert main(["compare", str(one), str(other.path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"different: {one} and {other.path} first diverge at "
                              "trial 0's suggestion:")  # fmt: skip
    assert main(["compare", str(one), str(tmp_path / "nothing")]) == 2
    with pytest.raises(UserError, match="no sweep found"):
        load_record(tmp_path / "nothing")


MARKER_VAR = "SEDSWEEP_REPRO_TEST_MARKER"


@pytest.mark.slow
def test_a_sweep_killed_at_a_random_point_and_resumed_is_the_same_sweep(executions, tmp_path):
    workdir = tmp_path / "w"
    sets = [f"{k}={str(v).lower()}" for k, v in SMALL.items()] + ["budget.max_concurrent=2"]
    cmd = [sys.executable, "-c", "from sedsweep.cli import main; main()", "sweep", str(QUICK)]
    cmd += ["--workdir", str(workdir)] + [a for s in sets for a in ("--set", s)]
    delay = random.Random().uniform(0.0, 12.0)  # after the first checkpoint: anywhere mid-sweep
    print(f"killing the driver {delay:.1f} s after the first checkpoint")
    with marked_driver(cmd, tmp_path / "driver.log", MARKER_VAR) as driver:
        deadline = time.monotonic() + 300
        while not list(workdir.glob("ray/*/run_trial*/checkpoint_000000")):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        time.sleep(delay)
        finished_first = driver.poll() is not None
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    ray.shutdown()
    try:
        code = main(["resume", str(workdir)])
    finally:
        ray.shutdown()
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]
    [sweep] = workdir.glob(f"ray/*/{RECORD_FILE}")
    resumed = json.loads(sweep.read_text())
    found = compare_records(_record_of(executions["two"][1]), resumed)
    assert found.same, (f"killed after {delay:.1f} s (finished first: {finished_first})",
                        found.first)  # fmt: skip
    runs = _children(workdir)
    assert sorted(runs) == list(range(6))  # one child per trial, none duplicated
    assert _histories(workdir, "val/when_frame_auc") == _histories(
        executions["two"][0], "val/when_frame_auc"
    )


def test_a_deterministic_trial_names_operations_without_a_deterministic_kernel(capsys):
    import warnings

    from sedsweep.sweep.trainable import _nondeterminism

    op = "scatter_add_cuda_kernel does not have a deterministic implementation, but you set..."
    flagged: set[str] = set()
    with _nondeterminism(True) as pinned:
        warnings.warn(op, UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        assert pinned(flagged) and flagged == {"scatter_add_cuda_kernel"}
        assert not pinned(flagged)  # reported once
    assert "something else" in capsys.readouterr().err  # other warnings still shown
    with _nondeterminism(False) as pinned:
        assert not pinned(flagged)
