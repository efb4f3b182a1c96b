"""Tests for the staged method (He et al.): sparsemax, loss masking, stages, augmentation, runs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sedsweep.config import deep_merge, validate
from sedsweep.errors import UserError
from sedsweep.features import PRESETS, FeatureSet
from sedsweep.methods.staged import (
    Staged,
    StagedConfig,
    normalise_scores,
    threshold_mask,
    topk_mask,
    update_threshold,
)
from sedsweep.metrics import f1_macro
from sedsweep.nn.augment import Mixup, SpecAugment, time_warp
from sedsweep.nn.sparsemax import label_distribution, sparsemax, sparsemax_loss

CPU = torch.device("cpu")
N_MELS, FRAMES, BAND = 32, 64, 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_features(n: int = 48, n_classes: int = 4, seed: int = 0) -> FeatureSet:
    """Fixed-length random log-mels; class c brightens mel bins [8c, 8c + 8) by 3.

    Clips 0..n/3 are verified (every 4th of them is fold 2, the test fold); the rest are
    unverified, and every other unverified clip has a wrong label written in place of a true one.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, FRAMES, N_MELS)).astype(np.float32)
    weak = np.zeros((n, n_classes), dtype=np.float32)
    verified = np.arange(n) < n // 3
    for i in range(n):
        classes = rng.choice(n_classes, 1 + int(rng.random() < 0.3), replace=False)
        for c in classes:
            x[i, :, BAND * c : BAND * c + BAND] += 3.0
        weak[i, classes] = 1
        if not verified[i] and i % 2:
            weak[i, classes[0]], weak[i, (classes[0] + 1) % n_classes] = 0, 1
    params = PRESETS["he2020"].model_copy(update={"n_mels": N_MELS, "fixed_frames": FRAMES})
    return FeatureSet(
        params=params,
        classes=[f"tone_{c}" for c in range(n_classes)],
        clip_ids=[f"clip{i}.wav" for i in range(n)],
        data=x.reshape(-1, N_MELS),
        offsets=np.arange(n + 1, dtype=np.int64) * FRAMES,
        frame_times=np.tile(np.arange(FRAMES) * params.hop_s, n).astype(np.float32),
        weak=weak,
        folds=np.where(verified & (np.arange(n) % 4 == 0), 2, 1).astype(np.int64),
        verified=verified,
        durations=np.full(n, FRAMES * params.hop_s),
        events=None,
        corpus_fingerprint="synthetic",
        key="synthetic",
    )


@pytest.fixture(scope="module")
def features() -> FeatureSet:
    """A small FeatureSet shared by the tests that do not change it."""
    return make_features()


def tiny(**overrides: Any) -> StagedConfig:
    """The tiny scale fitted to 64-frame clips, with nested overrides."""
    fitted = {"crop_frames": 32, "specaugment": {"freq_width": 6, "time_width": 8, "time_warp": 4}}
    merged = deep_merge(deep_merge(Staged.scales["tiny"].config, fitted), overrides)
    return StagedConfig.model_validate(merged)


# -- sparsemax ----------------------------------------------------------------------------------
def brute_force_projection(z: np.ndarray) -> np.ndarray:
    """argmin_{p ∈ simplex} ‖p − z‖² by enumerating every support set (KKT on each face)."""
    best, best_cost = None, math.inf
    for size in range(1, z.size + 1):
        for support in itertools.combinations(range(z.size), size):
            s = list(support)
            p = np.zeros_like(z)
            p[s] = z[s] - (z[s].sum() - 1) / size
            if p.min() >= -1e-12 and (cost := float(((p - z) ** 2).sum())) < best_cost:
                best, best_cost = p, cost
    return best


def test_sparsemax_is_the_euclidean_projection_onto_the_simplex() -> None:
    z = torch.from_numpy(np.random.default_rng(0).normal(0, 1.5, (40, 5)))
    p = sparsemax(z)
    expected = np.stack([brute_force_projection(row) for row in z.numpy()])
    np.testing.assert_allclose(p.numpy(), expected, atol=1e-10)
    torch.testing.assert_close(p.sum(dim=-1), torch.ones(40, dtype=torch.float64))
    assert (p >= 0).all() and (p == 0).any()
    spread = sparsemax(torch.tensor([[4.0, 1.0, -2.0, 0.5], [1.0, 0.9, -3.0, -5.0]]))
    torch.testing.assert_close(spread, torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.55, 0.45, 0, 0]]))
    batched = sparsemax(z.reshape(8, 5, 5))  # any leading shape
    torch.testing.assert_close(batched.reshape(40, 5), p)


