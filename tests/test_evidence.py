"""Evidence (issue 18): the shipped evidence files, their MLflow-independent results CSVs, and the
page `sedsweep evidence` writes from them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from sedsweep.cli import main
from sedsweep.report import evidence
from sedsweep.report.claims import check_claims
from sedsweep.report.runs import load_sweep_runs
from sedsweep.report.tables import build_table
from sedsweep.sweep.outcome import SweepOutcome
from sedsweep.sweep.spec import load_sweep
from sedsweep.tracking import STOPPED_EARLY_TAG, tracking_uri_for

from .sweeps import grid_spec, grid_trials, log_sweep

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "search_spaces" / "evidence").glob("*.yaml"))

CLAIMS = [
    {"name": "mmm beats max", "metric": "val/when_frame_auc", "direction": "higher",
     "a": {"when_loss": "mmm"}, "b": {"when_loss": "max"}, "min_effect": 0.05},
    {"name": "noisy_or beats the others", "metric": "test/when_segment_er",
     "direction": "lower", "a": {"when_loss": "noisy_or"}, "b": "each"},
]  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_evidence_file_is_a_reproducible_grid_with_seeds_claims_and_a_sized_budget(path):
    """Issue 31: 3–5 seeds, and a budget sized (in its description) to ≤ 75 min a file."""
    plan = load_sweep(path)  # validated against its method, claims' selectors included
    spec = plan.spec
    assert spec.search.algorithm == "grid" and spec.search.reproducible
    assert len(spec.replicates["seed"]) >= 3 and spec.claims
    sized = re.search(r"(\d+) min on 2 CPU cores", spec.description or "")
    assert sized and int(sized.group(1)) <= 75
    assert spec.budget.max_concurrent == 2 and spec.resources.cpu == 1
    assert f"sedsweep evidence search_spaces/evidence/{path.name} --run" in path.read_text()


def _evidence_file(folder: Path, name: str) -> Path:
    spec = {**grid_spec(name), "claims": CLAIMS, "description": "a constructed sweep"}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_results_csvs_give_the_stores_claims_and_table(tmp_path):
    folder = tmp_path / "evidence"
    folder.mkdir()
    path = _evidence_file(folder, "ev")
    spec = yaml.safe_load(path.read_text())
    trials = grid_trials()
    trials[4]["status"] = "KILLED"  # stopped by the scheduler: pruned, and travels as such
    trials[4]["tags"] = {"sweep.stopped_early": "true"}
    for trial in trials:  # reference levels, flat (converged) curves
        trial["flat"] = True
        trial["metrics"] |= {"chance/val/when_frame_auc": 0.5, "train/loss_when": 0.3,
                             "chance/train/loss_when": 0.69}  # fmt: skip
    trials[0]["metrics"]["train/loss_when"] = 0.69  # at the label prior: not trained
    parent = log_sweep(tmp_path, spec, trials)
    uri = tracking_uri_for(tmp_path)
    machine = {"cpus": 2, "platform": "test", "load_1_5_15": [0.5, 0.4, 0.3]}
    out = evidence.export_from_store(path, "ev", uri, machine)
    assert out == folder / "results" / "ev"
    lines = (out / "trials.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:7] == ["number", "status", "epochs_reached", "valid", "invalid_reason",
                          "when_loss", "seed"]  # fmt: skip
    assert lines[1].startswith("0,completed,2,false,train/loss_when 0.69 is not 5% below")
    assert lines[2].startswith("1,completed,2,true,,")
    stored = load_sweep_runs(parent, uri)
    read = evidence.read_spec(path)
    from_csv, info = evidence.load(path, read)
    # issue 31: each trial's validation curve travels too (curves.csv), as the store has it
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0] == f"number,epoch,{stored.objective}"
    for a, b in zip(stored.trials, from_csv.trials, strict=True):
        assert (
            from_csv.history(b.run_id, stored.objective)
            == sorted(stored.history(a.run_id, stored.objective))
            != []
        )
    assert info["parent_run_id"] == parent and info["spec_sha256"] == evidence.spec_sha256(read)
    assert [t.status for t in from_csv.trials] == [t.status for t in stored.trials]
    assert [from_csv.validity(t) for t in from_csv.trials] == [
        stored.validity(t) for t in stored.trials
    ]
    assert check_claims(from_csv).render("csv") == check_claims(stored).render("csv")
    assert check_claims(from_csv).checks[0].untrained_a[0].startswith("t000: train/loss_when")
    assert build_table([from_csv], with_paper=True).render("md") == build_table(
        [stored], with_paper=True
    ).render("md")
    page = tmp_path / "EVIDENCE.md"
    assert main(["evidence", str(folder), "--out", str(page)]) == 0
    text = page.read_text()
    assert "1 of 1 evidence files have run" in text
    assert "| TESTED (2 vs 2; 1 untrained left out) | **NOT DETECTED** (Holm p" in text
    assert f"`sedsweep evidence {path.as_posix()} --run`" in text
    assert "Stale" not in text
    assert "![validation curves of ev](" in text and "| arm | trials | valid |" in text
    arm_rows = [line for line in text.splitlines() if line.startswith("| when_loss=")]
    assert any("t000: train/loss_when 0.69 is not 5% below" in row for row in arm_rows)
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert main(["evidence", str(folder), "--out", str(page), "--check"]) == 0
    # the page follows its CSVs only: a changed value is a changed page, and --check says so
    csv_path = out / "trials.csv"
    rows = csv_path.read_text().splitlines()
    rows[2] = rows[2].rsplit(",", 1)[0] + ",0.71"  # trial 1 (trained): its val AUC, the last
    csv_path.write_text("\n".join(rows) + "\n")
    assert main(["evidence", str(folder), "--out", str(page), "--check"]) == 1
    # a comment or a reworded description leaves the results current; another spec does not
    spec["description"] = "reworded"
    path.write_text(yaml.safe_dump(spec, sort_keys=False) + "# a comment\n")
    assert main(["evidence", str(folder), "--out", str(page)]) == 0
    assert "Stale" not in page.read_text()
    spec["replicates"]["seed"] = [0, 1, 2, 3]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["evidence", str(folder), "--out", str(page)]) == 0
    stale = page.read_text()
    assert "**Stale**" in stale and "0 of 1 evidence files have run" in stale
    assert "stale: its results were made from an earlier spec; no verdict until" in stale
    assert "**NOT DETECTED**" not in stale and "| TESTED" not in stale  # no verdict anywhere


def test_an_incomplete_sweep_is_not_exported(tmp_path, capsys):
    folder = tmp_path / "evidence"
    folder.mkdir()
    path = _evidence_file(folder, "part")
    trials = grid_trials()
    trials[2]["status"] = "FAILED"  # an errored (or interrupted) trial: the sweep is unfinished
    log_sweep(tmp_path, yaml.safe_load(path.read_text()), trials)
    capsys.readouterr()
    code = main(["evidence", str(path), "--export", "--workdir", str(tmp_path),
                 "--out", str(tmp_path / "E.md")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is incomplete (8 completed, 1 failed of 9 planned)" in err, err
    assert str(path) in err and len(err.splitlines()) == 1
    assert not (folder / "results").exists() and not (tmp_path / "E.md").exists()


@pytest.mark.parametrize(
    ("ends", "complete"),
    [
        ({}, True),
        ({2: "pruned"}, True),  # stopped by the scheduler: finished at its fidelity
        ({2: "FAILED"}, False),
        ({2: "KILLED"}, False),  # interrupted: killed with no stop decision
        ({2: "FAILED", 3: "pruned"}, False),
    ],
)
def test_the_runner_and_the_store_judge_a_sweep_complete_alike(tmp_path, ends, complete):
    """One rule (tracking.all_finished) for Tune's counts in the runner's summary and for the
    store's runs that evidence export reads; a trial missing from the store is not finished."""
    spec, trials = grid_spec(), grid_trials()
    runner_counts = {"completed": 0, "stopped_early": 0, "errored": 0, "interrupted": 0}
    tune_name = {"FINISHED": "completed", "pruned": "stopped_early", "FAILED": "errored"}
    for n, trial in enumerate(trials):
        end = ends.get(n, "FINISHED")
        if end == "pruned":
            trial["status"], trial["tags"] = "KILLED", {STOPPED_EARLY_TAG: "true"}
        else:
            trial["status"] = end
        runner_counts[tune_name.get(end, "interrupted")] += 1
    log_sweep(tmp_path, spec, trials)
    sweep = load_sweep_runs(spec["name"], tracking_uri_for(tmp_path))
    outcome = SweepOutcome(spec["name"], tmp_path, sweep.parent_run_id, "", len(trials),
                           runner_counts)  # fmt: skip
    assert sweep.planned == len(trials)
    assert sweep.complete is outcome.complete is complete, (sweep.counts, runner_counts)
    # a run the store never received leaves the store's record short of its plan
    if complete:
        sweep.trials.pop()
        assert not sweep.complete


