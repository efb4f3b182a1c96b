"""Tests for 2APAE (Deshmukh, Raj & Singh): poolings, decoder, selection, checkpoints, CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.nn.functional import binary_cross_entropy_with_logits as bce_logits

from sedsweep.config import deep_merge, validate
from sedsweep.errors import UserError
from sedsweep.features import PRESETS, FeatureSet
from sedsweep.methods import mtl_attention as mtl
from sedsweep.methods.mtl_attention import MtlAttention, MtlAttentionConfig, MtlAttentionNet
from sedsweep.nn.pooling import (
    STEP2_GAIN,
    AtrousAttention,
    GlobalPooling,
    TwoStepAttention,
    gwrp_log_odds,
    make_pooling,
)

CPU = torch.device("cpu")
POOLINGS = ["two_step", "gap", "gmp", "gwrp", "atrous"]
T, F, K = 40, 16, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_features(n: int = 32, seed: int = 0, length: int | None = None) -> FeatureSet:
    """Fixed-length random log-mels (T × F); each event brightens its class's band by 3.

    Every clip has one or two events; clips go round-robin to folds 1–4. With `length` set,
    the last clip is that many frames long instead of T.
    """
    params = PRESETS["deshmukh2020"]
    rng = np.random.default_rng(seed)
    lengths = np.full(n, T)
    if length is not None:
        lengths[-1] = length
    weak = np.zeros((n, K), dtype=np.float32)
    data, times, events = [], [], []
    for i, frames in enumerate(lengths):
        t = (np.arange(frames) * params.hop_s).astype(np.float32)
        x = rng.normal(0.0, 1.0, (frames, F)).astype(np.float32)
        clip_events = []
        for c in rng.choice(K, int(rng.integers(1, 3)), replace=False):
            on = float(rng.uniform(0.0, 0.6) * t[-1])
            off = on + float(rng.uniform(0.15, 0.35) * t[-1])
            x[(t >= on) & (t < off), 5 * c : 5 * c + 5] += 3.0
            weak[i, c] = 1
            clip_events.append((on, off, int(c)))
        data.append(x)
        times.append(t)
        events.append(clip_events)
    return FeatureSet(
        params=params,
        classes=[f"event_{c}" for c in range(K)],
        clip_ids=[f"clip{i}.wav" for i in range(n)],
        data=np.concatenate(data),
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        frame_times=np.concatenate(times),
        weak=weak,
        folds=(np.arange(n) % 4 + 1).astype(np.int64),
        verified=np.ones(n, dtype=bool),
        durations=lengths * params.hop_s,
        events=events,
        corpus_fingerprint="synthetic",
        key="synthetic",
    )


@pytest.fixture(scope="module")
def features() -> FeatureSet:
    """A small FeatureSet shared by the tests that do not change it."""
    return make_features()


def tiny(**overrides: Any) -> MtlAttentionConfig:
    """The tiny scale with nested overrides."""
    return MtlAttentionConfig.model_validate(
        deep_merge(MtlAttention.scales["tiny"].config, overrides)
    )


def net(**overrides: Any) -> MtlAttentionNet:
    """A tiny network for K classes of T × F maps (seeded)."""
    torch.manual_seed(0)
    return MtlAttentionNet(K, T, F, tiny(**overrides))


# -- poolings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["pointwise", "axis_linear"])
def test_two_step_weights_sum_to_one_over_mel_bins_then_time(form: str) -> None:
    torch.manual_seed(0)
    pooling = TwoStepAttention(K, T, F, form)
    for param in pooling.parameters():  # non-uniform attention whatever the initialisation
        torch.nn.init.normal_(param)
    out = pooling(torch.randn(2, K, T, F) * 3)
    assert out.att_f.shape == (2, K, T, F) and out.att_t.shape == (2, K, T)
    torch.testing.assert_close(out.att_f.sum(dim=3), torch.ones(2, K, T))
    torch.testing.assert_close(out.att_t.sum(dim=2), torch.ones(2, K))
    assert out.logits.shape == (2, K) and out.frame_logits.shape == (2, K, T)
    p = torch.sigmoid(out.logits)
    assert torch.all((p > 0) & (p < 1))


def test_pass_through_starts_both_forms_as_the_same_pooling() -> None:
    """At the pass-through init both forms compute p = mean_t σ(8·(mean_f σ(z) − ½)) (by hand
    below, numpy); PyTorch's default init (the named variant) computes something else."""
    torch.manual_seed(0)
    z = torch.randn(3, K, T, F) * 2
    p1 = (1 / (1 + np.exp(-z.numpy().astype(np.float64)))).mean(axis=3)
    expected = (1 / (1 + np.exp(-STEP2_GAIN * (p1 - 0.5)))).mean(axis=2)
    for form in ("pointwise", "axis_linear"):
        with torch.no_grad():
            out = TwoStepAttention(K, T, F, form)(z)
            other = TwoStepAttention(K, T, F, form, "torch_default")(z)
        np.testing.assert_allclose(torch.sigmoid(out.logits).double().numpy(), expected,
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(torch.sigmoid(out.step1).double().numpy(), p1, rtol=1e-5)
        assert not np.allclose(torch.sigmoid(other.logits).double().numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("name", POOLINGS)
def test_outputs_stay_probabilities_for_extreme_logits(name: str) -> None:
    torch.manual_seed(0)
    pooling = make_pooling(name, K, T, F)  # train mode: atrous BN normalises the extremes
    signs = torch.where(torch.rand(4, K, T, F) < 0.5, -1.0, 1.0)
    signs[2], signs[3] = 1.0, -1.0  # all maps saturated at p = 1 and at p = 0
    z = (1e4 * signs).requires_grad_()
    out = pooling(z)
    for log_odds in (out.logits, out.frame_logits):  # finite log-odds ⇔ p strictly in (0, 1)
        assert torch.isfinite(log_odds).all()
        p = torch.sigmoid(log_odds)
        assert torch.all((p >= 0) & (p <= 1))
    loss = bce_logits(out.logits, (torch.rand(4, K) < 0.5).float())
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", ["two_step", "atrous", "gap"])
def test_clip_probability_is_the_time_attention_mean_of_the_frame_map(name: str) -> None:
    torch.manual_seed(0)
    pooling = make_pooling(name, K, T, F).eval()
    for param in pooling.parameters():
        torch.nn.init.normal_(param, std=0.5)
    with torch.no_grad():
        out = pooling(torch.randn(2, K, T, F))
    weights = torch.full((2, K, T), 1 / T) if out.att_t is None else out.att_t
    expected = (weights * torch.sigmoid(out.frame_logits)).sum(dim=2)
    torch.testing.assert_close(torch.sigmoid(out.logits), expected)


def test_atrous_outputs_are_true_probabilities_not_capped_at_half() -> None:
    pooling = AtrousAttention(K).eval()
    z = torch.randn(2, K, T, F)
    with torch.no_grad():
        pooling.cla.weight.zero_()
        for bias, expect in ((20.0, lambda p: p > 0.99), (-20.0, lambda p: p < 0.01)):
            pooling.cla.bias.fill_(bias)
            out = pooling(z)
            assert torch.all(expect(torch.sigmoid(out.logits)))
            assert torch.all(expect(torch.sigmoid(out.frame_logits)))
    torch.testing.assert_close(out.att_f.sum(dim=3), torch.ones(2, K, T))
    torch.testing.assert_close(out.att_t.sum(dim=2), torch.ones(2, K))


def test_atrous_frame_factorisation_equals_attention_over_time_and_frequency() -> None:
    torch.manual_seed(1)
    pooling = AtrousAttention(K).eval()
    z = torch.randn(2, K, T, F)
    with torch.no_grad():
        out = pooling(z)
        h = pooling.context(z)
        att = torch.softmax(pooling.att(h).flatten(2), dim=2)
        expected = (torch.sigmoid(pooling.cla(h)).flatten(2) * att).sum(dim=2)
    torch.testing.assert_close(torch.sigmoid(out.logits), expected)


def np_gwrp(z: np.ndarray, r: float) -> np.ndarray:
    """GWRP by sorting σ(z) over the trailing T × F values with numpy (float64)."""
    p = 1 / (1 + np.exp(-z.reshape(*z.shape[:2], -1)))
    ranked = -np.sort(-p, axis=-1)
    w = r ** np.arange(ranked.shape[-1])
    return (ranked * w).sum(axis=-1) / w.sum()


def test_gwrp_between_gmp_and_gap_and_equal_to_numpy() -> None:
    z = torch.randn(2, K, T, F, dtype=torch.float64) * 3
    gmp, gap = GlobalPooling("gmp")(z).logits, GlobalPooling("gap")(z).logits
    torch.testing.assert_close(gwrp_log_odds(z, 1e-12, 2), gmp)
    torch.testing.assert_close(gwrp_log_odds(z, 1.0, 2), gap)
    torch.testing.assert_close(torch.sigmoid(gmp), torch.sigmoid(z).amax(dim=(2, 3)))
    torch.testing.assert_close(torch.sigmoid(gap), torch.sigmoid(z).mean(dim=(2, 3)))
    for r in (0.9, 0.9998):
        ours = torch.sigmoid(GlobalPooling("gwrp", r)(z).logits).numpy()
        np.testing.assert_allclose(ours, np_gwrp(z.numpy(), r), rtol=1e-10)


def test_an_unknown_pooling_is_refused_not_treated_as_gwrp() -> None:
    with pytest.raises(ValueError, match="unknown global pooling 'mean'"):
        GlobalPooling("mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known: gap, gmp, gwrp"):
        make_pooling("avg", K, T, F)  # type: ignore[arg-type]


def test_axis_linear_fixes_the_clip_length_pointwise_does_not() -> None:
    z = torch.randn(1, K, T + 7, F)
    with pytest.raises(ValueError, match=f"axis_linear was built for {T} frames but got {T + 7}"):
        TwoStepAttention(K, T, F, "axis_linear")(z)
    assert TwoStepAttention(K, T, F, "pointwise")(z).frame_logits.shape == (1, K, T + 7)
    x = torch.randn(2, T + 7, F)
    assert net(two_step="pointwise")(x)[0].logits.shape == (2, K)
    with pytest.raises(ValueError, match="two_step=pointwise for other lengths"):
        net(two_step="axis_linear")(x)


def test_variable_length_clips_are_refused_at_build() -> None:
    with pytest.raises(ValueError, match="clips of one length"):
        MtlAttention(tiny(two_step="axis_linear"), make_features(length=T - 5), CPU)


# -- decoder and the MTL loss -------------------------------------------------------------------
def test_alpha_zero_builds_and_runs_no_decoder(features: FeatureSet, monkeypatch) -> None:
    calls = []
    forward = mtl.Decoder.forward
    monkeypatch.setattr(mtl.Decoder, "forward", lambda self, h: calls.append(1) or forward(self, h))
    method = MtlAttention(tiny(mtl={"alpha": 0.0}), features, CPU)
    assert method.model.decoder is None
    assert not any(n.startswith("decoder.") for n, _ in method.model.named_parameters())
    train = method.train_epoch()
    assert calls == [] and "loss_mse" not in train and train["loss"] == train["loss_bce"]
    assert "loss_mse" not in method.evaluate("val")
    method = MtlAttention(tiny(mtl={"alpha": 0.01}), features, CPU)
    train = method.train_epoch()
    assert calls and train["loss"] == pytest.approx(train["loss_bce"] + 0.01 * train["loss_mse"])


def test_mse_term_trains_decoder_and_encoder() -> None:
    model = net(mtl={"alpha": 0.01})
    x = torch.randn(2, T, F)
    recon = model(x)[1]
    torch.nn.functional.mse_loss(recon, x).backward()
    for part in (model.encoder, model.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.pooling.parameters())  # the MSE path skips them


def test_reconstruction_can_be_negative() -> None:
    model = net(mtl={"alpha": 0.01})
    target = torch.randn(4, T, F)  # z-scored log-mels are negative about half the time
    opt = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(target)[1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        recon = model(target)[1]
    assert recon.shape == target.shape
    assert (recon < 0).float().mean() > 0.2 and (recon > 0).any()


# -- training, selection, checkpoints -----------------------------------------------------------
def test_test_fold_is_never_used_for_selection(features: FeatureSet, monkeypatch) -> None:
    method = MtlAttention(tiny(epochs=3), features, CPU)
    s, folds = method.splits, features.folds
    assert set(folds[s.train]) == {1, 2} and set(folds[s.val]) == {3} and set(folds[s.test]) == {4}
    seen: list[np.ndarray] = []
    predict = method._predict
    monkeypatch.setattr(method, "_predict", lambda m, idx: seen.append(idx) or predict(m, idx))
    scores = []
    for _ in range(3):
        method.train_epoch()
        scores.append(method.evaluate("val")["ap_micro"])
    assert seen and all(np.array_equal(idx, s.val) for idx in seen)
    assert method.selected_epoch == 1 + int(np.argmax(scores))
    seen.clear()
    assert method.evaluate("test")["selected_epoch"] == method.selected_epoch
    assert len(seen) == 1 and np.array_equal(seen[0], s.test)


def test_plateau_schedule_and_selection_follow_the_monitor(
    features: FeatureSet, monkeypatch
) -> None:
    scores = iter([0.2, 0.5, 0.4, 0.4, 0.3])
    for plateau, expected_lr in ((True, 2.5e-4), (False, 1e-3)):
        cfg = tiny(monitor="ap_macro", optim={"plateau": plateau, "patience": 0, "factor": 0.5})
        method = MtlAttention(cfg, features, CPU)
        monkeypatch.setattr(method, "evaluate", lambda split: {"ap_macro": next(scores)})
        for _ in range(4 if plateau else 1):
            method.train_epoch()
        assert method.optimiser.param_groups[0]["lr"] == expected_lr
        assert method.selected_epoch == (2 if plateau else 1)


def test_test_metrics_come_from_the_selected_weights(features: FeatureSet) -> None:
    method = MtlAttention(tiny(epochs=2), features, CPU)
    method.train_epoch()
    first = method.evaluate("test")
    method.best = math.inf  # nothing later can be selected
    method.train_epoch()
    method._memo.clear()  # recompute, do not reuse the first answer
    assert method.selected_epoch == 1 and method.evaluate("test") == first
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            method.model.state_dict().values(), method.selected.state_dict().values(), strict=True
        )
    )


@pytest.mark.parametrize(
    ("pooling", "two_step", "amp"),
    [
        *((p, "pointwise", False) for p in POOLINGS),
        ("two_step", "axis_linear", False),
        ("two_step", "pointwise", True),
        ("atrous", "pointwise", True),
    ],
)
def test_evaluate_reports_finite_metrics(
    features: FeatureSet, pooling: str, two_step: str, amp: bool
) -> None:
    method = MtlAttention(tiny(pooling=pooling, two_step=two_step, amp=amp), features, CPU)
    train = method.train_epoch()
    assert {"loss", "loss_bce", "loss_mse", "lr"} == set(train)
    metrics = method.evaluate("test")
    assert set(metrics) == {
        "loss", "loss_bce", "loss_mse", "ap_micro", "ap_macro", "auc_micro", "auc_macro",
        "lwlrap", "frame_auc", "frame_auc_pos", "segment_f1", "segment_er", "segment_f1_100ms",
        "selected_epoch",
    }  # fmt: skip
    assert all(math.isfinite(v) for v in (*train.values(), *metrics.values()))
    assert set(method.evaluate("val")) == set(metrics) - {"selected_epoch"}


def test_two_step_learns_to_tag_and_locate_events() -> None:
    fs = make_features(n=64, seed=1)
    method = MtlAttention(tiny(optim={"lr": 3e-3}, batch_size=4), fs, CPU)
    for _ in range(10):
        method.train_epoch()
    metrics = method.evaluate("test")
    assert metrics["ap_macro"] > 0.8 and metrics["frame_auc"] > 0.7


@pytest.mark.parametrize("alpha", [0.0, 0.001])
def test_artifacts_draw_figure_3(features: FeatureSet, tmp_path: Path, alpha: float) -> None:
    method = MtlAttention(tiny(mtl={"alpha": alpha}), features, CPU)
    paths = method.artifacts(tmp_path)  # PNGs, nothing else: tests/test_method_contract.py
    assert len(paths) == mtl.N_FIGURES


# -- configuration and the command line ---------------------------------------------------------
def test_config_defaults_are_the_papers() -> None:
    cfg = MtlAttentionConfig()
    assert (cfg.optim.lr, cfg.batch_size, cfg.mtl.alpha) == (1e-3, 24, 0.001)
    assert (cfg.pooling, cfg.two_step, cfg.gwrp_r, cfg.monitor) == (
        "two_step", "axis_linear", 0.9998, "ap_micro",
    )  # fmt: skip
    assert cfg.two_step_init == "pass_through"  # the paper gives none: a choice, documented
    assert cfg.model.channels == (32, 64, 128, 256) and cfg.optim.plateau
    split = cfg.split
    # the last fold tests, the one before validates, the rest train: 1–2 / 3 / 4 on the
    # 4-fold 2APAE remix, every fold of any other corpus (tests/test_splits.py)
    assert (split.train_folds, split.val_folds, split.test_folds) == (None, [-2], [-1])
    assert tiny().model.channels == (4, 8, 16, 32)
    for scale in MtlAttention.scales.values():
        assert len(scale.corpus["snr_db"]) == 1  # training takes exactly one corpus


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mtl": {"alpha": -0.1}}, "key 'mtl.alpha': Input should be greater than or equal to 0"),
        ({"pooling": "mean"}, "key 'pooling'"),
        ({"two_step": "linear"}, "key 'two_step'"),
        ({"gwrp_r": 0}, "key 'gwrp_r'"),
        ({"model": {"widht": 2}}, "unknown key 'model.widht'"),
        ({"model": {"width": 0}}, "key 'model.width'"),
        ({"monitor": "loss"}, "key 'monitor'"),
        ({"optim": {"factor": 1.0}}, "key 'optim.factor'"),
        ({"split": {"val_fraction": 0.0}}, "key 'split': Value error, model selection needs"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError):
        MtlAttentionConfig.model_validate(data)
    with pytest.raises(UserError, match=r"^sweep\.yaml: ") as err:
        validate(MtlAttentionConfig, data, where="sweep.yaml")
    assert message in str(err.value)
