"""Results you can trust from search sweeps: one model per trial (selected-epoch values), every
trial at the fidelity it reached, design checks, paired statistics, claim checks and Pareto
sweeps.

Constructed sweeps are written to a real SQLite MLflow store as the engine writes them, so
every expected number is computed here by hand or with scipy; a real tiny multi-objective
sweep on Ray Tune checks the reported front against the brute-force non-dominated set.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from markdown_it import MarkdownIt
from mlflow.tracking import MlflowClient
from scipy import stats

from sedsweep.cli import main
from sedsweep.report.best import pareto_front, parse_pick_rule, pick_from_front, rank_by_validation
from sedsweep.report.claims import (
    EQUIVALENT,
    NOT_DETECTED,
    REPLICATED,
    REVERSED,
    SUSPECT,
    TESTED,
    check_claims,
)
from sedsweep.report.dashboard import sweep_payload
from sedsweep.report.design import check_design
from sedsweep.report.importance import param_importance
from sedsweep.report.runs import TrialRun, load_sweep_runs
from sedsweep.report.stats import power
from sedsweep.report.tables import build_table, log_sweep_tables
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.tracking import tracking_uri_for

from .sweeps import log_sweep

ROOT = Path(__file__).resolve().parents[1]
QUICK = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
PRUNED = {"status": "KILLED", "tags": {"sweep.stopped_early": "true"}}
AUC = "val/when_frame_auc"


def load(workdir: Path, parent: str):
    return load_sweep_runs(parent, tracking_uri_for(workdir))


# -- one model per trial -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def selected_store(tmp_path_factory):
    """Three trials whose last-epoch and selected-epoch validation rankings disagree."""
    workdir = tmp_path_factory.mktemp("selected")
    spec = {**QUICK, "budget": {**QUICK["budget"], "max_epochs": 2}}
    spec["table"] = {"rows": ["when_loss"], "metrics": [AUC, "test/when_frame_auc"]}
    trials = [
        {"overrides": {"when_loss": "mmm", "optim.lr": 0.001, "mmm.w_min": 0.2},
         "metrics": {AUC: 0.50, "best_val/when_frame_auc": 0.80, "test/when_frame_auc": 0.78}},
        {"overrides": {"when_loss": "max", "optim.lr": 0.003, "mmm.w_min": 0.5},
         "metrics": {AUC: 0.70, "best_val/when_frame_auc": 0.72, "test/when_frame_auc": 0.70}},
        {"overrides": {"when_loss": "mmm", "optim.lr": 0.005, "mmm.w_min": 0.9},
         "metrics": {AUC: 0.60, "best_val/when_frame_auc": 0.65, "test/when_frame_auc": 0.64}},
    ]  # fmt: skip
    return workdir, log_sweep(workdir, spec, trials)


def test_ranking_and_table_read_the_selected_epoch_not_the_last(selected_store):
    sweep = load(*selected_store)
    by_last = sorted(sweep.trials, key=lambda t: -t.metrics[AUC])
    assert [t.value("optim.lr") for t in by_last] == [0.003, 0.005, 0.001]
    assert [t.value("optim.lr") for t in sweep.ranked()] == [0.001, 0.003, 0.005]
    assert [r.trial.value("optim.lr") for r in rank_by_validation(sweep)] == [0.001, 0.003, 0.005]
    assert [r.values for r in rank_by_validation(sweep)] == [[0.80], [0.72], [0.65]]
    table = build_table([sweep])
    mmm = table.cell(("mmm",), (), AUC)
    assert mmm.best[0] == pytest.approx(0.80) and sorted(mmm.values) == pytest.approx([0.65, 0.8])
    assert table.cell(("mmm",), (), "test/when_frame_auc").best[0] == pytest.approx(0.78)
    assert any("best_val/*" in note for note in table.notes)
    # read as CommonMark reads it (MLflow's artifact viewer): the asterisks survive
    page = MarkdownIt().render(table.render("md"))
    assert "val/* values are each trial's selected model's (best_val/*: at the epoch" in page


# -- every trial at the fidelity it reached ----------------------------------------------------
LRS = [0.0004, 0.0006, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.008]
EPOCHS = [6, 4, 2, 4, 2, 2, 4, 2]  # the first completed; ASHA stopped the rest at rungs 2 and 4


def final_auc(lr: float) -> float:
    return 0.5 + 0.1 * np.log10(lr / 3e-4)


@pytest.fixture(scope="module")
def pruned_store(tmp_path_factory):
    """The README quickstart's shape: 8 TPE + ASHA trials, 1 completed, 7 pruned."""
    workdir = tmp_path_factory.mktemp("pruned")
    trials = [  # mmm.w_min acts (and is logged) only where when_loss = mmm
        {"overrides": {"when_loss": ["mmm", "max"][i % 2], "optim.lr": lr,
                       **({"mmm.w_min": i / 10} if i % 2 == 0 else {})},
         "metrics": {AUC: final_auc(lr), "test/when_frame_auc": final_auc(lr) - 0.05,
                     "test/who_auc_macro": 0.6},
         "epochs": n, **({} if n == 6 else PRUNED)}
        for i, (lr, n) in enumerate(zip(LRS, EPOCHS, strict=True))
    ]  # fmt: skip
    return workdir, log_sweep(workdir, QUICK, trials, epochs=6)


