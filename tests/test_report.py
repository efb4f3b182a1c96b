"""Results of sweeps: tables, best-config selection, registry, importance, dashboard.

Constructed sweeps are logged directly to a real SQLite MLflow store (parent + child runs as
the engine writes them) so that values, marks and rankings are known exactly; a real tiny
Ray Tune sweep checks the end-to-end path (table logged at the end, confirmation sweep,
dashboard in headless Chromium).
"""

from __future__ import annotations

import csv
import io
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats

from sedsweep.cli import main
from sedsweep.journal import Journal
from sedsweep.report.best import fresh_seeds, rank_by_validation
from sedsweep.report.claims import check_claims
from sedsweep.report.importance import param_importance
from sedsweep.report.runs import load_sweep_runs, parse_param
from sedsweep.report.tables import build_table, log_sweep_tables, paper_tables, welch_p
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.tracking import PARENT_TAG, TRIAL_TAG, UI_VIEW, run_url, tracking_uri_for

from .chromium import browser_or_skip, parse_dom, render
from .sweeps import AUC, ER, grid_spec, grid_trials, log_sweep

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grid")
    trials = grid_trials()
    trials.append(  # a pruned trial never enters a table
        {"overrides": {"when_loss": "mmm", "seed": 3}, "metrics": {"val/when_frame_auc": 0.1},
         "status": "KILLED", "tags": {"sweep.stopped_early": "true"}}
    )  # fmt: skip
    parent = log_sweep(workdir, grid_spec(), trials)
    return workdir, parent


