"""Validity before statistics: the gate that decides whether a trial trained, the reference
levels each method declares for it (checked against independent computations: numpy by hand,
scikit-learn), and what reports do with a trial that did not train (constructed sweeps in a
real SQLite MLflow store)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from sedsweep.config import flatten, with_overrides
from sedsweep.features import build_features
from sedsweep.methods.base import Method
from sedsweep.report.best import rank_by_validation
from sedsweep.report.claims import NOT_TESTED, check_claims
from sedsweep.report.importance import param_importance
from sedsweep.report.runs import load_sweep_runs
from sedsweep.report.tables import build_table, untrained_arms
from sedsweep.runspec import RunSpec, corpus_for, resolve
from sedsweep.tracking import tracking_uri_for
from sedsweep.validity import (
    CHANCE_MARGIN,
    LOSS_MARGIN,
    NOT_JUDGED,
    headroom_share,
    judge,
    tail_gain,
)

from .sweeps import log_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

AUC = "val/when_frame_auc"
REFS = {"chance/train/loss_when": 0.693, "chance/train/loss_who": 0.64, "chance/" + AUC: 0.5}


# -- the gate ----------------------------------------------------------------------------------
def trained(**over: float) -> dict[str, float]:
    return {**REFS, "train/loss_when": 0.40, "train/loss_who": 0.9, "best_val/when_frame_auc": 0.9,
            AUC: 0.9, **over}  # fmt: skip


def test_a_trial_at_the_label_prior_or_at_chance_is_not_valid():
    assert judge(trained(), AUC).valid
    at_prior = judge(trained(**{"train/loss_when": 0.693 * (1 - LOSS_MARGIN) + 1e-3}), AUC)
    assert not at_prior.valid and "train/loss_when" in at_prior.reason
    at_chance = judge(trained(**{"best_val/when_frame_auc": 0.5 + 0.5 * CHANCE_MARGIN / 2}), AUC)
    assert not at_chance.valid and "not above chance 0.5" in at_chance.reason
    below = judge(trained(**{"best_val/when_frame_auc": 0.2}), AUC)  # an inverted ranking
    assert not below.valid
    # the WHO network's loss (above its prior here) does not judge a WHEN objective ...
    assert "loss_who" not in judge(trained(), AUC).reason
    # ... but it judges a WHO one
    who = judge({**trained(), "best_val/who_auc_macro": 0.9, "chance/val/who_auc_macro": 0.5},
                "val/who_auc_macro")  # fmt: skip
    assert not who.valid and "train/loss_who" in who.reason


def test_a_loss_of_no_task_judges_every_objective():
    metrics = {"chance/train/loss_bce": 0.42, "train/loss_bce": 0.41,
               "best_val/ap_micro": 0.6, "chance/val/ap_micro": 0.15}  # fmt: skip
    verdict = judge(metrics, "val/ap_micro")
    assert not verdict.valid and "train/loss_bce" in verdict.reason


def test_headroom_is_measured_towards_a_perfect_score():
    assert headroom_share(0.75, 0.5, True) == pytest.approx(0.5)
    assert headroom_share(0.1, 0.4, False) == pytest.approx(0.75)  # an error rate: perfect at 0
    assert headroom_share(0.5, 0.5, True) == 0.0


def test_a_curve_still_rising_at_its_end_is_not_converged():
    # by hand: 10 epochs, the last 2 (20 %) vs the best before them
    rising = [0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76, 0.78, 0.82, 0.86]
    assert tail_gain(rising, True) == pytest.approx((0.86 - 0.78) / (0.86 - 0.5))
    flat = [0.5, 0.8, 0.85, 0.86, 0.87, 0.87, 0.868, 0.871, 0.869, 0.87]
    assert tail_gain(flat, True) == 0.0  # its last two (0.869, 0.87) stay below 0.871
    assert tail_gain([0.4, 0.3, 0.2], False) == pytest.approx(0.1 / 0.2)  # an error rate
    assert tail_gain([0.5, 0.6], True) is None  # too short to tell
    assert not judge(trained(), AUC, curve=rising).valid
    assert "not converged: its last 2 of 10 epochs" in judge(trained(), AUC, curve=rising).reason
    assert judge(trained(), AUC, curve=flat).valid


def test_a_trial_without_reference_levels_is_not_judged():
    assert judge({"best_val/score": 0.1, "train/loss": 9.0}, "val/score") == NOT_JUDGED
    assert NOT_JUDGED.valid and NOT_JUDGED.tag == "unjudged"


# -- the references each method declares -------------------------------------------------------
def entropy(p: np.ndarray) -> float:
    """Mean binary entropy of probabilities p (nats), clipped like the code's logit."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each method at its tiny scale on its synthetic corpus, with config overrides."""
    workdir = tmp_path_factory.mktemp("refs")
    cache: dict[str, Any] = {}

    def build(name: str, **overrides: Any) -> Method:
        if name not in cache:
            resolved = resolve(RunSpec(method=name, scale="tiny"))
            corpus = corpus_for(resolved, workdir)
            fs = build_features(corpus, resolved.feature_params, workdir / "c", progress=False)
            cache[name] = (resolved, fs)
        resolved, fs = cache[name]
        data = with_overrides(resolved.config.model_dump(mode="json"), flatten(overrides))
        config = resolved.method_cls.Config.model_validate(data)
        return resolved.method_cls(config, fs, torch.device("cpu"))

    return build