def test_pruned_trials_keep_their_rows_at_a_common_rung(pruned_store):
    sweep = load(*pruned_store)
    assert sweep.counts == {"completed": 1, "pruned": 7, "failed": 0, "running": 0}
    assert sweep.rungs() == [2, 4, 6]
    table = build_table([sweep])
    assert sorted(table.rows) == [("max",), ("mmm",)]
    for i, loss in enumerate(["mmm", "max"]):
        cell = table.cell((loss,), (), AUC)
        mine = [j for j in range(8) if j % 2 == i]
        at_rung_2 = [final_auc(LRS[j]) * 2 / EPOCHS[j] for j in mine]  # the logged ramp
        assert cell.rung == 2 and sorted(cell.values) == pytest.approx(sorted(at_rung_2))
        best = max(mine, key=lambda j: (EPOCHS[j], final_auc(LRS[j])))  # fidelity, then value
        assert cell.best[0] == pytest.approx(final_auc(LRS[best]))
    assert any("highest rung all 8 trials reached" in n for n in table.notes)


def test_leaderboard_orders_completed_then_by_fidelity(pruned_store):
    sweep = load(*pruned_store)
    order = [(t.status, t.epochs) for t in sweep.leaderboard()]
    assert order == [("completed", 6)] + [("pruned", 4)] * 3 + [("pruned", 2)] * 4
    at_4 = [t.metric(AUC) for t in sweep.leaderboard()[1:4]]
    assert at_4 == sorted(at_4, reverse=True)


def test_importance_uses_the_rung_most_trials_reached_and_says_so(pruned_store):
    sweep = load(*pruned_store)
    importance = param_importance(sweep)
    assert importance.values, importance.note
    # the keys that always act (when_loss, optim.lr) over all trials: 4 reached epoch 4
    assert importance.basis.startswith(f"{AUC} at epoch 4 of 6, 4 trials")
    assert "1 completed, 7 pruned (stopped at epochs 2, 4)" in importance.basis
    assert importance.values[0][0] == "optim.lr"  # the value depends on lr alone
    assert "mmm.w_min" not in dict(importance.values)
    # mmm.w_min only where it acts: the 4 mmm trials, all at epoch 2
    (mmm,) = importance.subspaces
    assert mmm.subspace == "when_loss = mmm"
    assert mmm.basis.startswith(f"where when_loss = mmm: {AUC} at epoch 2 of 6, 4 trials")
    assert set(dict(mmm.values)) == {"optim.lr", "mmm.w_min"}
    assert ("mmm.w_min", dict(mmm.values)["mmm.w_min"], "where when_loss = mmm") in (
        importance.rows()
    )