def test_a_file_that_has_not_run_gets_a_section_that_says_so(tmp_path):
    path = _evidence_file(tmp_path, "pending")
    page = tmp_path / "E.md"
    assert main(["evidence", str(path), "--out", str(page)]) == 0
    text = page.read_text()
    assert "0 of 1 evidence files have run" in text
    assert "Not run yet" in text and "SUPPORTED" not in text.split("## pending")[1]


@pytest.mark.parametrize(
    ("damage", "where", "message"),
    [
        ("csv-value", "trials.csv", "line 2: not a number"),
        ("csv-column", "trials.csv", "lacks the column 'status'"),
        ("json", "ev", "cannot be read"),
        ("no-claims", "claims", "states no claims"),
        ("missing", "nowhere.yaml", "no such evidence file or folder"),
    ],
)
def test_bad_evidence_input_is_one_line_exit_2_and_writes_no_page(
    tmp_path, capsys, damage, where, message
):
    path = _evidence_file(tmp_path, "ev")
    results = tmp_path / "results" / "ev"
    results.mkdir(parents=True)
    (results / "run.json").write_text('{"parent_run_id": "x", "spec_sha256": ""}')
    (results / "trials.csv").write_text(
        "number,status,epochs_reached,when_loss,seed,v\n0,completed,2,mmm,0,0.5\n"
    )
    target = path
    if damage == "csv-value":
        (results / "trials.csv").write_text(
            "number,status,epochs_reached,when_loss,seed,v\n0,completed,2,mmm,0,high\n"
        )
    elif damage == "csv-column":
        (results / "trials.csv").write_text("number,epochs_reached\n0,2\n")
    elif damage == "json":
        (results / "run.json").write_text("{not json")
    elif damage == "no-claims":
        spec = yaml.safe_load(path.read_text())
        spec["claims"] = []
        path.write_text(yaml.safe_dump(spec))
    else:
        target = tmp_path / "nowhere.yaml"
    page = tmp_path / "E.md"
    capsys.readouterr()
    assert main(["evidence", str(target), "--out", str(page)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and where in err, err
    assert not page.exists()


def test_check_cannot_be_combined_with_run(tmp_path, capsys):
    path = _evidence_file(tmp_path, "ev")
    assert main(["evidence", str(path), "--run", "--check"]) == 2
    assert "--check" in capsys.readouterr().err


def test_the_committed_page_is_what_the_committed_csvs_give(monkeypatch):
    """EVIDENCE.md is generated: regenerating it from the committed results changes nothing."""
    monkeypatch.chdir(ROOT)
    assert main(["evidence", "--check"]) == 0


@pytest.mark.slow
def test_evidence_run_runs_the_sweep_and_writes_its_section(local_ray, tmp_path, capsys):
    """`sedsweep evidence FILE --run` on the real engines: Ray, Optuna, MLflow on SQLite; the
    `max` arm has its own budget (3 epochs; the tiny scale's is 2), which its trials run,
    checkpoint and are counted complete for."""
    spec = {
        **grid_spec("evrun"),
        "description": "a tiny real run",
        "space": {},
        "cells": [{"when_loss": "mmm"}, {"when_loss": "max", "epochs": 3}],
        "replicates": {"seed": [0, 1]},
        "search": {"algorithm": "grid", "reproducible": True},
        "budget": {"max_concurrent": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "claims": CLAIMS[:1],
    }
    folder = tmp_path / "evidence"
    folder.mkdir()
    path = folder / "evrun.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    page = tmp_path / "EVIDENCE.md"
    work = tmp_path / "work"
    code = main(["evidence", str(path), "--run", "--out", str(page), "--workdir", str(work)])
    assert code == 0, capsys.readouterr().err
    sweep, info = evidence.load(path, evidence.read_spec(path))
    assert sweep.counts["completed"] == 4 and info["trials"]["completed"] == 4
    reached = {(t.params["when_loss"], t.epochs) for t in sweep.trials}
    assert reached == {("mmm", 2), ("max", 3)}
    results = list((work / "ray").glob("*/run_trial_*/result.json"))
    rows = [[json.loads(line) for line in r.read_text().splitlines()] for r in results]
    assert len(rows) == 4 and all(r[-1].get("checkpoint_dir_name") for r in rows)  # last epoch
    assert info["trace_sha256"] and info["wall_s"] > 0
    assert {"load_before", "driver_wall_s", "cpus"} <= set(info["machine"])
    text = page.read_text()
    assert "## evrun" in text and "mmm beats max" in text
    shutil.rmtree(work / "ray", ignore_errors=True)