def test_whenwho_prior_losses_by_hand(built):
    m = built("whenwho", input={"when": "random", "who": "random"})
    refs = m.references()
    train = m.splits.train
    bag = m.bag_labels[train].mean()
    assert refs["train/loss_who"] == pytest.approx(entropy(m.features.weak[train].mean(0)), 1e-5)
    # MMM, eq. 5, every frame at the bag prior π: w·H(π) + w·E[BCE(π, Y/2)] + w·BCE(π, 0)
    y = m.bag_labels[train].astype(float)
    half = np.mean(-(y / 2 * np.log(bag) + (1 - y / 2) * np.log(1 - bag)))
    expected = (entropy(np.array([bag])) + half - np.log(1 - bag)) / 3
    assert refs["train/loss_when"] == pytest.approx(expected, 1e-5)
    for loss in ("max", "noisy_or"):  # the bag probability is the prior: its entropy
        other = built("whenwho", when_loss=loss, input={"when": "random", "who": "random"})
        assert other.references()["train/loss_when"] == pytest.approx(entropy(np.array([bag])),
                                                                     1e-5)  # fmt: skip
    # Half-and-Half batches weigh positive and negative bags equally: π = 1/2
    hnh = built("whenwho", input={"when": "hnh", "who": "random"}).references()
    assert hnh["train/loss_when"] == pytest.approx((math.log(2) + math.log(2) + math.log(2)) / 3,
                                                   1e-5)  # fmt: skip


def test_chance_levels_against_scikit_learn(built):
    m = built("whenwho")
    refs, fs = m.references(), m.features
    for split in ("val", "test"):
        idx = m.splits[split]
        y, prior = fs.weak[idx], fs.weak[m.splits.train].mean(0)
        scores = np.broadcast_to(prior, y.shape)
        keep = y.any(0) & ~y.all(0)  # classes where AP and AUC are defined on this split
        assert refs[f"{split}/when_frame_auc"] == 0.5
        assert refs[f"{split}/who_auc_macro"] == pytest.approx(0.5)
        assert refs[f"{split}/who_ap_macro"] == pytest.approx(y[:, keep].mean(0).mean())
        micro = max(roc_auc_score(y.ravel(), scores.ravel()), 0.5)
        assert refs[f"{split}/who_auc_micro"] == pytest.approx(micro)
        ap = max(average_precision_score(y.ravel(), scores.ravel()), y.mean())
        assert refs[f"{split}/who_ap_micro"] == pytest.approx(ap)