def test_dashboard_payload_has_every_curve_and_the_importance(pruned_store):
    payload = sweep_payload(load(*pruned_store))
    assert len(payload["curves"]) == 8
    assert sum("pruned at epoch" in c["label"] for c in payload["curves"]) == 7
    assert payload["importance"]["basis"].startswith(f"{AUC} at epoch 4")
    assert "mmm.w_min (where when_loss = mmm)" in dict(payload["importance"]["values"])
    assert [t["rank"] for t in payload["trials"] if t["status"] == "completed"] == [0]


def test_too_few_trials_for_importance_says_why(tmp_path):
    trials = [
        {"overrides": {"when_loss": "mmm", "optim.lr": lr, "mmm.w_min": 0.1},
         "metrics": {AUC: final_auc(lr)}, "epochs": 2, **PRUNED}
        for lr in (0.001, 0.002)
    ]  # fmt: skip
    importance = param_importance(load(tmp_path, log_sweep(tmp_path, QUICK, trials, epochs=6)))
    assert not importance.values
    assert importance.note == (
        f"importance not computed: 2 pruned (stopped at epoch 2); at most 2 trial(s) share a "
        f"rung with {AUC} (need 3)"
    )


# -- design checks -----------------------------------------------------------------------------
def trial(**values: Any) -> TrialRun:
    return TrialRun("r", "t", "completed", values, {}, {}, 0, None)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([(1, "x"), (1, "y"), (2, "x"), (2, "y")], None),
        ([(1, "x"), (2, "y"), (3, "z")], "a and b are aliased"),
        ([(1, "x"), (2, "x"), (3, "y")], "b is determined by a"),
        ([(0, "gap"), (0, "atrous"), (0, "two_step"), (1, "two_step"), (2, "two_step")],
         "a varies only where b = two_step"),
        ([(1, "x"), (1, "y"), (2, "y"), (2, "z"), (3, "x"), (3, "z")],
         "a and b are not fully crossed (6 of 9 combinations occur)"),
    ],
)  # fmt: skip
def test_design_relations(rows, reason):
    design = check_design([trial(a=a, b=b, c=5) for a, b in rows], ["a", "b", "c"])
    assert design.constant == ["c"]
    if reason is None:
        assert design.confounded == [] and [f.keys for f in design.factors] == [("a",), ("b",)]
    else:
        assert len(design.confounded) == 1 and design.confounded[0].startswith(reason)
        assert [f.keys for f in design.factors] == [("a", "b")]


def test_continuous_keys_are_never_grouped():
    rows = [(0.1, "x"), (0.2, "y"), (0.3, "x")]  # each lr value with one loss: by sampling
    design = check_design([trial(lr=a, loss=b) for a, b in rows], ["lr", "loss"], ["lr"])
    assert design.confounded == [] and len(design.factors) == 2


@pytest.fixture(scope="module")
def nested_store(tmp_path_factory):
    """The issue's grid: mtl.alpha is non-zero only in the two_step cell."""
    workdir = tmp_path_factory.mktemp("nested")
    spec = {
        "name": "nested", "method": "mtl_attention", "scale": "tiny",
        "objective": {"metric": "val/ap_micro"}, "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"},
        "cells": [{"pooling": "gap", "mtl.alpha": 0.0}, {"pooling": "atrous", "mtl.alpha": 0.0},
                  {"pooling": "two_step", "mtl.alpha": 0.0},
                  {"pooling": "two_step", "mtl.alpha": 0.001},
                  {"pooling": "two_step", "mtl.alpha": 0.01}],
        "replicates": {"seed": [0, 1]},
        "table": {"rows": ["pooling"], "metrics": ["val/ap_micro"], "replicates": ["seed"]},
    }  # fmt: skip
    score = {("gap", 0.0): 0.4, ("atrous", 0.0): 0.5, ("two_step", 0.0): 0.6,
             ("two_step", 0.001): 0.7, ("two_step", 0.01): 0.65}  # fmt: skip
    trials = [
        {
            "overrides": {**cell, "seed": seed},
            "metrics": {"val/ap_micro": score[(cell["pooling"], cell["mtl.alpha"])] + seed / 100},
        }
        for cell in spec["cells"]
        for seed in (0, 1)
    ]
    return workdir, log_sweep(workdir, spec, trials)


