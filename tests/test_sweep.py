"""Sweeps on real engines: Optuna searcher, local Ray Tune, MLflow on SQLite (no mocks)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sedsweep.cli import main
from sedsweep.sweep.runner import earlier_executions, run_sweep
from sedsweep.sweep.search import OptunaPruningSearch, trial_outcome
from sedsweep.sweep.spec import CheckpointPolicy, load_sweep
from sedsweep.sweep.state import STATE_FILE
from sedsweep.tracking import tracking_uri_for

from .conftest import _ensure_local_ray
from .sweeps import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"


# -- the searcher alone ----------------------------------------------------------------------
def test_earlier_executions_of_a_name_are_its_saved_states_oldest_first(tmp_path):
    """Starting a sweep whose name ran here before says which execution this is."""
    names = {
        "grid-20261206-101500-0a1b2c": True,
        "grid-20261205-090000-ffffff": True,
        "grid-20261206-120000-123456": False,  # failed before saving its state
        "grid-big-20261206-101500-0a1b2c": True,
        "grid-notes": True,
    }  # other names
    for name, saved in names.items():
        (tmp_path / name).mkdir()
        if saved:
            (tmp_path / name / STATE_FILE).write_text("{}")
    found = [d.name for d in earlier_executions(tmp_path, "grid")]
    assert found == ["grid-20261205-090000-ffffff", "grid-20261206-101500-0a1b2c"]
    assert earlier_executions(tmp_path / "absent", "grid") == []


def test_early_stopped_trials_reach_optuna_as_pruned():
    plan = load_sweep(QUICK, {"budget.max_epochs": 4, "budget.max_concurrent": 5})
    search = OptunaPruningSearch(plan)
    metric = "best_val/when_frame_auc"  # the selected model's value, not the last epoch's
    for tid in ("full", "stopped", "broken", "nan", "short"):
        config = search.suggest(tid)
        conditional = {"mmm.w_min"} if config["overrides"]["when_loss"] == "mmm" else set()
        assert set(config["overrides"]) == {"when_loss", "optim.lr", *conditional}
    # Tune's order: every result goes to the searcher except the one the scheduler stops a
    # trial on, which only comes with the completion; a trainable that returns early has its
    # last result passed on twice (the second time as Tune's duplicate), then completes.
    for step in range(1, 5):
        search.on_trial_result("full", {metric: 0.5 + step / 10, "training_iteration": step})
    search.on_trial_result("stopped", {metric: 0.4, "training_iteration": 1})
    for step in (1, 2, 2):
        search.on_trial_result("short", {metric: 0.6, "training_iteration": step})
    search.on_trial_complete("full", {metric: 0.9, "training_iteration": 4})
    search.on_trial_complete("stopped", {metric: 0.5, "training_iteration": 2})
    search.on_trial_complete("broken", None, error=True)
    search.on_trial_complete("nan", {metric: math.nan, "training_iteration": 4})
    search.on_trial_complete("short", {metric: 0.6, "training_iteration": 2})
    full, stopped, broken, nan, short = search.study.trials
    assert full.state == TrialState.COMPLETE and full.value == pytest.approx(0.9)
    assert stopped.state == TrialState.PRUNED  # Optuna keeps the last intermediate as its value
    assert stopped.value == pytest.approx(0.5)
    assert stopped.intermediate_values == {1: pytest.approx(0.4), 2: pytest.approx(0.5)}
    assert broken.state == TrialState.FAIL and nan.state == TrialState.FAIL
    # ended short with no stop decision: FAIL, kept so that a re-run after resume is added
    assert short.state == TrialState.FAIL and search.failed["short"] == short.number
    assert trial_outcome({metric: 0.7, "training_iteration": 3}, False, [metric], 4) == "pruned"
    # the last epoch's val/ value is not what Optuna is told
    last = {"val/when_frame_auc": 0.9, "training_iteration": 4}
    assert trial_outcome(last, False, [metric], 4) == "fail"


def test_a_trial_asha_stops_at_its_last_epoch_has_that_epoch_as_an_intermediate():
    plan = load_sweep(QUICK, {"budget.max_epochs": 3})
    search = OptunaPruningSearch(plan)
    metric = "best_val/when_frame_auc"
    search.suggest("a")
    for step in (1, 2):
        search.on_trial_result("a", {metric: step / 10, "training_iteration": step})
    # ASHA stops every trial at max_t: the last result comes only with the completion
    search.on_trial_complete("a", {metric: 0.7, "training_iteration": 3})
    [trial] = search.study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.7)
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.7}


def test_a_pareto_search_tells_optuna_every_objective():
    plan = load_sweep(
        QUICK,
        {
            "objective": [
                {"metric": "val/when_frame_auc", "mode": "max"},
                {"metric": "val/who_auc_macro", "mode": "max"},
            ],
            "scheduler.metric": "val/when_frame_auc",
            "search.algorithm": "nsga2",
        },
    )
    search = OptunaPruningSearch(plan)
    assert search.study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
    for tid in ("full", "stopped"):
        search.suggest(tid)
    both = {"best_val/when_frame_auc": 0.8, "best_val/who_auc_macro": 0.6}
    search.on_trial_result("full", {**both, "training_iteration": 1})  # no intermediate values
    search.on_trial_complete("full", {**both, "training_iteration": 6})
    search.on_trial_complete("stopped", {**both, "training_iteration": 2})
    full, stopped = search.study.trials
    assert full.state == TrialState.COMPLETE and full.values == [0.8, 0.6]
    assert stopped.state == TrialState.PRUNED and not stopped.intermediate_values


def test_a_running_searcher_mirrors_its_study_into_a_live_optuna_journal(tmp_path):
    """Issue 35: optuna-dashboard could not follow a running sweep (the journal was written
    once, at the end, every trial with the same start and end time)."""
    import time

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sedsweep.sweep.live_journal import flush, mirrored, timed, times

    def journal_trials() -> list:
        storage = JournalStorage(JournalFileBackend(str(path)))
        return optuna.load_study(study_name="quickstart", storage=storage).trials

    path = tmp_path / "optuna-journal.log"
    plan = load_sweep(QUICK, {"budget.max_epochs": 3})
    search = OptunaPruningSearch(plan)
    with mirrored(path):
        search.suggest("a")
        time.sleep(0.05)
        search.suggest("b")
        search.on_trial_result("a", {"best_val/when_frame_auc": 0.6, "epoch": 1})
        flush()  # a thread writes the queued events
        [a, b] = journal_trials()  # what optuna-dashboard reads while the sweep runs
        assert a.state == b.state == TrialState.RUNNING and a.intermediate_values == {1: 0.6}
        assert a.params == search.trials["a"].params and a.datetime_start < b.datetime_start
        time.sleep(0.05)
        search.on_trial_complete("a", {"best_val/when_frame_auc": 0.7, "epoch": 3})
        search.save(str(tmp_path / "s.json"))
    again = OptunaPruningSearch(plan)  # a resumed driver: the same journal, the same trials
    with mirrored(path):
        again.restore(str(tmp_path / "s.json"))
        again.on_trial_complete("b", {"best_val/when_frame_auc": 0.5, "epoch": 1})
    a, b = journal_trials()
    assert (a.state, a.value, b.state) == (TrialState.COMPLETE, 0.7, TrialState.PRUNED)
    assert a.datetime_start < a.datetime_complete < b.datetime_complete
    assert len(journal_trials()) == 2
    # the rewrite at the end keeps these times, in number order
    when = times(path)
    kept = [timed(t, when) for t in again.study.get_trials(deepcopy=False)]
    assert [(t.datetime_start, t.datetime_complete) for t in kept] == [
        (a.datetime_start, a.datetime_complete),
        (b.datetime_start, b.datetime_complete),
    ]
    OptunaPruningSearch(plan).suggest("elsewhere")  # outside a sweep's fit(): no journal
    assert len(journal_trials()) == 2
    # a driver killed mid-append leaves a partial line: the next driver cuts it and goes on
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "wor')
    with mirrored(path):  # as a new driver process opens it
        assert again.suggest("c") is not None
    assert [t.state for t in journal_trials()][2:] == [TrialState.RUNNING]


def test_searcher_state_survives_save_and_restore(tmp_path):
    plan = load_sweep(QUICK)
    search = OptunaPruningSearch(plan)
    first = search.suggest("a")
    search.save(str(tmp_path / "s.pkl"))
    again = OptunaPruningSearch(plan)
    again.restore(str(tmp_path / "s.pkl"))
    assert "a" in again.trials and again.trials["a"].params == search.trials["a"].params
    assert again.suggest("b")["optuna_trial"] == first["optuna_trial"] + 1


def test_a_searcher_pickled_by_an_older_sedsweep_restores_and_searches(tmp_path):
    """Tune pickles the searcher with the experiment; `Tuner.restore` unpickles it before the
    JSON state is read. A searcher pickled before queues, concurrency limits, conditional keys,
    Pareto sweeps and the halving record (its halving state then lived on the searcher) is
    given each attribute as it behaved before, and searches on."""
    import pickle

    plan = load_sweep(QUICK)
    search = OptunaPruningSearch(plan)
    first = search.suggest("a")
    search.save(str(tmp_path / "state.json"))
    old = dict(search.__dict__)
    for added in ("queue", "reproducible", "max_concurrent", "when", "multi", "objectives",
                  "halving"):  # fmt: skip
        del old[added]
    old.update(batch=4, total=plan.n_trials, rungs=[], reduction_factor=2.0)  # its own fields
    older = pickle.loads(pickle.dumps(type("Old", (), {"__reduce__": lambda _: (
        object.__new__, (OptunaPruningSearch,), old)})()))  # fmt: skip
    older.restore(str(tmp_path / "state.json"))
    assert older.objectives == [search.metric] and not older.multi and older.when == {}
    assert older.halving.batch == 4 and older.halving.total == plan.n_trials
    assert older.trials["a"].params == search.trials["a"].params
    assert older.suggest("b")["optuna_trial"] == first["optuna_trial"] + 1  # no limit then
    assert older.suggest("c")["optuna_trial"] == first["optuna_trial"] + 2


def test_grid_runs_every_cell_and_replicate_exactly_once():
    plan = load_sweep(ROOT / "search_spaces" / "whenwho_table3.yaml", scale="tiny")
    search = OptunaPruningSearch(plan)
    seen = []
    for n in range(plan.n_trials):
        overrides = search.suggest(str(n))["overrides"]
        seen.append(tuple(sorted(overrides.items())))
    expected = {
        tuple(sorted({**cell, **rep}.items()))
        for cell in plan.grid_cells
        for rep in plan.replicate_cells
    }
    assert len(seen) == 18 and set(seen) == expected


# -- real sweeps on a local Ray ---------------------------------------------------------------
def children_of(client: MlflowClient, experiment: str, parent_id: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


@pytest.fixture(scope="module")
def tpe_sweep(quickstart_sweep):
    """The README's quickstart (TPE + ASHA, 8 trials of 6 epochs), run once per test run."""
    return quickstart_sweep