def test_sparsemax_loss_equals_eq9_by_hand() -> None:
    # z = (2, 1, −1): k(z) = 1, τ = 1, S = {0}; q = (½, ½, 0):
    #   −qᵀz = −1.5,  ½(z_0² − τ²) = 1.5,  ½‖q‖² = 0.25  →  0.25
    # z = (0.5, 0.3, −1): k(z) = 2, τ = −0.1, S = {0, 1}; q = e_0:
    #   −0.5 + ½(0.25 − 0.01 + 0.09 − 0.01) + 0.5 = 0.16
    z = torch.tensor([[2.0, 1.0, -1.0], [0.5, 0.3, -1.0]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(sparsemax_loss(z, q), torch.tensor([0.25, 0.16], dtype=z.dtype))
    one_hot = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert sparsemax_loss(7.0 * one_hot - 0.1, one_hot).item() == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.normal(0, 3, (200, 6)))
    y = torch.from_numpy((rng.random((200, 6)) < 0.3).astype(np.float64))
    y[:, 0] = 1
    q, _ = label_distribution(y)
    assert (sparsemax_loss(z, q) >= -1e-12).all()


def test_sparsemax_loss_gradient_is_sparsemax_minus_q() -> None:
    rng = np.random.default_rng(2)
    z = torch.from_numpy(rng.normal(0, 2, (30, 6))).requires_grad_()
    y = torch.from_numpy((rng.random((30, 6)) < 0.4).astype(np.float64))
    y[:, 3] = 1
    q, _ = label_distribution(y)
    sparsemax_loss(z, q).sum().backward()
    torch.testing.assert_close(z.grad, sparsemax(z.detach()) - q)


def test_sparsemax_loss_matches_entmax_on_one_hot_targets() -> None:
    entmax = pytest.importorskip("entmax")
    z = torch.from_numpy(np.random.default_rng(3).normal(0, 2, (50, 7)))
    target = torch.from_numpy(np.random.default_rng(4).integers(0, 7, 50))
    q = torch.nn.functional.one_hot(target, 7).to(z.dtype)
    expected = entmax.SparsemaxLoss(reduction="none")(z, target)
    torch.testing.assert_close(sparsemax_loss(z, q), expected)


def test_label_distribution_and_clips_without_labels(features: FeatureSet) -> None:
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    q, labelled = label_distribution(y)
    torch.testing.assert_close(q, torch.tensor([[0.5, 0, 0.5, 0], [0, 0, 0, 0], [0, 1.0, 0, 0]]))
    assert labelled.tolist() == [1.0, 0.0, 1.0]
    logits = torch.randn(2, 3, 4)
    for activation in ("sig_softmax", "sig_sparsemax"):
        method = Staged(tiny(activation=activation), features, CPU)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 1], y[1])
        losses = method.sample_losses(logits, y)
        assert losses[1].item() == pytest.approx(bce.item())  # only the sigmoid head's BCE
        assert losses[0].item() > 0 and losses[2].item() > 0


# -- loss masking -------------------------------------------------------------------------------
def test_threshold_rule_reproduces_a_hand_computed_eta_sequence() -> None:
    verified = torch.tensor([True, False, False, True, False, False])
    batches = [
        torch.tensor([0.9, 0.2, 0.8, 0.1, 0.5, 0.3]),  # T = 2nd largest = 0.8
        torch.tensor([0.4, 0.1, 0.6, 0.2, 0.7, 0.3]),  # T = 0.6
        torch.tensor([5.0, 1.0, 0.7, 0.2, 0.3, 0.9]),  # T = 1.0
    ]
    # η1 = T1 = 0.8 (no η0); η2 = 0.9·0.8 + 0.1·0.6 = 0.78; η3 = 0.9·0.78 + 0.1·1.0 = 0.802
    expected_eta = [0.8, 0.78, 0.802]
    expected_mask = [
        [False] * 6,  # 0.9 > 0.8 is verified; 0.8 is not > 0.8
        [False, False, False, False, False, False],  # 0.7 < 0.78
        [False, True, False, False, False, True],  # 1.0 and 0.9 exceed 0.802; 5.0 is verified
    ]
    eta = None
    for losses, eta_t, mask in zip(batches, expected_eta, expected_mask, strict=True):
        eta = update_threshold(eta, losses, k=2, alpha=0.9)
        assert eta == pytest.approx(eta_t)
        assert threshold_mask(losses, verified, eta).tolist() == mask
    assert update_threshold(0.3, batches[0], k=2, alpha=0.5) == pytest.approx(0.55)  # η0 given
    assert update_threshold(None, batches[0], k=50, alpha=0.9) == pytest.approx(0.1)  # k > batch