def test_confounded_keys_are_one_factor_in_importance(nested_store):
    importance = param_importance(load(*nested_store))
    ((factor, share),) = importance.values  # one factor, not two effects
    assert set(factor.split("+")) == {"pooling", "mtl.alpha"} and share == 1.0
    assert importance.warnings == ["confounded: mtl.alpha varies only where pooling = two_step"]


def test_tables_warn_about_confounds_and_pooled_cells(nested_store):
    sweep = load(*nested_store)
    notes = build_table([sweep]).notes
    assert "nested: confounded: mtl.alpha varies only where pooling = two_step" in notes
    assert any("cells pool trials that differ in mtl.alpha" in n for n in notes)
    both = build_table([sweep], rows=["pooling", "mtl.alpha"]).notes
    assert not any("cells pool" in n for n in both)


def test_a_key_aliased_with_the_rows_pools_nothing(tmp_path):
    """Each arm with its own alpha and budget (Table IV's evidence file): no cell pools two
    configurations, though both keys are hidden."""
    spec = {
        "name": "aliased", "method": "mtl_attention", "scale": "tiny",
        "objective": {"metric": "val/ap_micro"}, "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"},
        "cells": [{"pooling": "gap", "mtl.alpha": 0.0, "epochs": 3},
                  {"pooling": "two_step", "mtl.alpha": 0.001, "epochs": 2}],
        "replicates": {"seed": [0, 1]},
        "table": {"rows": ["pooling"], "metrics": ["val/ap_micro"], "replicates": ["seed"]},
    }  # fmt: skip
    trials = [
        {"overrides": {**cell, "seed": seed}, "metrics": {"val/ap_micro": 0.5 + seed / 100}}
        for cell in spec["cells"]
        for seed in (0, 1)
    ]
    notes = build_table([load(tmp_path, log_sweep(tmp_path, spec, trials))]).notes
    assert sum("are aliased" in n for n in notes) == 3, notes  # pooling, mtl.alpha, epochs
    assert not any("cells pool" in n for n in notes), notes


# -- paired significance marks -----------------------------------------------------------------
def loss_grid(name: str, values: dict[str, list[float]], seeds: dict[str, list[int]] | None = None,
              claims: list[dict[str, Any]] | None = None) -> tuple[dict, list[dict]]:  # fmt: skip
    losses = list(values)
    spec = {
        "name": name, "method": "whenwho", "scale": "tiny",
        "objective": {"metric": AUC}, "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"},
        "space": {"when_loss": {"type": "grid", "values": losses}},
        "replicates": {"seed": list(range(len(values[losses[0]])))},
        "table": {"rows": ["when_loss"], "metrics": [AUC], "replicates": ["seed"]},
        "claims": claims or [],
    }  # fmt: skip
    seeds = seeds or {}
    trials = [
        {"overrides": {"when_loss": loss, "seed": seed},
         "metrics": {AUC: v, "test/when_frame_auc": v}}
        for loss in losses
        for seed, v in zip(seeds.get(loss, range(len(values[loss]))), values[loss], strict=True)
    ]  # fmt: skip
    return spec, trials


MMM = [0.50, 0.60, 0.70]
MAX = [0.511, 0.609, 0.712]  # 0.01 higher, seed for seed: a paired test sees it, Welch cannot