@pytest.mark.slow
def test_tpe_asha_sweep_tracks_one_parent_and_every_trial(tpe_sweep):
    workdir, plan, outcome = tpe_sweep
    assert outcome.complete, outcome.summary()
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_id == outcome.parent_run_id
    assert parents[0].info.status == "FINISHED"
    # the trials' runs (a `best` re-training of the session's sweep, by test_report, is a
    # child of the parent too, with no trial id)
    children = [c for c in children_of(client, "quickstart", outcome.parent_run_id)
                if "sweep.trial_id" in c.data.tags]  # fmt: skip
    assert len(children) == plan.n_trials
    assert len({c.data.tags["sweep.trial_id"] for c in children}) == plan.n_trials
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/when_frame_auc")]
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert child.data.params["mode"] == "separate"
        assert child.data.params["epochs"] == str(plan.epochs)
        stopped = child.data.tags.get("sweep.stopped_early") == "true"
        assert child.info.status == "FINISHED"  # pruned ones too, tagged as such (issue 35)
        assert (child.data.tags.get("sweep.pruned") == "true") == stopped
        if stopped:
            assert child.data.tags["sweep.pruned_at_epoch"] == str(len(steps))
        assert len(steps) < plan.epochs if stopped else len(steps) == plan.epochs
        assert child.data.tags["sweep.node_id"]
    finished = [c for c in children if "sweep.pruned" not in c.data.tags]
    assert finished
    # issue 17: figures are drawn at the end, for the search's best completed trial only
    finished.sort(key=lambda c: -c.data.metrics["best_val/when_frame_auc"])
    for rank, child in enumerate(finished):
        figures = client.list_artifacts(child.info.run_id, "figures")
        if rank == 0:
            assert figures and all(f.path.endswith(".png") for f in figures), rank
            assert child.data.tags["sweep.figures"] == str(len(figures))
        else:
            assert not figures and "sweep.figures" not in child.data.tags