def test_method_updates_eta_before_masking(features: FeatureSet) -> None:
    method = Staged(tiny(staged={"k": 2, "alpha": 0.5, "eta0": 10.0}), features, CPU)
    verified = torch.tensor([True, False, False, False])
    losses = torch.tensor([1.0, 9.0, 6.0, 1.0])
    masked = method.select(2, losses, verified)
    assert method.eta == pytest.approx(0.5 * 10.0 + 0.5 * 6.0)  # η_t = 8 < 9 ≤ η_{t−1} = 10
    assert masked.tolist() == [False, True, False, False]  # masked with η_t, not η_{t−1}
    for stage in (1, 3):  # stages 1 and 3 neither mask nor move η
        assert not method.select(stage, losses * 10, verified).any()
    assert method.eta == pytest.approx(8.0)


def test_topk_masks_exactly_k_unverified_samples() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        losses = torch.from_numpy(rng.random(16))
        verified = torch.from_numpy(rng.random(16) < 0.5)
        verified[0], losses[0] = True, 10.0  # the largest loss is a verified sample's
        n_unverified = int((~verified).sum())
        for k in (1, 3, 16):
            masked = topk_mask(losses, verified, k)
            assert int(masked.sum()) == min(k, n_unverified)
            assert not (masked & verified).any()
            if masked.any() and not masked[~verified].all():
                assert losses[masked].min() >= losses[~verified & ~masked].max()


def test_masked_unverified_labels_do_not_change_the_update(features: FeatureSet) -> None:
    def one_step(selection: str, scramble: bool) -> list[torch.Tensor]:
        fs = make_features()
        if scramble:
            unverified = ~fs.verified
            fs.weak[unverified] = 1 - fs.weak[unverified]
        cfg = tiny(staged={"stages": [0, 1, 0], "selection": selection, "k": 4})
        method = Staged(cfg, fs, CPU)
        method.train_step()
        return [p.detach().clone() for p in method.model.parameters()]

    masked = [one_step("topk", s) for s in (False, True)]  # k = 4 = all unverified of 8
    assert all(torch.equal(a, b) for a, b in zip(*masked, strict=True))
    kept = [one_step("none", s) for s in (False, True)]
    assert not all(torch.equal(a, b) for a, b in zip(*kept, strict=True))