def test_marks_use_the_paired_test_when_seeds_align(tmp_path):
    spec, trials = loss_grid("paired", {"mmm": MMM, "max": MAX})
    table = build_table([load(tmp_path, log_sweep(tmp_path, spec, trials))])
    cell = table.cell(("mmm",), (), AUC)
    assert cell.test == "paired t"
    assert cell.p_value == pytest.approx(stats.ttest_rel(MMM, MAX).pvalue, rel=1e-9)
    assert cell.p_value < 0.05 and cell.mark is None
    assert stats.ttest_ind(MMM, MAX, equal_var=False).pvalue > 0.5  # Welch would call it a tie
    assert "paired t test" in table.legend()


def test_marks_fall_back_to_welch_when_seeds_differ(tmp_path):
    spec, trials = loss_grid("welch", {"mmm": MMM, "max": MAX}, seeds={"max": [0, 1, 7]})
    cell = build_table([load(tmp_path, log_sweep(tmp_path, spec, trials))]).cell(("mmm",), (), AUC)
    assert cell.test == "Welch t" and cell.mark == "tie"
    assert cell.p_value == pytest.approx(stats.ttest_ind(MMM, MAX, equal_var=False).pvalue)


# -- claims ------------------------------------------------------------------------------------
BASE = np.array([0.70, 0.72, 0.68, 0.75, 0.71])
CLAIM_VALUES = {
    "max": list(BASE),
    "mmm": list(BASE + 0.05 + np.array([0.004, -0.003, 0.002, -0.001, 0.0])),  # a true effect
    "noisy_or": list(BASE + np.array([0.01, -0.01, 0.02, -0.02, 0.0])),  # none at all
}


def claim(name: str, a: str, b: Any, direction: str = "higher", **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": "constructed", "metric": "test/when_frame_auc",
            "direction": direction, "a": {"when_loss": a},
            "b": b if b == "each" else {"when_loss": b}, **extra}  # fmt: skip


CLAIMS = [
    claim("mmm beats max", "mmm", "max"),
    claim("noisy_or beats max", "noisy_or", "max"),
    claim("max beats mmm", "max", "mmm"),
    claim("mmm beats max by 0.2", "mmm", "max", min_effect=0.2),
    claim("mmm beats every other loss", "mmm", "each"),
    claim("mmm beats max by 0.005", "mmm", "max", min_effect=0.005),
    claim("noisy_or is max within 0.05", "noisy_or", "max", equivalence_margin=0.05),
]


@pytest.fixture(scope="module")
def claims_store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("claims")
    spec, trials = loss_grid("claims", CLAIM_VALUES, claims=CLAIMS)
    return workdir, log_sweep(workdir, spec, trials)


def holm_by_hand(raw: list[float]) -> list[float]:
    """Sort ascending, multiply the k-th smallest by (m - k), keep it monotone, cap at 1."""
    m, running, out = len(raw), 0.0, [0.0] * len(raw)
    for k, i in enumerate(np.argsort(raw)):
        running = max(running, min(1.0, (m - k) * raw[i]))
        out[i] = running
    return out