@pytest.mark.slow
def test_trials_checkpoint_on_rungs_and_their_last_epoch_not_every_epoch(tpe_sweep):
    """Issue 17: every epoch wrote a checkpoint, and Tune forced an experiment snapshot each
    time a trial had written num_to_keep of them. Under the quickstart's policy (ASHA grace 2,
    reduction 2, 6 epochs: rungs 2 and 4; epochs far shorter than 30 s) only the rung and last
    epochs do, and Tune keeps the newest two."""
    _, plan, outcome = tpe_sweep
    policy = CheckpointPolicy.of(plan.spec, plan.epochs)
    assert policy.always == {2, 4, plan.epochs}
    for trial in Path(outcome.path).glob("run_trial_*"):
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        saved = [r["epoch"] for r in rows if r.get("checkpoint_dir_name")]
        assert saved == [r["epoch"] for r in rows if r["epoch"] in policy.always], rows
        assert len(list(trial.glob("checkpoint_*"))) == min(len(saved), 2)


@pytest.mark.slow
def test_asha_stops_reach_optuna_as_pruned(tpe_sweep):
    _, plan, outcome = tpe_sweep
    search = OptunaPruningSearch(plan)
    search.restore_from_dir(str(outcome.path))  # Ray Tune's public path to a sweep's searcher
    study = search.study
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) == outcome.counts["stopped_early"]
    assert states.count(TrialState.COMPLETE) == outcome.counts["completed"]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    for t in pruned:
        assert (
            t.intermediate_values and t.value == t.intermediate_values[max(t.intermediate_values)]
        )
        assert max(t.intermediate_values) < plan.epochs