def test_mtl_and_staged_prior_losses_by_hand(built):
    mtl = built("mtl_attention")
    train = mtl.splits.train
    prior = mtl.features.weak[train].mean(0)
    assert mtl.references()["train/loss_bce"] == pytest.approx(entropy(prior), 1e-5)
    staged = built("staged", activation="sig_softmax")
    fs, train = staged.features, staged.splits.train
    y = fs.weak[train[fs.verified[train]]].astype(float)
    labelled = y.sum(1) > 0
    q = y[labelled] / y[labelled].sum(1, keepdims=True)
    mean_q = q.sum(0) / labelled.sum()
    cross = -(q * np.log(np.clip(mean_q, 1e-12, None))).sum(1)
    expected = entropy(y.mean(0)) + cross.sum() / len(y)  # a row without labels adds no CE
    assert staged.references()["train/loss_unmasked"] == pytest.approx(expected, 1e-5)


def test_references_do_not_move_training(built):
    """Computing the references draws from no generator the method trains with."""
    a, b = built("whenwho"), built("whenwho")
    a.references()
    assert a.train_epoch() == b.train_epoch()


# -- reports keep untrained trials out ---------------------------------------------------------
@pytest.fixture(scope="module")
def frozen_store(tmp_path_factory):
    """A grid of two learning rates over three seeds: one arm trained, one never did."""
    workdir = tmp_path_factory.mktemp("frozen")
    spec = {
        "name": "frozen", "method": "whenwho", "scale": "tiny",
        "objective": {"metric": AUC}, "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"}, "fixed": {"when_loss": "max"},
        "space": {"optim.lr": {"type": "grid", "values": [1e-8, 3e-3]}},
        "replicates": {"seed": [0, 1, 2]},
        "table": {"rows": ["optim.lr"], "metrics": [AUC, "test/when_frame_auc"],
                  "replicates": ["seed"]},
        "claims": [{"name": "trained beats frozen", "metric": "test/when_frame_auc",
                    "direction": "higher", "a": {"optim.lr": 3e-3}, "b": {"optim.lr": 1e-8}}],
    }  # fmt: skip
    trials = []
    for seed in range(3):
        trials.append(
            {
                "overrides": {"optim.lr": 3e-3, "seed": seed},
                "flat": True,
                "metrics": {
                    **REFS,
                    "train/loss_when": 0.3,
                    AUC: 0.88 + seed / 100,
                    "best_val/when_frame_auc": 0.88 + seed / 100,
                    "test/when_frame_auc": 0.9,
                },
            }
        )
        trials.append({"overrides": {"optim.lr": 1e-8, "seed": seed}, "flat": True, "metrics": {
            **REFS, "train/loss_when": 0.686, AUC: 0.72 + seed / 100,  # BN statistics moved
            "best_val/when_frame_auc": 0.99, "test/when_frame_auc": 0.7}})  # fmt: skip
    parent = log_sweep(workdir, spec, trials, epochs=4)
    return load_sweep_runs(parent, tracking_uri_for(workdir))


def test_an_arm_that_did_not_train_is_marked_and_never_ranked(frozen_store):
    sweep = frozen_store
    assert [r.trial.value("optim.lr") for r in rank_by_validation(sweep)] == [3e-3] * 3
    table = build_table([sweep])
    assert table.text(table.cell((1e-8,), (), AUC)) == "NOT TRAINED (n=3)"
    assert table.cell((3e-3,), (), AUC).n == 3
    assert any("3 of 6 completed trials left out as not trained" in n for n in table.notes)
    (line,) = untrained_arms(sweep, ["optim.lr"])
    assert "arm optim.lr=1e-08: no trained trial (3 not trained" in line
    assert "train/loss_when 0.686 is not 5% below the label prior's 0.693" in line


def test_a_claim_on_an_untrained_arm_is_not_tested(frozen_store):
    (check,) = check_claims(frozen_store).checks
    assert check.validity == NOT_TESTED and check.shift is None and check.p_holm is None
    assert check.validity_reason.startswith("b: 0 of 3 trials trained (t")
    assert "—" in check_claims(frozen_store).render("md").splitlines()[4]


def test_importance_leaves_untrained_trials_out(frozen_store):
    importance = param_importance(frozen_store)
    assert "3 of 6 completed or pruned trials left out as not trained" in (
        importance.basis or importance.note or ""
    )