def hand_welch_p(a: list[float], b: list[float]) -> float:
    """Welch's t-test written out: t, Welch–Satterthwaite df, two-sided p from the t CDF."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


def test_welch_p_matches_the_formula_and_needs_two_replicates():
    for a, b in [(AUC["mmm"], AUC["noisy_or"]), (AUC["mmm"], AUC["max"]), (ER["max"], ER["mmm"])]:
        assert welch_p(a, b) == pytest.approx(hand_welch_p(a, b), rel=1e-9)
    assert welch_p([0.5], [0.4, 0.6]) is None
    assert welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0


def test_table_shape_means_stds_and_marks(grid_store):
    workdir, parent = grid_store
    sweep = load_sweep_runs(parent, tracking_uri_for(workdir))
    assert sweep.counts == {"completed": 9, "pruned": 1, "failed": 0, "running": 0}
    table = build_table([sweep])
    assert table.rows == [("mmm",), ("max",), ("noisy_or",)] and table.columns == [()]
    for loss in AUC:
        auc = table.cell((loss,), (), "val/when_frame_auc")
        er = table.cell((loss,), (), "test/when_segment_er")
        assert auc.n == 3 and auc.mean == pytest.approx(sum(AUC[loss]) / 3)
        assert auc.std == pytest.approx(np.std(AUC[loss], ddof=1))
        assert er.mean == pytest.approx(sum(ER[loss]) / 3)
    marks = {r[0]: table.cell(r, (), "val/when_frame_auc").mark for r in table.rows}
    assert marks == {"mmm": "best", "noisy_or": "tie", "max": None}
    assert hand_welch_p(AUC["noisy_or"], AUC["mmm"]) >= 0.05 > hand_welch_p(AUC["max"], AUC["mmm"])
    er_marks = {r[0]: table.cell(r, (), "test/when_segment_er").mark for r in table.rows}
    assert er_marks == {"max": "best", "mmm": None, "noisy_or": None}  # lower is better
    assert any("1 of 10 trials left out" in n for n in table.notes)


def test_table_formats_carry_the_same_numbers(grid_store):
    workdir, parent = grid_store
    table = build_table([load_sweep_runs(parent, tracking_uri_for(workdir))])
    md = table.render("md")
    assert "| when_loss | val/when_frame_auc | test/when_segment_er |" in md
    assert "| mmm | **0.910 ± 0.010 (n=3)** |" in md and "*0.893 ± 0.035 (n=3)*" in md
    rows = list(csv.DictReader(io.StringIO(table.render("csv"))))
    assert len(rows) == 6
    mmm = next(r for r in rows if r["when_loss"] == "mmm" and r["metric"] == "val/when_frame_auc")
    assert float(mmm["mean"]) == pytest.approx(0.91) and mmm["mark"] == "best"
    assert [float(v) for v in mmm["values"].split(";")] == pytest.approx(AUC["mmm"])

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.classes, self.current = [], [], None

        def handle_starttag(self, tag, attrs):
            if tag == "td":
                self.current = ""
                self.classes.append(dict(attrs).get("class"))

        def handle_data(self, data):
            if self.current is not None:
                self.current += data

        def handle_endtag(self, tag):
            if tag == "td":
                self.cells.append(self.current)
                self.current = None

    parser = Cells()
    parser.feed(table.render("html"))
    assert len(parser.cells) == 6 and parser.classes.count("best") == 2
    assert parser.classes.count("tie") == 1
    tex = table.render("tex")
    assert r"\textbf{0.910 $\pm$ 0.010 (n=3)}" in tex and r"\underline{0.893" in tex
    assert r"when\_loss" in tex and tex.count(r"\\") == 4  # header + 3 rows


def test_columns_from_a_data_axis_and_n1_cells(tmp_path):
    trials = [
        {"overrides": {"when_loss": loss, "seed": 0, "data.options.seed": ds},
         "metrics": {"val/when_frame_auc": AUC[loss][0] + ds / 100, "test/when_segment_er": 0.3}}
        for loss in AUC for ds in (3, 4)
    ]  # fmt: skip
    parent = log_sweep(tmp_path, grid_spec("cols", ["data.options.seed"]), trials)
    table = build_table([load_sweep_runs(parent, tracking_uri_for(tmp_path))])
    assert table.columns == [(3,), (4,)] and len(table.rows) == 3
    cell = table.cell(("max",), (4,), "val/when_frame_auc")
    assert cell.n == 1 and cell.std is None and cell.mean == pytest.approx(0.84)
    assert "n=1" in table.text(cell)
    assert any("no significance test is possible" in n for n in table.notes)
    md = table.render("md")
    assert "data.options.seed=3 · val/when_frame_auc" in md


def test_with_paper_matches_published_cells(tmp_path):
    spec = {
        "name": "t4", "method": "mtl_attention", "scale": "tiny",
        "objective": {"metric": "val/ap_micro"}, "search": {"algorithm": "grid"},
        "space": {"data.options.snr_db": {"type": "grid", "values": [0.0, 20.0]}},
        "cells": [{"pooling": "gap", "mtl.alpha": 0.0},
                  {"pooling": "two_step", "mtl.alpha": 0.001}],
        "table": {"rows": ["pooling"], "columns": ["data.options.snr_db"],
                  "metrics": ["test/ap_micro"]},
    }  # fmt: skip
    trials = [
        {"overrides": {"pooling": p, "mtl.alpha": a, "data.options.snr_db": snr},
         "metrics": {"val/ap_micro": 0.5, "test/ap_micro": 0.4}}
        for p, a in (("gap", 0.0), ("two_step", 0.001)) for snr in (0.0, 20.0)
    ]  # fmt: skip
    parent = log_sweep(tmp_path, spec, trials, epochs=1)
    table = build_table([load_sweep_runs(parent, tracking_uri_for(tmp_path))], with_paper=True)
    paper = {
        (r[0], c[0]): table.cell(r, c, "test/ap_micro").paper
        for r in table.rows
        for c in table.columns
    }
    assert paper == {("gap", 0.0): 0.3295, ("gap", 20.0): 0.5067,
                     ("two_step", 0.0): 0.6986, ("two_step", 20.0): 0.7829}  # fmt: skip
    assert "(paper)" in table.render("md") and "Table IV" in table.render("md")
    # a file that fixes the SNR and the pooling (Table V at 0 dB): read from the spec
    fixed = {**spec, "name": "t5", "space": {}, "data": {"options": {"snr_db": 0.0}},
             "fixed": {"pooling": "two_step"}, "cells": [{"mtl.alpha": 0.0}, {"mtl.alpha": 0.01}],
             "table": {"rows": ["mtl.alpha"], "metrics": ["test/ap_micro"]}}  # fmt: skip
    scores = {"val/ap_micro": 0.5, "test/ap_micro": 0.4}
    trials = [{"overrides": {"mtl.alpha": a}, "metrics": scores} for a in (0, 0.01)]
    parent = log_sweep(tmp_path, fixed, trials, epochs=1)
    table = build_table([load_sweep_runs(parent, tracking_uri_for(tmp_path))], with_paper=True)
    paper = [table.cell(r, (), "test/ap_micro").paper for r in table.rows]
    assert paper == [0.6937, 0.6792]
    # Table 3's separate row is MMM's: the quickstart's max-MIL row gets no number beside it
    # (issue 35: both rows showed 0.90); a file that names no loss is at MMM, the default
    quick = {"name": "q", "method": "whenwho", "scale": "tiny",
             "objective": {"metric": "val/when_frame_auc"}, "search": {"algorithm": "grid"},
             "space": {"when_loss": {"type": "grid", "values": ["mmm", "max"]}},
             "table": {"rows": ["when_loss"], "metrics": ["test/when_frame_auc"]}}  # fmt: skip
    scores = {"val/when_frame_auc": 0.5, "test/when_frame_auc": 0.4}
    trials = [{"overrides": {"when_loss": v}, "metrics": scores} for v in ("mmm", "max")]
    table = build_table([load_sweep_runs(log_sweep(tmp_path, quick, trials, epochs=1),
                                         tracking_uri_for(tmp_path))], with_paper=True)  # fmt: skip
    assert {r[0]: table.cell(r, (), "test/when_frame_auc").paper for r in table.rows} == {
        "mmm": 0.90,
        "max": None,
    }


def test_published_pooling_numbers_are_the_paper_texts():
    """Every Deshmukh et al. Table IV / V number in paper_results.yaml is the one printed in the
    paper text (parsed independently from ../shared/papers)."""
    source = ROOT.parent / "shared" / "papers" / "deshmukh-mtl-two-step-attention.txt"
    if not source.exists():
        pytest.skip("the paper text is not beside the repository")
    text = source.read_text()
    rows = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) == 10:
            try:
                rows[cells[0].strip()] = [float(c) for c in cells[1:]]
            except ValueError:
                continue
    names = {"gap": "GAP", "gmp": "GMP", "gwrp": "GWRP [13]", "atrous": "Atrous AP [14]"}
    alphas = {0.0: "$\\alpha = 0.0$", 0.001: "$\\alpha = 0.001$", 0.01: "$\\alpha = 0.01$"}
    columns = {20.0: 0, 10.0: 3, 0.0: 6}
    metrics = ["test/ap_micro", "test/ap_macro", "test/auc_macro"]
    checked = 0
    for table in paper_tables():
        if table["method"] != "mtl_attention":
            continue
        for entry in table["entries"]:
            m = entry["match"]
            label = names.get(m["pooling"]) or (
                "2APAE" if "Table IV" in table["table"] else alphas[m["mtl.alpha"]]
            )
            start = columns[m["data.options.snr_db"]]
            for metric, value in entry["values"].items():
                assert value == rows[label][start + metrics.index(metric)], (label, m, metric)
                checked += 1
    assert checked == 15 * 3 + 9 * 3  # Table IV: 15 cells, Table V: 9, three metrics each


def test_cross_sweep_merge_and_mismatch(tmp_path):
    first = log_sweep(tmp_path, grid_spec("a"), grid_trials())
    second = log_sweep(tmp_path, grid_spec("b"), grid_trials())
    uri = tracking_uri_for(tmp_path)
    merged = build_table([load_sweep_runs(first, uri), load_sweep_runs(second, uri)])
    assert merged.row_keys == ["sweep", "when_loss"] and len(merged.rows) == 6
    assert ("b", "max") in merged.rows
    spec = grid_spec("c")
    spec["table"]["metrics"] = ["val/when_frame_auc"]
    third = log_sweep(tmp_path, spec, grid_trials())
    out = tmp_path / "t.md"
    code = main(["table", "a", "c", "--workdir", str(tmp_path), "--out", str(out)])
    assert code == 2 and not out.exists()
    assert main(["table", "a", third, "--workdir", str(tmp_path), "--metrics",
                 "val/when_frame_auc", "--out", str(out)]) == 0  # fmt: skip
    assert out.read_text().count("| a | ") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["table", "nosuch"], "nosuch: no sweep (MLflow experiment or parent run id)"),
        (["table", "grid", "--rows", "nosuch.key"], "table key nosuch.key: no completed trial"),
        (["table", "grid", "--metrics", "val/nosuch"], "table metric val/nosuch: no completed"),
        (["best", "nosuch"], "nosuch: no sweep"),
        (
            ["best", "gird"],
            "gird: no sweep (MLflow experiment or parent run id) of this name "
            "(did you mean 'grid'?)",
        ),
    ],
)
def test_bad_table_input_is_one_line_exit_2(grid_store, capsys, args, message):
    workdir, _ = grid_store
    assert main([*args, "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_param_parsing_round_trips_config_values():
    for value in [0.001, 1e-300, 3, True, False, None, "two_step", [2, 3], [0.5, 1.0]]:
        assert parse_param(str(value)) == value


# -- best: selection on validation only, export, test once, registry ----------------------------
@pytest.fixture(scope="module")
def disagree_store(tmp_path_factory):
    """Three quickstart-like trials whose validation and test rankings disagree."""
    workdir = tmp_path_factory.mktemp("best")
    spec = yaml.safe_load(QUICK.read_text())
    spec["budget"]["max_epochs"] = 2
    trials = [
        {"overrides": {"when_loss": "max", "optim.lr": 0.003, "mmm.w_min": 0.5},
         "metrics": {"val/when_frame_auc": 0.95, "test/when_frame_auc": 0.60}},
        {"overrides": {"when_loss": "mmm", "optim.lr": 0.001, "mmm.w_min": 0.2},
         "metrics": {"val/when_frame_auc": 0.70, "test/when_frame_auc": 0.99}},
        {"overrides": {"when_loss": "mmm", "optim.lr": 0.005, "mmm.w_min": 0.9},
         "metrics": {"val/when_frame_auc": 0.80, "test/when_frame_auc": 0.90}},
    ]  # fmt: skip
    parent = log_sweep(workdir, spec, trials)
    return workdir, parent


def test_selection_follows_validation_not_test(disagree_store):
    workdir, parent = disagree_store
    sweep = load_sweep_runs(parent, tracking_uri_for(workdir))
    ranking = rank_by_validation(sweep)
    assert [r.trial.value("optim.lr") for r in ranking] == [0.003, 0.005, 0.001]
    by_test = max(sweep.trials, key=lambda t: t.metrics["test/when_frame_auc"])
    assert ranking[0].trial.run_id != by_test.run_id
    assert fresh_seeds(sweep, 3) == [1, 2, 3]  # seed 0 was used by every trial


@pytest.mark.slow
def test_best_exports_tests_once_and_moves_the_champion(disagree_store, tmp_path, capsys):
    workdir, parent = disagree_store
    uri = tracking_uri_for(workdir)
    out = tmp_path / "best.yaml"
    args = ["best", "quickstart", "--workdir", str(workdir), "--out", str(out),
            "--register", "whenwho-champ"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # issue 16: `best` said nothing for minutes while re-training; now each phase and epoch
    phases = [line for line in captured.err.splitlines() if not line.startswith("20")]
    assert phases[0].startswith("ranked ") and "of quickstart on val/" in phases[0], phases
    assert any(p.startswith("re-training t") and "for 2 epochs" in p for p in phases), phases
    assert sum(p.startswith("epoch ") for p in phases) == 2, phases
    spec = yaml.safe_load(out.read_text())
    assert spec["config"]["optim"]["lr"] == 0.003 and spec["config"]["when_loss"] == "max"
    assert spec["config"]["epochs"] == 2 and spec["method"] == "whenwho"
    assert "re-trained from best.yaml" in printed and "test/when_frame_auc = " in printed
    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias("whenwho-champ", "champion")
    assert str(champion.version) == "1"
    final = client.get_run(champion.run_id)
    assert final.data.tags["sweep.role"] == "best" and final.data.tags[PARENT_TAG] == parent
    chosen = next(line for line in phases if line.startswith("re-training t")).split()[1]
    assert final.info.run_name == f"best {chosen} mmm.w_min=0.5 optim.lr=0.003 when_loss=max"
    assert "test/when_frame_auc" in final.data.metrics
    arts = {a.path for a in client.list_artifacts(parent, "best")}
    assert arts == {"best/best.md", "best/best.yaml"}
    assert {a.path for a in client.list_artifacts(parent, "importance")} >= {
        "importance/importance.csv"
    }
    # the model loads back and is the WHEN/WHO pair
    import mlflow.pytorch

    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/whenwho-champ@champion")
    assert set(model.keys()) >= {"when", "who"}

    # best.yaml round-trips through `sedsweep train`: the same validation number
    train_dir = tmp_path / "train"
    assert main(["train", "--config", str(out), "--workdir", str(train_dir)]) == 0
    again = MlflowClient(tracking_uri_for(train_dir))
    runs = again.search_runs([again.get_experiment_by_name("train-whenwho").experiment_id])
    assert runs[0].data.metrics["val/when_frame_auc"] == pytest.approx(
        final.data.metrics["val/when_frame_auc"], abs=1e-6
    )

    # a second `best --register` moves the alias; the old champion keeps champion-v1
    assert (
        main([*args[:-2], "--register", "whenwho-champ", "--out", str(tmp_path / "b2.yaml")]) == 0
    )
    assert client.get_model_version_by_alias("whenwho-champ", "champion").version == 2
    assert client.get_model_version_by_alias("whenwho-champ", "champion-v1").version == 1


def test_importance_of_constructed_trials(tmp_path):
    spec = yaml.safe_load(QUICK.read_text())
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(24):  # the objective depends on optim.lr only
        lr = float(10 ** rng.uniform(np.log10(3e-4), -2))
        w = float(rng.uniform(0, 1))
        trials.append(
            {"overrides": {"when_loss": str(rng.choice(["mmm", "max"])), "optim.lr": lr,
                           "mmm.w_min": w},
             "metrics": {"val/when_frame_auc": 1.0 + math.log10(lr) / 10}}
        )  # fmt: skip
    parent = log_sweep(tmp_path, spec, trials, epochs=1)
    sweep = load_sweep_runs(parent, tracking_uri_for(tmp_path))
    for evaluator in ("ped-anova", "fanova"):
        importance = param_importance(sweep, evaluator)
        assert importance.values[0][0] == "optim.lr", (evaluator, importance.values)


# -- a real sweep end to end (the session's quickstart: conftest.quickstart_sweep) -------------
@pytest.fixture(scope="module")
def real_sweep(quickstart_sweep):
    workdir, _, outcome = quickstart_sweep
    return workdir, outcome


@pytest.mark.slow
def test_sweep_logs_its_table_at_the_end(real_sweep):
    workdir, outcome = real_sweep
    client = MlflowClient(tracking_uri_for(workdir))
    paths = {a.path for a in client.list_artifacts(outcome.parent_run_id, "tables")}
    assert paths == {f"tables/quickstart.{f}" for f in ("md", "csv", "html")}
    md = Path(client.download_artifacts(outcome.parent_run_id, "tables/quickstart.md")).read_text()
    # a search without replicates: every trial that trained, pruned ones included, counts at
    # a common rung; each child run is tagged with the gate's verdict
    sweep = load_sweep_runs("quickstart", tracking_uri_for(workdir))
    trained = sweep.valid("completed", "pruned")
    counts = [int(n) for n in re.findall(r"\(n=(\d+)\)[^|]* at ep", md)]
    assert sum(counts) == 3 * len(trained)  # three metrics per cell
    journal = Journal.at(outcome.journal)
    for trial in sweep.with_status("completed", "pruned"):
        assert trial.tags["sweep.valid"] == sweep.validity(trial).tag
        assert any(k.startswith("chance/val/") for k in trial.metrics)
        # the tags were journaled as the trial ended (the end-of-sweep tagging writes to the
        # store directly), with the verdict the end of the sweep reached on the record
        journaled = journal.state(trial.tags[TRIAL_TAG]).tags
        for tag in ("sweep.valid", "sweep.invalid_reason"):
            assert journaled.get(tag) == trial.tags.get(tag), (trial.name, tag)
    # the best line is the best trained trial's
    assert outcome.best["checked"]
    best = rank_by_validation(sweep)[0].trial
    assert outcome.best["trial"] == best.name.split(" ")[0]
    # mmm.w_min acts only where when_loss = mmm: never suggested nor logged elsewhere
    for trial in sweep.trials:
        assert ("mmm.w_min" in trial.params) == (trial.value("when_loss") == "mmm"), trial.name
    importance = param_importance(sweep)
    assert "mmm.w_min" not in dict(importance.values)
    assert all(part.subspace == "when_loss = mmm" for part in importance.subspaces)


FROZEN = {
    "name": "frozen", "method": "whenwho", "scale": "tiny",
    "objective": {"metric": "val/when_frame_auc"}, "search": {"algorithm": "grid"},
    "scheduler": {"type": "none"}, "budget": {"max_epochs": 6, "max_concurrent": 2},
    "fixed": {"when_loss": "max", "mode": "separate"},
    "space": {"optim.lr": {"type": "grid", "values": [1.0e-8, 3.0e-3]}},  # 1e-8: the floor
    "replicates": {"seed": [0, 1]},
    "table": {"rows": ["optim.lr"], "metrics": ["val/when_frame_auc", "test/when_frame_auc"],
              "replicates": ["seed"]},
    "claims": [{"name": "training beats not training", "metric": "test/when_frame_auc",
                "direction": "higher", "a": {"optim.lr": 3.0e-3}, "b": {"optim.lr": 1.0e-8}}],
}  # fmt: skip


@pytest.mark.slow
def test_an_arm_that_cannot_train_is_not_tested_marked_and_never_best(real_sweep, tmp_path,
                                                                     capsys):  # fmt: skip
    """A real grid: lr 1e-8 leaves the weights where they started (only BatchNorm's running
    statistics move, which can lift its frame AUC well above 0.5: the loss test catches it)."""
    workdir, _ = real_sweep
    path = tmp_path / "frozen.yaml"
    path.write_text(yaml.safe_dump(FROZEN))
    outcome = run_sweep(load_sweep(path), workdir=workdir, on_finish=log_sweep_tables)
    assert outcome.complete, outcome.counts
    assert "arm optim.lr=1e-08: no trained trial (2 not trained" in capsys.readouterr().out
    sweep = load_sweep_runs("frozen", tracking_uri_for(workdir))
    frozen = [t for t in sweep.trials if t.value("optim.lr") == 1e-8]
    assert all("train/loss_when" in sweep.validity(t).reason for t in frozen)
    (check,) = check_claims(sweep).checks
    assert check.validity == "NOT TESTED" and check.p_holm is None
    assert check.validity_reason.startswith("b: 0 of 2 trials trained")
    table = build_table([sweep])
    assert table.text(table.cell((1e-8,), (), "test/when_frame_auc")) == "NOT TRAINED (n=2)"
    ranked = rank_by_validation(sweep)  # raises when no trial trained
    assert {r.trial.value("optim.lr") for r in ranked} == {3e-3}
    assert outcome.best["config"]["optim.lr"] == 3e-3


@pytest.mark.slow
def test_confirmation_sweep_ranks_by_mean_over_fresh_seeds(real_sweep, tmp_path, capsys):
    """`--confirm-top 1` re-runs the best trained trial of each arm (when_loss = mmm, max),
    pruned ones counting at the rung they reached, on fresh seeds."""
    workdir, _ = real_sweep
    out = tmp_path / "best.yaml"
    code = main(["best", "quickstart", "--workdir", str(workdir), "--confirm-top", "1",
                 "--seeds", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Ranking by mean over 2 fresh seeds [1, 2]" in printed
    assert "Each arm's best confirmed configuration:" in printed
    sweep = load_sweep_runs("quickstart", tracking_uri_for(workdir))
    arms = {t.value("when_loss") for t in sweep.valid("completed", "pruned")}
    follow = load_sweep_runs("quickstart-confirm", tracking_uri_for(workdir))
    assert len(follow.trials) == 2 * len(arms)  # one configuration per arm × 2 seeds
    assert {t.value("when_loss") for t in follow.trials} == arms
    assert {t.value("seed") for t in follow.trials} == {1, 2}
    chosen = yaml.safe_load(out.read_text())["config"]
    means = {}
    for t in follow.with_status("completed"):
        key = (t.value("when_loss"), t.value("optim.lr"))
        means.setdefault(key, []).append(t.metric("val/when_frame_auc"))
    best_key = max(means, key=lambda k: np.mean(means[k]))
    assert (chosen["when_loss"], chosen["optim"]["lr"]) == pytest.approx(best_key)


@pytest.mark.slow
def test_dashboard_renders_offline_in_chromium(real_sweep, tmp_path):
    import os
    import shutil

    browser = browser_or_skip()
    workdir, outcome = real_sweep
    out = tmp_path / "dash"
    assert main(["dashboard", "quickstart", "--workdir", str(workdir), "--out", str(out)]) == 0
    assert main(["dashboard", "quickstart", "--workdir", str(workdir), "--out", str(out)]) == 2
    shot = tmp_path / "dashboard.png"
    dom, requests = render(out / "index.html", shot, chromium=browser)[:2]
    assert requests == []
    root = parse_dom(dom)
    assert root.find("body").attrs.get("data-rendered") == "true"
    rows = [r for r in root.by_id("leaderboard").find_all("tr") if "data-run-id" in r.attrs]
    assert len(rows) == sum(outcome.counts.values())
    heads = root.by_id("leaderboard").find_all("th")
    assert any(th.attrs.get("data-col") == "valid" for th in heads)  # the gate's column
    assert all(
        r.find("a").attrs["href"].startswith("http://127.0.0.1:5000/#/experiments/") for r in rows
    )
    assert root.by_id("tables").find("table") is not None
    for plot in ("parallel", "progress", "curves", "importance"):
        assert any(n.attrs.get("data-plot") == plot for n in root.find_all("svg")), plot
    # every trial that ran counts: a curve each, both when_loss rows, importance on a rung
    ran = outcome.counts["completed"] + outcome.counts["stopped_early"]
    curves = root.by_id("curves").find_all("path", class_="curve-line")
    assert len(curves) == ran == 8, outcome.counts
    row_heads = [th.text().strip() for th in root.by_id("tables").find_all("th")]
    assert "mmm" in row_heads and "max" in row_heads
    basis = [p for p in root.by_id("importance").find_all("p") if "computed on" in p.text()]
    assert basis and "val/when_frame_auc at epoch" in basis[0].text()
    images = root.by_id("figures").find_all("img")
    assert images and all((out / i.attrs["src"]).is_file() for i in images)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SEDSWEEP_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["SEDSWEEP_SCREENSHOT_DIR"]) / "sweep-dashboard.png")


@pytest.mark.slow
def test_ui_serves_the_workdir_store(grid_store, tmp_path, capsys):
    import json
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    import uuid

    assert main(["ui", "--workdir", str(tmp_path / "empty")]) == 2
    assert "mlflow.db: no MLflow store here" in capsys.readouterr().err
    workdir, _ = grid_store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from tests.servers import CliProcess, kill_marked, processes_with_env

    marker = uuid.uuid4().hex
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           CliProcess.MARKER_VAR: marker}  # fmt: skip
    cmd = [sys.executable, "-m", "sedsweep.cli", "ui", "--workdir", str(workdir)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        query = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=grid"
        with urllib.request.urlopen(query, timeout=10) as r:
            assert json.load(r)["experiment"]["name"] == "grid"
        # the UI this server sends reads the view from the query our run links carry
        # (issue 35: it opened sweeps in its GenAI view, whatever the experiment's kind tag)
        with urllib.request.urlopen(f"{url}/", timeout=10) as r:
            main_js = re.search(r'src="([^"]*static/js/main\.[0-9a-f]+\.js)"', r.read().decode())
        with urllib.request.urlopen(f"{url}/{main_js.group(1).lstrip('./')}", timeout=30) as r:
            code = r.read().decode()
        key, value = UI_VIEW.split("=")
        assert f'.get("{key}")' in code and f'="{value}"' in code
        # and as a user sees it: the run list, the parent run and a child run (issue 35)
        client = MlflowClient(tracking_uri_for(workdir))
        exp = client.get_experiment_by_name("grid").experiment_id
        parent = client.get_run(grid_store[1])
        child = next(r for r in client.search_runs([exp]) if r.info.run_name == "t001")
        pages = {
            "runs": f"{url}/#/experiments/{exp}?{UI_VIEW}",
            "parent": run_url(url, exp, parent.info.run_id),
            "child": run_url(url, exp, child.info.run_id),
        }
        browser = browser_or_skip()
        for name, page in pages.items():
            shot = tmp_path / f"mlflow-{name}.png"
            dom, requests = render(page, shot, chromium=browser, budget_ms=20000,
                                   allow=f"127.0.0.1:{port}")[:2]  # fmt: skip
            text = parse_dom(dom).text()
            assert parent.info.run_name in text and "Judges" not in text, (name, text[:2000])
            assert name == "runs" or "t001" in text, (name, text[:2000])
            assert requests == [] and shot.stat().st_size > 10_000
            if os.environ.get("SEDSWEEP_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["SEDSWEEP_SCREENSHOT_DIR"]) / shot.name)
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # `kill PID` of sedsweep ui alone
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # issue 15 F17: `mlflow ui` and its web workers end with `sedsweep ui`
        deadline = time.monotonic() + 15
        while (left := processes_with_env(marker)) and time.monotonic() < deadline:
            time.sleep(0.25)
        kill_marked(marker)
    assert not left, left


def test_readers_use_the_newest_execution_that_ran_trials(tmp_path, capsys):
    """Issue 15 F4: an execution that failed before any trial left an empty parent that
    `table NAME` then read (an empty table, exit 0)."""
    from sedsweep.tracking import PLANNED_TAG, RunWriter, ensure_experiment

    ran = log_sweep(tmp_path, grid_spec(), grid_trials())
    client = MlflowClient(tracking_uri_for(tmp_path))
    exp = ensure_experiment(client, "grid", tmp_path / "mlartifacts")
    RunWriter.start(client, exp, "grid-failed", tags={PLANNED_TAG: "9"}).finish("FAILED")
    sweep = load_sweep_runs("grid", tracking_uri_for(tmp_path))
    assert sweep.parent_run_id == ran and sweep.executions == 2
    assert main(["table", "grid", "--workdir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"read grid: execution {ran} of 2, started" in err and "9 trials" in err


def test_reading_a_workdir_without_a_store_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for command in (["table", "quickstart"], ["claims", "quickstart"],
                    ["dashboard", "quickstart", "--out", str(tmp_path / "d")]):  # fmt: skip
        assert main([*command, "--workdir", str(missing)]) == 2
        err = capsys.readouterr().err.strip()
        expected = "no MLflow store here (run a sweep or `sedsweep train` first)"
        assert err == f"sedsweep: error: {missing / 'mlflow.db'}: {expected}"
    assert not missing.exists()


def test_reading_an_unusable_tracking_uri_is_one_line(tmp_path, capsys):
    assert main(["table", "quickstart", "--tracking-uri", "bogus://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sedsweep: error: bogus://x: MLflow tracking store not usable")
    assert "\n" not in err and "Traceback" not in err