@pytest.mark.slow
def test_a_raising_trial_is_failed_with_its_traceback(local_ray, tmp_path, capsys):
    spec = yaml.safe_load(QUICK.read_text())
    spec.update(
        name="fails",
        search={"algorithm": "grid"},
        scheduler={"type": "none"},
        space={"mmm.w_max": {"type": "grid", "values": [0.5, 1.0e300]}},
        budget={"max_epochs": 2},
    )
    path = tmp_path / "fails.yaml"
    path.write_text(yaml.safe_dump(spec))
    workdir = tmp_path / "w"
    assert main(["sweep", str(path), "--workdir", str(workdir)]) == 1
    out = capsys.readouterr().out
    assert "1 errored" in out
    # issue 16: without a terminal a sweep printed nothing until the end; now a line per trial
    assert re.search(r"^trial t00[01] finished \(2 epochs\)$", out, re.MULTILINE), out
    assert re.search(r"^trial t00[01] errored: .*NonFiniteLossError", out, re.MULTILINE), out
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name("fails")
    runs = client.search_runs([exp.experiment_id])
    by_status = {r.info.status: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(by_status) == {"FAILED", "FINISHED"}
    failed = by_status["FAILED"]
    assert failed.data.params["mmm.w_max"] == "1e+300"
    assert "NonFiniteLossError" in failed.data.tags["sweep.error"]
    local = client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))
    text = Path(local).read_text()  # Ray's error record: the worker's frames, then the error
    assert 'trainable.py", line' in text and "in run_trial" in text
    assert re.search(r"NonFiniteLossError: epoch 1: training loss is -?(nan|inf)", text)


@pytest.mark.slow
def test_a_trial_cut_short_with_no_stop_decision_is_failed_not_stopped_early(local_ray, tmp_path):
    """Issue 15: a trial that ended before its epochs with no scheduler decision was recorded
    as the scheduler's (KILLED, sweep.stopped_early). Here a trainable returns after 2 of 5
    epochs under FIFO: FAILED with the reason. (ASHA's stops keep the stopped-early tag:
    test_tpe_asha_sweep_tracks_one_parent_and_every_trial.)"""
    from ray import tune

    from sedsweep.journal import Journal
    from sedsweep.methods import get_method
    from sedsweep.sweep.tracking_callback import TrackingCallback

    def returns_after_two_epochs(config):
        for epoch in (1, 2):
            tune.report({"epoch": float(epoch), "val/score": 0.5})

    base = get_method("null").Config().model_dump(mode="json")
    callback = TrackingCallback(str(tmp_path / "journal"), method="null", base_config=base,
                                epochs=5, tags={})  # fmt: skip
    tuner = tune.Tuner(
        returns_after_two_epochs,
        param_space={"overrides": {}, "optuna_trial": 0},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray"), callbacks=[callback], verbose=0
        ),
    )
    (result,) = tuner.fit()
    state = Journal.at(tmp_path / "journal").state(result.metrics["trial_id"])
    assert state.status == "FAILED", state
    assert state.tags["sweep.error"] == "ended after epoch 2 of 5 with no stop decision"
    assert state.tags["sweep.ended_short"] == "true" and state.tags["sweep.epochs_run"] == "2"
    assert "sweep.stopped_early" not in state.tags


def test_a_trial_that_ended_short_runs_again_on_resume_and_loses_its_error(local_ray, tmp_path):
    """Issue 15 (F3): Tune keeps a trial that ended short with no stop decision as TERMINATED,
    so resume never ran it again. The runner reopens it (`reopen_ended_short`) and the
    resumed trial finishes: FINISHED, its error and ended-short tags gone."""
    from ray import tune

    from sedsweep.journal import Journal
    from sedsweep.methods import get_method
    from sedsweep.sweep.snapshot import ended_short, reopen_ended_short
    from sedsweep.sweep.tracking_callback import TrackingCallback

    marker = tmp_path / "ended-once"

    def ends_short_the_first_time(config):
        last = 2 if not marker.exists() else 5
        marker.touch()
        for epoch in range(1, last + 1):
            tune.report({"epoch": float(epoch), "val/score": 0.5})

    base = get_method("null").Config().model_dump(mode="json")
    callback = TrackingCallback(str(tmp_path / "journal"), method="null", base_config=base,
                                epochs=5, tags={})  # fmt: skip
    run_config = tune.RunConfig(
        name="short", storage_path=str(tmp_path / "ray"), callbacks=[callback], verbose=0
    )
    tuner = tune.Tuner(
        ends_short_the_first_time,
        param_space={"overrides": {}, "optuna_trial": 0},
        run_config=run_config,
    )
    (result,) = tuner.fit()
    trial_id = result.metrics["trial_id"]
    assert ended_short(Journal.at(tmp_path / "journal")) == [trial_id]
    experiment = tmp_path / "ray" / "short"
    assert reopen_ended_short(experiment, ["someone-else"]) == []
    assert reopen_ended_short(experiment, [trial_id]) == [trial_id]
    restored = tune.Tuner.restore(
        str(experiment), trainable=ends_short_the_first_time, resume_errored=True
    )
    (again,) = restored.fit()
    assert again.metrics["epoch"] == 5 and again.error is None
    state = Journal.at(tmp_path / "journal").state(trial_id)
    assert state.status == "FINISHED", state
    assert "sweep.error" not in state.tags and "sweep.ended_short" not in state.tags
    assert state.tags["sweep.recovered_error"].startswith("ended after epoch 2 of 5")
    assert ended_short(Journal.at(tmp_path / "journal")) == []  # finished: nothing to reopen