def test_claim_statistics_against_scipy_and_holm_by_hand(claims_store):
    report = check_claims(load(*claims_store))
    labels = [(c.claim.name, c.label("b")) for c in report.checks]
    assert labels == [
        ("mmm beats max", "when_loss=max"), ("noisy_or beats max", "when_loss=max"),
        ("max beats mmm", "when_loss=mmm"), ("mmm beats max by 0.2", "when_loss=max"),
        ("mmm beats every other loss", "when_loss=max"),
        ("mmm beats every other loss", "when_loss=noisy_or"),
        ("mmm beats max by 0.005", "when_loss=max"),
        ("noisy_or is max within 0.05", "when_loss=max"),
    ]  # fmt: skip
    m = len(report.checks)
    greater, less = [], []
    for check in report.checks:
        a = CLAIM_VALUES[check.a["when_loss"]]
        b = CLAIM_VALUES[check.b["when_loss"]]
        d = np.subtract(a, b)
        assert check.paired and check.validity == TESTED and check.family == m
        assert check.effect == pytest.approx(d.mean())
        greater.append(stats.ttest_rel(a, b, alternative="greater").pvalue)
        less.append(stats.ttest_rel(a, b, alternative="less").pvalue)
        assert check.p_one == pytest.approx(greater[-1], rel=1e-9)
        assert check.p_other == pytest.approx(less[-1], rel=1e-9)
        # the simultaneous interval: a two-sided 1 - α/m t interval of the paired differences
        half = stats.t.ppf(1 - 0.05 / m / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert check.ci == pytest.approx((d.mean() - half, d.mean() + half))
        assert check.prob_a_beats_b == pytest.approx((np.sum(d > 0) + 0.5 * np.sum(d == 0)) / 5)
    # one Holm family: both directions of every tested comparison
    adjusted = holm_by_hand(greater + less)
    assert [c.p_holm for c in report.checks] == pytest.approx(adjusted[:m])
    assert [c.p_other_holm for c in report.checks] == pytest.approx(adjusted[m:])


def test_claim_answers_in_four_columns(claims_store):
    checks = check_claims(load(*claims_store)).checks
    assert [c.direction for c in checks] == [
        REPLICATED, NOT_DETECTED, REVERSED, REPLICATED, REPLICATED, REPLICATED, REPLICATED,
        NOT_DETECTED,
    ]  # fmt: skip
    smaller, overshoot, equal = checks[3], checks[6], checks[7]
    # replicated but smaller: a quarter of the paper's 0.2, its interval below it
    assert smaller.ratio == pytest.approx(smaller.effect / 0.2) and smaller.ratio < 0.3
    assert smaller.ratio_ci[1] < 1 and smaller.magnitude == ""
    # ten times the paper's 0.005: suspect
    assert overshoot.ratio == pytest.approx(overshoot.effect / 0.005) and overshoot.ratio > 5
    assert overshoot.magnitude == SUSPECT
    # TOST by hand: both one-sided tests against ±0.05
    a, b = CLAIM_VALUES["noisy_or"], CLAIM_VALUES["max"]
    d = np.subtract(a, b)
    tost = max(stats.ttest_1samp(d, -0.05, alternative="greater").pvalue,
               stats.ttest_1samp(d, 0.05, alternative="less").pvalue)  # fmt: skip
    assert equal.p_tost == pytest.approx(tost) and equal.equivalence == EQUIVALENT
    assert [c.equivalence for c in checks[:7]] == [""] * 7  # no margin declared
    # n nonzero pairs cannot bring a one-sided Wilcoxon p below 1/2^n ≥ 1/32 > 0.05 / 8
    for c in checks:
        nonzero = int(np.count_nonzero(c.shift.diffs))
        assert c.wilcoxon_p is None
        assert f"{nonzero} pairs cannot give p below {0.5**nonzero:.3g}" in c.wilcoxon_note
    for check in checks:  # replicates for 80 % power: the smallest n that reaches it
        n, sd = check.needed, np.std(check.shift.diffs, ddof=1)
        if n is not None:
            assert power(check.power_effect, sd, n, paired=True) >= 0.8
            assert n == 2 or power(check.power_effect, sd, n - 1, paired=True) < 0.8
    assert checks[3].power_effect == 0.2 and checks[3].power_effect_from == "paper"


def test_claims_without_shared_seeds_use_welch(tmp_path):
    spec, trials = loss_grid(
        "unpaired", CLAIM_VALUES, seeds={"max": [0, 1, 2, 3, 9]}, claims=CLAIMS[:1]
    )
    (check,) = check_claims(load(tmp_path, log_sweep(tmp_path, spec, trials))).checks
    a, b = CLAIM_VALUES["mmm"], CLAIM_VALUES["max"]
    assert not check.paired and check.wilcoxon_p is None
    welch = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert check.p_one == pytest.approx(welch.pvalue)
    u = stats.mannwhitneyu(a, b).statistic
    assert check.prob_a_beats_b == pytest.approx(u / 25)


def test_claims_command_prints_and_logs(claims_store, capsys):
    workdir, parent = claims_store
    assert main(["claims", "claims", "--workdir", str(workdir), "--format", "json", "--log"]) == 0
    rows = json.loads(capsys.readouterr().out)["claims"]
    assert [r["direction"]["verdict"] for r in rows][:3] == [REPLICATED, NOT_DETECTED, REVERSED]
    assert {"validity", "direction", "magnitude", "equivalence"} <= set(rows[0])
    assert rows[7]["equivalence"]["verdict"] == EQUIVALENT and rows[0]["equivalence"] is None
    client = MlflowClient(tracking_uri_for(workdir))
    logged = {a.path for a in client.list_artifacts(parent)}
    assert {"claims.md", "claims.csv"} <= logged
    text = Path(client.download_artifacts(parent, "claims.csv")).read_text()
    assert len(list(csv.DictReader(io.StringIO(text)))) == 8
    assert main(["claims", "claims", "--workdir", str(workdir)]) == 0
    assert "**REPLICATED** (Holm p" in capsys.readouterr().out


def test_claims_of_a_sweep_without_claims_is_exit_2(selected_store, capsys):
    workdir, _ = selected_store
    assert main(["claims", "quickstart", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sedsweep: error: quickstart: its search-space file states no claims"


# -- Pareto sweeps -----------------------------------------------------------------------------
WHO = "val/who_auc_macro"
PARETO_SPEC = {
    **QUICK, "name": "pareto",
    "objective": [{"metric": AUC, "mode": "max"}, {"metric": WHO, "mode": "max"}],
    "search": {"algorithm": "nsga2", "seed": 0}, "scheduler": {"type": "none"},
    "budget": {"trials": 10, "max_epochs": 2},
    "table": {"rows": ["when_loss"], "metrics": [AUC, WHO]},
}  # fmt: skip
POINTS = [(0.9, 0.5), (0.8, 0.7), (0.6, 0.9), (0.7, 0.6), (0.85, 0.55), (0.5, 0.5),
          (0.6, 0.85), (0.8, 0.7), (0.95, 0.2), (0.4, 0.95)]  # fmt: skip


def brute_front(points: list[tuple[float, ...]]) -> set[int]:
    def dominates(q, p):
        return all(x >= y for x, y in zip(q, p, strict=True)) and q != p

    return {i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)}


@pytest.fixture(scope="module")
def pareto_store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pareto")
    trials = [
        {"overrides": {"when_loss": ["mmm", "max"][i % 2], "optim.lr": 0.001 * (i + 1),
                       "mmm.w_min": 0.5},
         "metrics": {AUC: x, WHO: y, "val/who_ap_micro": y - 0.1}}
        for i, (x, y) in enumerate(POINTS)
    ]  # fmt: skip
    return workdir, log_sweep(workdir, PARETO_SPEC, trials)


def test_reported_front_is_the_brute_force_front(pareto_store):
    sweep = load(*pareto_store)
    trials, mask = pareto_front(sweep)
    found = {int(t.number) for t, on in zip(trials, mask, strict=True) if on}
    assert found == brute_front(POINTS) == {0, 1, 2, 4, 7, 8, 9}  # 3 and 6 are dominated
    payload = sweep_payload(sweep)["pareto"]
    assert {p["name"] for p in payload["points"] if p["front"]} == {f"t{i:03d}" for i in found}
    volumes = [v for _, v in payload["hypervolume"]]
    assert len(volumes) == 10 and volumes == sorted(volumes)
    assert [t["pareto"] for t in sweep_payload(sweep)["trials"]].count(True) == len(found)


def test_pick_rules_choose_from_the_front(pareto_store):
    sweep = load(*pareto_store)
    chosen = {}
    for text in ("knee", "weights=1,0", "weights=0,1", f"constraint:{WHO}>=0.8"):
        trial, front = pick_from_front(sweep, parse_pick_rule(sweep, text))
        assert {t.number for t in front} == brute_front(POINTS)
        chosen[text] = trial.number
    assert chosen["weights=1,0"] == 8 and chosen["weights=0,1"] == 9
    assert chosen[f"constraint:{WHO}>=0.8"] == 2  # the best WHEN AUC among WHO ≥ 0.8
    assert chosen["knee"] in (1, 7)  # (0.8, 0.7) twice: the point nearest the ideal
    trial, _ = pick_from_front(sweep, parse_pick_rule(sweep, "constraint:val/who_ap_micro>=0.7"))
    assert trial.number == 2  # a constraint on a logged metric that is not an objective


def test_table_marks_the_front_of_row_means(pareto_store):
    table = build_table([load(*pareto_store)])
    means = {row: tuple(table.cell(row, (), m).mean for m in (AUC, WHO)) for row in table.rows}
    rows = list(means)
    front = {rows[i] for i in brute_front([means[r] for r in rows])}
    assert {row for row, _ in table.front} == front
    assert "◆" in table.render("md") and "Pareto front of the row means" in table.legend()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pareto", "--pick", "kneee"], "--pick: unknown pick rule 'kneee'"),
        (["pareto", "--pick", "weights=1"], "--pick: "),
        (["pareto", "--pick", "constraint:val/nope>=1"], "--pick: no completed trial logged"),
        (["pareto", "--confirm-top", "2"], "--confirm-top: ranks by one objective"),
    ],
)
def test_bad_pick_is_one_line_exit_2(pareto_store, tmp_path, capsys, args, message):
    workdir, _ = pareto_store
    out = tmp_path / "best.yaml"
    assert main(["best", *args, "--workdir", str(workdir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_pick_on_a_single_objective_sweep_is_exit_2(selected_store, tmp_path, capsys):
    workdir, _ = selected_store
    out = tmp_path / "best.yaml"
    assert main(["best", "quickstart", "--pick", "knee", "--workdir", str(workdir),
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--pick: needs a sweep with several objectives" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_pareto_sweep_reports_its_front_and_picks_from_it(local_ray, tmp_path, capsys):
    plan = load_sweep(
        ROOT / "search_spaces" / "whenwho_joint_pareto.yaml",
        {"budget.trials": 5, "budget.max_epochs": 6, "search.algorithm": "random"},
        scale="tiny",
    )
    outcome = run_sweep(plan, workdir=tmp_path, on_finish=log_sweep_tables)
    assert outcome.counts["completed"] == 5, outcome.summary()
    sweep = load_sweep_runs(outcome.parent_run_id, tracking_uri_for(tmp_path))
    metrics = [o.metric for o in plan.spec.objectives]
    assert all(f"best_val/{m[4:]}" in t.metrics for t in sweep.trials for m in metrics)
    trained = sweep.valid("completed")  # the front is over the trials that trained
    assert len(trained) >= 2, [sweep.validity(t).reason for t in sweep.trials]
    points = [tuple(t.metric(m) for m in metrics) for t in trained]
    trials, mask = pareto_front(sweep)
    assert {t.run_id for t, on in zip(trials, mask, strict=True) if on} == {
        trained[i].run_id for i in brute_front(points)
    }
    out = tmp_path / "best.yaml"
    code = main(["best", plan.spec.name, "--pick", "knee", "--workdir", str(tmp_path),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "## Pareto front over val/when_frame_auc (max), val/who_auc_macro (max)" in printed
    assert "Chosen by --pick knee" in printed and "◆ chosen" in printed
    assert out.is_file()