# -- stages -------------------------------------------------------------------------------------
@pytest.mark.parametrize("verified_only", [False, True])
def test_stage_boundaries_switch_the_data_sources(
    features: FeatureSet, verified_only: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny(staged={"stages": [2, 3, 1], "verified_only": verified_only, "selection": "topk"})
    method = Staged(cfg, features, CPU)
    assert cfg.iterations_per_epoch == 3 and cfg.epochs == (1 if verified_only else 2)
    drawn: list[np.ndarray] = []
    original = method.batch_indices

    def recording(stage: int) -> np.ndarray:
        drawn.append(original(stage))
        return drawn[-1]

    monkeypatch.setattr(method, "batch_indices", recording)
    stages = [method.train_epoch()["stage"] for _ in range(2)]
    unverified = [int((~features.verified[b]).sum()) for b in drawn]
    if verified_only:  # stages 1 + 3 only: 2 + 1 iterations, then stage 3 goes on
        assert unverified == [0] * 6 and stages == [3, 3]
    else:
        assert unverified == [0, 0, 4, 4, 4, 0] and stages == [2, 3]
    assert all(set(b) <= set(method.splits.train) for b in drawn)
    assert [cfg.stage_at(i) for i in range(7)] == (
        [1, 1, 3, 3, 3, 3, 3] if verified_only else [1, 1, 2, 2, 2, 3, 3]
    )


def test_unverified_share_sets_the_stage_two_mix(features: FeatureSet) -> None:
    method = Staged(tiny(batch_size=10, staged={"unverified_share": 0.3}), features, CPU)
    batch = method.batch_indices(2)
    assert len(batch) == 10 and (~features.verified[batch]).sum() == 3
    assert features.verified[method.batch_indices(1)].all()


# -- augmentation -------------------------------------------------------------------------------
def test_mixup_and_specaugment_change_inputs_only_in_training_mode() -> None:
    x = torch.randn(6, 40, 24)
    y = torch.eye(6)
    mixup, spec = Mixup(0.4), SpecAugment(2, 5, 2, 8, 4)
    for module in (mixup, spec):
        module.eval()
    rng = np.random.default_rng(0)
    assert mixup(x, y, rng)[0] is x and spec(x, rng) is x
    mixup.train(), spec.train()
    mixed_x, mixed_y = mixup(x, y, rng, groups=np.array([0, 0, 0, 1, 1, 1]))
    assert not torch.equal(mixed_x, x) and not torch.equal(spec(x, rng), x)
    torch.testing.assert_close(mixed_y.sum(dim=1), y.sum(dim=1))  # convex combinations
    assert mixed_y[:3, 3:].abs().sum() == 0 and mixed_y[3:, :3].abs().sum() == 0  # own group
    masked = SpecAugment(1, 5, 1, 8, 0).train()(x, np.random.default_rng(1))
    zeroed = masked == 0  # only whole frames and whole bins are zeroed
    assert zeroed.any()
    assert torch.equal(zeroed, zeroed.all(dim=2)[:, :, None] | zeroed.all(dim=1)[:, None, :])


def test_time_warp_keeps_the_ends_and_zero_distance_is_identity() -> None:
    x = torch.arange(20.0).repeat(3, 1)[..., None].expand(3, 20, 2).contiguous()
    warped = time_warp(x, np.random.default_rng(0), 4)
    assert (warped[:, 0] == 0).all() and (warped[:, -1] == 19).all()
    assert (warped[:, 1:] >= warped[:, :-1]).all() and not torch.equal(warped, x)
    assert time_warp(x, np.random.default_rng(0), 0) is x


def test_evaluation_is_not_augmented(features: FeatureSet) -> None:
    method = Staged(tiny(), features, CPU)
    state = method.rng.bit_generator.state
    first = method.predict(method.splits.test)
    assert method.rng.bit_generator.state == state  # no crops, no mixup, no masks drawn
    np.testing.assert_array_equal(first[0], method.predict(method.splits.test)[0])


# -- configuration ------------------------------------------------------------------------------
def test_config_defaults_are_the_papers() -> None:
    cfg = StagedConfig()
    s = cfg.staged
    assert s.stages == [10000, 10000, 5000] and s.selection == "threshold"
    assert (s.k, s.alpha, s.eta0, s.unverified_share) == (10, 0.9, None, 0.5)
    assert (cfg.batch_size, cfg.crop_frames, cfg.optim.lr) == (64, 512, 1e-3)
    assert cfg.activation == "sig_sparsemax" and cfg.mixup.enabled and cfg.specaugment.enabled
    assert cfg.epochs == 25000 // cfg.iterations_per_epoch and len(cfg.model.channels) == 4
    assert StagedConfig(staged={"verified_only": True}).epochs == 15000 // 500
    assert StagedConfig(epochs=3).epochs == 3
    assert StagedConfig.model_validate(cfg.model_dump()) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"staged": {"selction": "topk"}}, "unknown key 'staged.selction'"),
        ({"staged": {"selection": "top3"}}, "key 'staged.selection'"),
        ({"staged": {"stages": [10, 10]}}, "key 'staged.stages'"),
        ({"staged": {"stages": [10, -1, 5]}}, "key 'staged.stages.1'"),
        ({"staged": {"alpha": 1.5}}, "key 'staged.alpha'"),
        ({"staged": {"k": 65}}, "staged.k (65) must be ≤ batch_size (64)"),
        ({"activation": "softmax"}, "key 'activation'"),
        ({"ensemble": "median"}, "key 'ensemble'"),
        ({"mixup": {"alpha": 0}}, "key 'mixup.alpha'"),
        ({"model": {"channels": [8, 8]}}, "one entry per conv block"),
        ({"model": {"pooling": "sum"}}, "key 'model.pooling'"),
        ({"crop_frames": 8}, "crop_frames (8) is shorter than the time pooling"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=r"^sweep\.yaml: ") as err:
        validate(StagedConfig, data, where="sweep.yaml")
    assert message in str(err.value)