@pytest.mark.slow
def test_data_axis_builds_each_corpus_once(local_ray, tmp_path):
    """Also the object-store transport of features (the other sweeps here map the cache)."""
    spec = yaml.safe_load(QUICK.read_text())
    spec.setdefault("resources", {})["features"] = "object_store"
    spec.update(
        name="axis",
        search={"algorithm": "grid"},
        scheduler={"type": "none"},
        space={"data.options.seed": {"type": "grid", "values": [3, 4]}},
        budget={"max_epochs": 1},
    )
    path = tmp_path / "axis.yaml"
    path.write_text(yaml.safe_dump(spec))
    outcome = run_sweep(load_sweep(path), workdir=tmp_path / "w")
    assert outcome.complete
    assert len(list((tmp_path / "w" / "feature-cache").iterdir())) == 2
    client = MlflowClient(tracking_uri_for(tmp_path / "w"))
    runs = children_of(client, "axis", outcome.parent_run_id)
    assert sorted(r.data.params["data.options.seed"] for r in runs) == ["3", "4"]
    parent = client.get_run(outcome.parent_run_id)
    assert len(set(parent.data.tags["sedsweep.corpus_fingerprint"].split(","))) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("resources.gpu=0.5", "resources.gpu: asks for 0.5 GPU per trial but the Ray cluster "
                              "has none"),
        ("resources.cpu=64", "resources.cpu: asks for 64 CPU per trial but the Ray cluster "
                             "has at most 2 per node"),
    ],
)  # fmt: skip
def test_resources_the_cluster_lacks_are_exit_2_before_any_run(
    local_ray, tmp_path, capsys, setting, message
):
    """Issue 15 F4/F13: refused before the parent run exists: no empty RUNNING parent."""
    args = ["sweep", str(QUICK), "--workdir", str(tmp_path), "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(message), err
    client = MlflowClient(tracking_uri_for(tmp_path))
    experiment = client.get_experiment_by_name("quickstart")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_a_corpus_the_method_cannot_split_is_exit_2_before_ray(tmp_path, make_corpus, capsys):
    """Issue 15 F15: a single-fold corpus failed inside every trial ("the training split is
    empty") and the CLI then suggested resume. Now one line before Ray or a run exists."""
    corpus = make_corpus("onefold")
    clips = corpus / "clips.csv"
    rows = clips.read_text().splitlines()
    clips.write_text("\n".join([rows[0]] + [r.replace(",2,", ",1,") for r in rows[1:]]) + "\n")
    spec = yaml.safe_load((ROOT / "search_spaces" / "null_load.yaml").read_text())
    spec["data"] = {"path": str(corpus)}
    path = tmp_path / "onefold.yaml"
    path.write_text(yaml.safe_dump(spec))
    workdir = tmp_path / "w"
    assert main(["sweep", str(path), "--scale", "tiny", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()  # after MLflow's own INFO lines creating the store
    assert err.count("sedsweep: error") == 1 and "Traceback" not in err, err
    assert err.endswith(
        f"{path}: split: the training split is empty (the corpus has 6 clips in folds [1])"
    ), err
    assert not (workdir / "ray").exists()  # no sweep directory, no Ray experiment, no run


@pytest.fixture(scope="module")
def shared_workdir(tmp_path_factory):
    """One work directory for the smoke runs: corpus, features and MLflow store made once."""
    return tmp_path_factory.mktemp("shipped")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_file_plans_and_trains_its_first_trial_for_an_epoch(shared_workdir, path, capsys):
    """Every shipped file, without Ray: its dry run, its corpus and features, the method
    built on them (`check_method`), the searcher's first trial trained for one epoch through
    the generic loop with every objective reported, and that trial's figures drawn. The real
    Tune runs of a representative few are `test_representative_shipped_files_run_under_tune`."""
    import torch

    from sedsweep.loop import run_epochs
    from sedsweep.methods import get_method
    from sedsweep.methods.base import render_artifacts
    from sedsweep.metrics import selected_key
    from sedsweep.sweep.runner import _features, check_method
    from sedsweep.sweep.spec import data_key, trial_method_config

    assert main(["sweep", str(path), "--scale", "tiny", "--dry-run"]) == 0
    assert f"sweep {yaml.safe_load(path.read_text())['name']} (" in capsys.readouterr().out
    plan = load_sweep(path, {"budget.max_trials": 1, "budget.max_epochs": 1}, scale="tiny")
    features = _features(plan, shared_workdir)
    check_method(plan, features)
    overrides = OptunaPruningSearch(plan).suggest("t0")["overrides"]
    method_cls = get_method(plan.spec.method)
    base = plan.base.config.model_dump(mode="json")
    cfg = trial_method_config(method_cls, base, overrides, plan.epochs)
    trainer = method_cls(cfg, features[data_key(overrides)], torch.device("cpu"))
    metrics = run_epochs(trainer, plan.epochs)
    assert metrics["epoch"] == 1 and math.isfinite(metrics["train/loss"])
    for objective in plan.spec.objectives:
        assert selected_key(objective.metric) in metrics, objective.metric
    drawn = render_artifacts(trainer, shared_workdir / "figures" / path.stem)
    assert drawn and all(p.suffix == ".png" and p.stat().st_size for p in drawn)


# one per method, searcher kind and corpus kind not run under Tune elsewhere in this module
# (quickstart: tpe_sweep; null_load: the offline sweep)
UNDER_TUNE = ["staged_table1", "mtl_alpha_search", "whenwho_joint_pareto",
              "deshmukh2020_realaudio"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem in UNDER_TUNE],
                         ids=lambda p: p.stem)  # fmt: skip
def test_representative_shipped_files_run_under_tune(local_ray, shared_workdir, path):
    plan = load_sweep(path, {"budget.max_trials": 1, "budget.max_epochs": 1}, scale="tiny")
    outcome = run_sweep(plan, workdir=shared_workdir)
    assert outcome.complete and outcome.expected == 1, outcome.summary()
    # issue 17: the driver drew the completed trial's figures from its final checkpoint
    drawn = list(Path(outcome.path).glob("run_trial_*/figures/*.png"))
    assert drawn, list(Path(outcome.path).glob("run_trial_*/*"))


def test_dry_run_prints_the_plan_without_ray(tmp_path, capsys):
    ray.shutdown()
    assert main(["sweep", str(ROOT / "search_spaces" / "whenwho_table3.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trials 18 = 6 grid cells × 3 replicate cells" in out
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no sweep found"),
        ("{not json", "unreadable sweep state"),
        ('{"experiment": "x", "path": "/nowhere"}', "sweep state lacks workdir, tracking_uri"),
        ("[1, 2]", "sweep state lacks experiment"),
        (
            json.dumps(
                {
                    "experiment": "x",
                    "path": 3,
                    "workdir": "w",
                    "tracking_uri": "u",
                    "experiment_id": "",
                    "parent_run_id": "",
                    "source": "s",
                    "spec": [],
                    "execution": "e",
                    "offline": "no",
                }
            ),
            "sweep state has fields of the wrong type: path, spec, offline",
        ),
    ],
    ids=["missing", "corrupt", "incomplete", "not-a-mapping", "wrong-types"],
)
def test_resume_of_a_bad_state_file_is_one_line_exit_2(tmp_path, capsys, content, message):
    sweep_dir = tmp_path / "ray" / "quickstart-1"
    sweep_dir.mkdir(parents=True)
    if content is not None:
        (sweep_dir / "sedsweep.json").write_text(content)
    target = tmp_path if content is None else sweep_dir
    assert main(["resume", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert str(target if content is None else sweep_dir / "sedsweep.json") in err


# -- offline sweeps and `sedsweep sync` ----------------------------------------------------------
NULL = ROOT / "search_spaces" / "null_load.yaml"


@pytest.mark.slow
def test_offline_sweep_journals_only_and_sync_publishes_it(local_ray, tmp_path, capsys):
    workdir = tmp_path / "w"
    args = ["sweep", str(NULL), "--scale", "tiny", "--workdir", str(workdir), "--offline",
            "--set", "budget.trials=3", "--set", "budget.max_epochs=2",
            "--set", "fixed.sleep_s=0"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    hint = re.search(r"tracking: (\d+) events journaled \(offline\); send them with: "
                     r"sedsweep sync (\S+)", captured.err)  # fmt: skip
    assert hint, captured.err
    assert not (workdir / "mlflow.db").exists()  # no store was contacted
    assert main(["sync", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert f"sent {hint.group(1)} journaled events to sqlite:///{workdir / 'mlflow.db'}" in out
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name("null_load")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = children_of(client, "null_load", parents[0].info.run_id)
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert re.fullmatch(r"t00\d optim\.lr=\S+ quality=\S+ choice=[abc]", child.info.run_name)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/score")]
        assert sorted(steps) == [1, 2]
    listed = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"sweep.yaml", "tables"} <= listed  # the replay logged the tables too
    state = yaml.safe_load(Path(hint.group(2), "sedsweep.json").read_text())
    assert state["parent_run_id"] == parents[0].info.run_id and state["offline"] is True
    assert main(["sync", hint.group(2)]) == 0
    assert "sent 0 journaled events" in capsys.readouterr().out


@pytest.mark.slow
def test_two_sweeps_of_one_file_in_one_workdir_both_finish_apart(tmp_path):
    """Issue 15 F5: started together, one crashed ('table experiments already exists') or
    both wrote into one Ray experiment directory and only one could be resumed."""
    from tests.servers import CliProcess

    args = ["sweep", str(ROOT / "search_spaces" / "null_load.yaml"), "--scale", "tiny",
            "--set", "budget.trials=2", "--set", "fixed.sleep_s=0.1",
            "--workdir", str(tmp_path)]  # fmt: skip
    procs = [CliProcess(args, tmp_path.parent / f"{tmp_path.name}-{n}.log") for n in (1, 2)]
    codes = [p.finish(300) for p in procs]
    assert codes == [0, 0], [p.output[-2000:] for p in procs]
    states = sorted(tmp_path.glob("ray/*/sedsweep.json"))
    assert len(states) == 2, states
    client = MlflowClient(tracking_uri_for(tmp_path))
    parents = client.search_runs(
        [client.get_experiment_by_name("null_load").experiment_id],
        filter_string="tags.`sweep.trials_planned` = '2'",
    )
    assert len(parents) == 2 and {r.info.status for r in parents} == {"FINISHED"}


def test_a_failed_trial_that_finishes_after_resume_reaches_optuna(tmp_path):
    """Issue 15 F3: an errored trial that finished after resume stayed FAIL in the study
    (it was the sweep's best)."""
    plan = load_sweep(QUICK, {"budget.max_epochs": 4})
    metric = "best_val/when_frame_auc"
    search = OptunaPruningSearch(plan)
    params = search.suggest("flaky")["overrides"]
    search.on_trial_complete("flaky", None, error=True)
    path = tmp_path / "state.json"
    search.save(str(path))
    again = OptunaPruningSearch(plan)
    again.restore(str(path))  # the sweep resumes; Tune runs the errored trial again
    again.on_trial_complete("flaky", {metric: 0.95, "training_iteration": 4})
    failed, done = again.study.trials
    assert failed.state == TrialState.FAIL and done.state == TrialState.COMPLETE
    assert done.params == failed.params == params and done.value == pytest.approx(0.95)
    assert again.study.best_trial.number == done.number


@pytest.mark.parametrize("algorithm", ["tpe", "random", "cmaes", "gp", "nsga2"])
def test_a_restored_searcher_suggests_what_the_uninterrupted_one_does(tmp_path, algorithm):
    """The JSON searcher state keeps the samplers' random states: without them a resumed
    sampler started its sequence again and suggested the first trials' configurations once
    more (seen in the chaos kill tests: two trials with one configuration)."""
    plan = load_sweep(QUICK, {"search.algorithm": algorithm, "budget.max_concurrent": 8})
    metric = "best_val/when_frame_auc"
    search = OptunaPruningSearch(plan)
    for n in range(3):
        search.suggest(f"t{n}")
        search.on_trial_complete(f"t{n}", {metric: 0.5 + n / 10, "training_iteration": 6})
    search.save(str(tmp_path / "state.json"))
    again = OptunaPruningSearch(plan)
    again.restore(str(tmp_path / "state.json"))
    for n in range(3, 6):
        assert again.suggest(f"t{n}") == search.suggest(f"t{n}"), n


def test_the_searcher_keeps_at_most_max_concurrent_trials_in_flight():
    """Concurrency is the searcher's (Tune's ConcurrencyLimiter drops the completion of a
    trial it does not count as live: a failed trial run again after a resume)."""
    search = OptunaPruningSearch(load_sweep(QUICK))  # max_concurrent: 2
    assert search.suggest("a") and search.suggest("b")
    assert search.suggest("c") is None
    search.on_trial_complete("a", None, error=True)
    assert search.suggest("c")["optuna_trial"] == 2


def test_tune_starts_the_actors_of_the_trials_in_flight_together(monkeypatch):
    """Issue 34: Tune assumes 1 pending trial for a searcher without its ConcurrencyLimiter, so
    short trials started one actor at a time and `fit()` waited 5 s at its end for the actors
    of trials that had taken a freed one; the sweep sets Tune's limit to its own."""
    from ray.tune.execution.tune_controller import _get_max_pending_trials
    from ray.tune.search import SearchGenerator

    from sedsweep.sweep.cluster import PENDING_VAR, pending_trials

    monkeypatch.delenv(PENDING_VAR, raising=False)
    plan = load_sweep(QUICK)  # max_concurrent: 2
    tune_sees = SearchGenerator(OptunaPruningSearch(plan))
    assert _get_max_pending_trials(tune_sees) == 1
    with pending_trials(plan) as limit:
        assert limit == 2 == _get_max_pending_trials(tune_sees)
    assert PENDING_VAR not in os.environ
    # no max_concurrent: as many as the cluster holds (2 CPUs, 0.1 each), at most the trials
    _ensure_local_ray()  # an earlier test of the module may have shut it down
    unlimited = load_sweep(NULL, {"budget.max_concurrent": None, "budget.trials": 50})
    with pending_trials(unlimited) as limit:
        assert limit == 20
    few = load_sweep(NULL, {"budget.max_concurrent": None, "budget.trials": 5})
    with pending_trials(few) as limit:
        assert limit == 5
    monkeypatch.setenv(PENDING_VAR, "3")  # the user's own choice stands
    with pending_trials(plan) as limit:
        assert limit == 3 and os.environ[PENDING_VAR] == "3"


def test_figures_go_to_the_best_trial_of_each_grid_cell_or_of_a_search(tmp_path):
    """Issue 17: figures are drawn at the end for one trial per design cell of a grid (its
    replicates collapsed) and for the single best trial of a search; not for unfinished,
    errored or checkpoint-less trials. Real Tune Result objects, chosen by hand."""
    from ray import tune
    from ray.tune import Result

    from sedsweep.metrics import selected_key
    from sedsweep.sweep.figures import figure_trials

    plan = load_sweep(ROOT / "search_spaces" / "whenwho_table3.yaml", scale="tiny")
    key = selected_key(plan.spec.primary.metric)
    search = OptunaPruningSearch(plan)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    results, best_of = [], {}
    for n in range(plan.n_trials):
        config = search.suggest(str(n))
        value = (n * 7919 % 13) / 13  # distinct scores in a scrambled order
        epochs = plan.epochs - 1 if n == 0 else plan.epochs  # trial 0 did not finish
        metrics = {key: value, "epoch": epochs, "config": config, "trial_id": str(n)}
        results.append(Result(metrics, tune.Checkpoint(str(folder)), None, str(tmp_path)))
        cell = tuple(sorted((k, str(v)) for k, v in config["overrides"].items() if k != "seed"))
        if n and (cell not in best_of or value > best_of[cell][0]):
            best_of[cell] = (value, n)
    chosen = sorted(int(r.metrics["trial_id"]) for r in figure_trials(plan, results))
    assert chosen == sorted(n for _, n in best_of.values())
    assert len(chosen) == len(plan.grid_cells)  # one per cell
    tpe = load_sweep(QUICK, {"budget.trials": 4})
    runs = [
        Result({selected_key(tpe.spec.primary.metric): v, "epoch": tpe.epochs, "trial_id": str(i),
                "config": {"overrides": {}, "optuna_trial": i}},
               tune.Checkpoint(str(folder)) if i != 2 else None, None, str(tmp_path))
        for i, v in enumerate([0.5, 0.7, 0.9, 0.6])
    ]  # fmt: skip
    assert [r.metrics["trial_id"] for r in figure_trials(tpe, runs)] == ["1"]  # 2: no checkpoint


def test_an_address_where_another_service_or_nothing_answers_is_refused_quickly(
    tmp_path, capsys, monkeypatch
):
    """Issue 32: `--address` only checked that TCP connects: an MLflow server's port hung 157 s
    in ray.init's retries, a proxy that accepts anything ended in a traceback after 41 s. Now
    the address must answer Ray's GCS handshake (gRPC over HTTP/2) before anything starts."""
    import http.server
    import socket
    import threading
    import time

    from sedsweep.sweep import cluster

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setattr(cluster, "ADDRESS_TIMEOUT_S", 2)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        for port, message in ((web.server_address[1], "another service answers there, not a "
                                                      "Ray head (it does not speak gRPC)"),
                              (silent.getsockname()[1], "something accepts connections there "
                                                        "but says nothing in 2 s")):  # fmt: skip
            started = time.monotonic()
            args = ["sweep", str(NULL), "--scale", "tiny", "--workdir", str(tmp_path),
                    "--address", f"127.0.0.1:{port}"]  # fmt: skip
            assert main(args) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"sedsweep: error: --address 127.0.0.1:{port}: {message}"), err
            assert time.monotonic() - started < 10 and not (tmp_path / "ray").exists()
    finally:
        web.shutdown()
        silent.close()