def test_clips_must_fit_the_network(features: FeatureSet) -> None:
    with pytest.raises(ValueError, match="specaugment mask widths"):
        Staged(tiny(specaugment={"time_width": 40}), features, CPU)
    with pytest.raises(ValueError, match="reduce 32 mel bins"):
        Staged(tiny(model={"freq_pools": [4, 4, 4, 1]}), features, CPU)
    Staged(tiny(specaugment={"enabled": False, "time_width": 40}), features, CPU)


# -- scores and metrics -------------------------------------------------------------------------
def test_normalisation_z_scores_each_class_then_scales_to_the_unit_interval() -> None:
    rng = np.random.default_rng(6)
    s = rng.random((30, 4)) * np.array([1.0, 0.1, 5.0, 0.01]) + np.array([0, 3, -2, 0.5])
    out = normalise_scores(s)
    assert out.min() == 0.0 and out.max() == 1.0
    z = (s - s.mean(0)) / s.std(0)
    np.testing.assert_allclose(out, (z - z.min()) / (z.max() - z.min()))
    np.testing.assert_allclose(out.std(0) / out.std(0)[0], np.ones(4))  # equal spread per class
    assert np.isfinite(normalise_scores(np.ones((3, 2)))).all()


def test_f1_macro_by_hand() -> None:
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    s = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.8], [0.1, 0.4, 0.3]])
    # class 0: tp 1, fn 1 → 2/3; class 1: tp 1, fp 1, fn 1 → 1/2; class 2 has no positive
    assert f1_macro(y, s) == pytest.approx((2 / 3 + 1 / 2) / 2)


@pytest.mark.parametrize(
    ("activation", "ensemble", "amp"),
    [
        ("sigmoid", "mean", False),
        ("sig_softmax", "geometric", False),
        ("sig_sparsemax", "mean", True),
    ],
)
def test_evaluate_reports_finite_metrics(
    features: FeatureSet, activation: str, ensemble: str, amp: bool
) -> None:
    method = Staged(tiny(activation=activation, ensemble=ensemble, amp=amp), features, CPU)
    train = method.train_epoch()
    assert {"loss", "masked_fraction", "stage", "iteration", "eta"} <= set(train)
    test, val = method.evaluate("test"), method.evaluate("val")
    assert {"loss", "lwlrap", "auc_macro", "auc_micro", "ap_micro", "ap_macro", "f1_macro"} <= set(
        test
    )
    assert not any(k.startswith("verified_") for k in test)  # the test fold is all verified
    assert "verified_lwlrap" in val and "lwlrap" in val
    assert all(math.isfinite(v) for v in (*train.values(), *test.values(), *val.values()))
    scores, _ = method.predict(method.splits.test)
    assert scores.shape == (len(method.splits.test), 4) and (scores >= 0).all()


def test_artifacts_write_curves_and_per_class_bars(features: FeatureSet, tmp_path: Path) -> None:
    method = Staged(tiny(), features, CPU)
    method.train_epoch()
    paths = method.artifacts(tmp_path)  # PNGs, nothing else: tests/test_method_contract.py
    assert [p.name for p in paths] == ["staged_eta_masked.png", "staged_lwlrap_per_class.png"]


def test_the_tagger_learns_the_bands() -> None:
    fs = make_features(n=96)  # 8 test clips; an untrained net scores ≈ 0.5
    cfg = tiny(staged={"stages": [40, 0, 0]}, iterations_per_epoch=40, optim={"lr": 3e-3})
    method = Staged(cfg, fs, CPU)
    method.train_epoch()
    assert method.evaluate("test")["lwlrap"] > 0.85
