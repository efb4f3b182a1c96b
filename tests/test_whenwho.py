"""Tests for the WHEN/WHO method (Morfi & Stowell): MIL losses, HnH batches, modes, checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from sedsweep.config import deep_merge, validate
from sedsweep.errors import UserError
from sedsweep.features import PRESETS, FeatureSet
from sedsweep.methods.whenwho import WhenWho, WhenWhoConfig, WhenWhoNet, l2_coefficient
from sedsweep.metrics import frames_to_events
from sedsweep.nn.blocks import frame_mask
from sedsweep.nn.mil import half_and_half, max_loss, mmm_loss, noisy_or_loss

CPU = torch.device("cpu")
N_MELS = PRESETS["morfi2018"].n_mels


def make_features(
    n: int = 24, n_classes: int = 3, seed: int = 0, band: float = 3.0, strong: bool = True
) -> FeatureSet:
    """Random log-mels of 30–60 frames; each event brightens its class's 8-bin band by `band`.

    Every third clip is a negative; the first two thirds are fold 1, the rest fold 2.
    """
    params = PRESETS["morfi2018"]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 61, n)
    weak = np.zeros((n, n_classes), dtype=np.float32)
    data, times, events = [], [], []
    for i, length in enumerate(lengths):
        t = (np.arange(length) * params.hop_s).astype(np.float32)
        x = rng.normal(0.0, 1.0, (length, N_MELS)).astype(np.float32)
        clip_events = []
        for _ in range(0 if i % 3 == 0 else int(rng.integers(1, 3))):
            c = int(rng.integers(n_classes))
            on = float(rng.uniform(0.0, 0.6) * t[-1])
            off = on + float(rng.uniform(0.15, 0.35) * t[-1])
            x[(t >= on) & (t < off), 8 * c : 8 * c + 8] += band
            weak[i, c] = 1
            clip_events.append((on, off, c))
        data.append(x)
        times.append(t)
        events.append(clip_events)
    return FeatureSet(
        params=params,
        classes=[f"bird_{c}" for c in range(n_classes)],
        clip_ids=[f"clip{i}.wav" for i in range(n)],
        data=np.concatenate(data),
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        frame_times=np.concatenate(times),
        weak=weak,
        folds=np.where(np.arange(n) < 2 * n // 3, 1, 2).astype(np.int64),
        verified=np.ones(n, dtype=bool),
        durations=lengths * params.hop_s,
        events=events if strong else None,
        corpus_fingerprint="synthetic",
        key="synthetic",
    )


@pytest.fixture(scope="module")
def features() -> FeatureSet:
    """A small FeatureSet shared by the tests that do not change it."""
    return make_features()


def tiny(**overrides: Any) -> WhenWhoConfig:
    """The tiny scale with nested overrides."""
    return WhenWhoConfig.model_validate(deep_merge(WhenWho.scales["tiny"].config, overrides))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of a module's parameters by name."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[bool]:
    """Per parameter: has it changed since `before`?"""
    return [not torch.equal(before[k], v) for k, v in module.named_parameters()]


# -- MIL losses ---------------------------------------------------------------------------------
def np_bce(p: float, y: float) -> float:
    """Binary cross-entropy of one probability (numpy reference)."""
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def padded_bags(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Logits [2, 9] (float64) for a positive bag of 9 frames and a negative bag of 6 + padding."""
    logits = torch.from_numpy(np.random.default_rng(seed).normal(0, 2, (2, 9)))
    lengths = [9, 6]
    return logits, frame_mask(torch.tensor(lengths), 9), torch.tensor([1.0, 0.0]), lengths


@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (0.7, 0.0, 2.5), (0.0, 1.0, 0.2)])
def test_mmm_loss_matches_hand_computation(weights: tuple[float, float, float]) -> None:
    logits, mask, y, lengths = padded_bags()
    w_max, w_mean, w_min = weights
    expected = []
    for z, label, n in zip(logits.numpy(), y.tolist(), lengths, strict=True):
        p = 1 / (1 + np.exp(-z[:n]))
        terms = (np_bce(p.max(), label), np_bce(p.mean(), label / 2), np_bce(p.min(), 0.0))
        expected.append(w_max * terms[0] + w_mean * terms[1] + w_min * terms[2])
    loss = mmm_loss(logits, mask, y, *weights)
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    garbage = logits.masked_fill(~mask, 50.0)  # padded frames must not matter
    assert mmm_loss(garbage, mask, y, *weights).item() == pytest.approx(loss.item(), rel=1e-6)
    if weights == (1 / 3, 1 / 3, 1 / 3):  # the default
        assert mmm_loss(logits, mask, y).item() == loss.item()


def test_max_loss_is_bce_of_the_bag_maximum() -> None:
    logits, mask, y, lengths = padded_bags(1)
    expected = [
        np_bce(1 / (1 + np.exp(-z[:n].max())), label)
        for z, label, n in zip(logits.numpy(), y.tolist(), lengths, strict=True)
    ]
    assert max_loss(logits, mask, y).item() == pytest.approx(np.mean(expected), rel=1e-5)
    assert max_loss(logits.masked_fill(~mask, 50.0), mask, y).item() == pytest.approx(
        max_loss(logits, mask, y).item()
    )


def test_noisy_or_matches_numpy_and_stays_finite() -> None:
    logits, mask, y, lengths = padded_bags(2)
    expected = []
    for z, label, n in zip(logits.numpy(), y.tolist(), lengths, strict=True):
        bag = 1 - np.prod(1 - 1 / (1 + np.exp(-z[:n])))
        expected.append(np_bce(bag, label))
    assert noisy_or_loss(logits, mask, y).item() == pytest.approx(np.mean(expected), rel=1e-5)
    extreme = torch.tensor([[-60.0, -70.0, 80.0], [60.0, 70.0, -80.0]], requires_grad=True)
    loss = noisy_or_loss(extreme, torch.ones(2, 3, dtype=torch.bool), torch.tensor([1.0, 0.0]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(extreme.grad).all()


@pytest.mark.parametrize("loss_fn", [mmm_loss, max_loss])
def test_gradient_reaches_all_frames_with_mmm_only_argmax_with_max(loss_fn: Callable) -> None:
    logits, mask, y, _ = padded_bags(3)
    logits = logits.float().requires_grad_()
    loss_fn(logits, mask, y).backward()
    grad = logits.grad
    assert torch.all(grad[~mask] == 0)
    if loss_fn is mmm_loss:
        assert torch.all(grad[mask] != 0)
    else:
        argmax = logits.detach().masked_fill(~mask, -math.inf).argmax(dim=1)
        expected = torch.zeros_like(mask)
        expected[torch.arange(2), argmax] = True
        assert torch.equal(grad != 0, expected)


# -- batching -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_pos", "n_neg"), [(10, 3), (2, 9), (8, 8)])
def test_half_and_half_balances_and_covers_the_majority(n_pos: int, n_neg: int) -> None:
    pos, neg = np.arange(n_pos), 100 + np.arange(n_neg)
    out = half_and_half(pos, neg, 8, np.random.default_rng(0))
    assert len(out) == math.ceil(max(n_pos, n_neg) / 4)
    for batch in out:
        assert len(batch) == 8 and np.isin(batch, pos).sum() == 4 and np.isin(batch, neg).sum() == 4
    counts = np.bincount(np.concatenate(out), minlength=100 + n_neg)
    for side in (pos, neg):  # every item at least once; duplicates spread evenly
        assert counts[side].min() >= 1 and counts[side].max() - counts[side].min() <= 1
    with pytest.raises(ValueError, match="even batch size"):
        half_and_half(pos, neg, 7, np.random.default_rng(0))
    with pytest.raises(ValueError, match="both positive and negative"):
        half_and_half(pos, neg[:0], 8, np.random.default_rng(0))


def test_epoch_batches_hnh_and_random(features: FeatureSet) -> None:
    method = WhenWho(tiny(), features, CPU)
    train = method.splits.train
    positive = features.weak[train].any(axis=1)
    hnh = method.epoch_batches("hnh")
    assert set(np.concatenate(hnh)) == set(train)
    assert all(features.weak[b].any(axis=1).sum() == 4 for b in hnh)
    plain = np.concatenate(method.epoch_batches("random"))
    assert sorted(plain) == sorted(train) and positive.any() and not positive.all()


def test_hnh_without_negatives_is_refused(features: FeatureSet) -> None:
    fs = make_features()
    fs.weak[:] = 1
    with pytest.raises(ValueError, match="both positive and negative"):
        WhenWho(tiny(), fs, CPU)
    WhenWho(tiny(input={"when": "random"}), fs, CPU)  # random batches need no negatives


# -- networks and training modes ----------------------------------------------------------------
def test_network_shapes_prior_and_padding_independence(features: FeatureSet) -> None:
    torch.manual_seed(0)
    net = WhenWhoNet(N_MELS, 3, tiny().model, ("when", "who")).eval()
    x = torch.randn(2, 50, N_MELS)
    lengths = torch.tensor([50, 23])
    with torch.no_grad():
        both = net(x, frame_mask(lengths, 50), lengths, ("when", "who"))
        alone = net(x[1:, :23], frame_mask(lengths[1:], 23), lengths[1:], ("when", "who"))
    torch.testing.assert_close(both["when"][1, :23], alone["when"][0])
    torch.testing.assert_close(both["who"][1], alone["who"][0])
    assert both["when"].shape == (2, 50) and both["who"].shape == (2, 3)
    prior = torch.sigmoid(net.heads["who"].fc.bias)  # initialised to the paper's 0.01
    torch.testing.assert_close(prior, torch.full((3,), 0.01))


def test_l2_goes_to_kernels_as_twice_lambda(features: FeatureSet) -> None:
    method = WhenWho(tiny(mode="tied"), features, CPU)
    o = method.config.optim
    named = dict(method.models["shared"].named_parameters())
    expected = {
        "trunk.stages.0.0.0.weight": o.l2_conv,  # conv kernel
        "trunk.stages.0.0.1.weight": 0.0,  # BN scale
        "heads.when.gru.weight_ih_l0": o.l2_gru,
        "heads.when.gru.weight_hh_l0_reverse": 0.0,
        "heads.when.dense.weight": o.l2_dense,
        "heads.when.out.bias": 0.0,
        "heads.who.fc.weight": o.l2_who,
    }
    for name, lam in expected.items():
        assert l2_coefficient(name, named[name], o) == lam
    groups = method.optimisers["when"].param_groups
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["heads.when.gru.weight_ih_l0"])] == 2 * o.l2_gru
    assert id(named["heads.who.fc.weight"]) not in decay  # the WHEN optimiser owns no WHO head


def test_tied_steps_update_the_trunk_and_only_their_own_head(features: FeatureSet) -> None:
    method = WhenWho(tiny(mode="tied"), features, CPU)
    net = method.models["shared"]
    assert set(method.optimisers) == {"when", "who"}
    steps: list[str] = []
    for task, opt in method.optimisers.items():
        other = net.heads["who" if task == "when" else "when"]
        saved: dict[str, dict[str, torch.Tensor]] = {}

        def pre(opt, args, kwargs, other=other, saved=saved) -> None:
            saved["trunk"], saved["other"] = snapshot(net.trunk), snapshot(other)

        def post(opt, args, kwargs, task=task, other=other, saved=saved) -> None:
            assert all(changed(saved["trunk"], net.trunk))
            assert not any(changed(saved["other"], other))
            steps.append(task)

        opt.register_step_pre_hook(pre)
        opt.register_step_post_hook(post)
    method.train_epoch()
    n_when = len(method.epoch_batches("hnh"))
    assert steps[:n_when] == ["when"] * n_when and set(steps[n_when:]) == {"who"}


def test_separate_networks_share_nothing_and_both_learn(features: FeatureSet) -> None:
    method = WhenWho(tiny(), features, CPU)
    when, who = method.models["when"], method.models["who"]
    assert {p.data_ptr() for p in when.parameters()}.isdisjoint(
        p.data_ptr() for p in who.parameters()
    )
    assert set(when.heads) == {"when"} and set(who.heads) == {"who"}
    before_when, before_who = snapshot(when), snapshot(who)
    method.train_epoch()
    assert all(changed(before_when, when)) and all(changed(before_who, who))


@pytest.mark.parametrize("w_who", [0.0, 0.5])
def test_joint_one_optimiser_and_both_losses_contribute(features: FeatureSet, w_who: float) -> None:
    cfg = tiny(mode="joint", joint={"w_who": w_who}, optim={"l2_who": 0.0})
    method = WhenWho(cfg, features, CPU)
    net = method.models["shared"]
    assert list(method.optimisers) == ["joint"]
    owned = {id(p) for g in method.optimisers["joint"].param_groups for p in g["params"]}
    assert owned == {id(p) for p in net.parameters()}
    grads: dict[str, list[float]] = {"when": [], "who": []}

    def post(opt, args, kwargs) -> None:
        for task in grads:
            grads[task].append(sum(p.grad.abs().sum().item() for p in net.heads[task].parameters()))

    method.optimisers["joint"].register_step_post_hook(post)
    before = snapshot(net.heads["who"])
    method.train_epoch()
    assert min(grads["when"]) > 0
    if w_who == 0:
        assert max(grads["who"]) == 0 and not any(changed(before, net.heads["who"]))
    else:
        assert min(grads["who"]) > 0 and all(changed(before, net.heads["who"]))


# -- configuration ------------------------------------------------------------------------------
def test_config_defaults_are_the_papers() -> None:
    cfg = WhenWhoConfig()
    assert (cfg.mode, cfg.when_loss, cfg.batch_size, cfg.epochs) == ("separate", "mmm", 8, 200)
    assert (cfg.input.when, cfg.input.who, cfg.input.joint) == ("hnh", "random", "hnh")
    assert cfg.model.freq_pools == [5, 4, 2] and cfg.model.conv_pairs == 3
    assert (cfg.optim.lr, cfg.optim.halve_every, cfg.optim.lr_min) == (1e-5, 20, 1e-8)
    # the last fold tests, all others train: NIPS4B's 513 / 174 (folds 1 / 2) as imported
    assert (cfg.split.train_folds, cfg.split.test_folds) == (None, [-1])
    assert WhenWhoConfig.model_validate(cfg.model_dump()) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mmm": {"w_mx": 0.3}}, "unknown key 'mmm.w_mx'"),
        ({"mmm": {"w_max": -0.1}}, "key 'mmm.w_max': Input should be greater than or equal to 0"),
        ({"mmm": {"w_max": 0, "w_mean": 0, "w_min": 0}}, "at least one MMM weight"),
        ({"joint": {"w_who": -1}}, "key 'joint.w_who'"),
        ({"batch_size": 7}, "even batch_size"),
        ({"model": {"freq_pools": [5, 0]}}, "key 'model.freq_pools.1'"),
        ({"input": {"when": "balanced"}}, "key 'input.when'"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError):
        WhenWhoConfig.model_validate(data)
    with pytest.raises(UserError, match=r"^sweep\.yaml: ") as err:
        validate(WhenWhoConfig, data, where="sweep.yaml")
    assert message in str(err.value)


def test_random_inputs_allow_an_odd_batch() -> None:
    assert WhenWhoConfig(batch_size=7, input={"when": "random"}).batch_size == 7
    assert WhenWhoConfig(batch_size=7, mode="joint", input={"joint": "random"}).batch_size == 7


def test_learning_rate_halves_down_to_the_floor(features: FeatureSet) -> None:
    method = WhenWho(tiny(optim={"lr": 1e-3, "halve_every": 1, "lr_min": 3e-4}), features, CPU)
    lrs = [method.train_epoch()["lr"] for _ in range(3)]
    assert lrs == [1e-3, 5e-4, 3e-4]
    assert {g["lr"] for o in method.optimisers.values() for g in o.param_groups} == {3e-4}


# -- checkpoints, evaluation, figures, learning --------------------------------------------------
@pytest.mark.parametrize("amp", [False, True])
def test_evaluate_reports_finite_metrics(features: FeatureSet, amp: bool) -> None:
    method = WhenWho(tiny(mode="tied", amp=amp), features, CPU)
    train = method.train_epoch()
    assert {"loss", "loss_when", "loss_who", "lr"} <= set(train)
    metrics = method.evaluate("test")
    assert set(metrics) == {
        "loss",
        "when_frame_auc",
        "when_frame_auc_pos",
        "when_segment_f1",
        "when_segment_er",
        "when_segment_f1_100ms",
        "who_auc_micro",
        "who_auc_macro",
        "who_lwlrap",
        "who_ap_micro",
        "who_ap_macro",
    }
    assert all(math.isfinite(v) for v in (*train.values(), *metrics.values()))
    assert method.evaluate("val").keys() <= metrics.keys()


def test_evaluate_omits_what_a_split_cannot_define() -> None:
    fs = make_features(strong=False)
    method = WhenWho(tiny(), fs, CPU)
    assert not any(k.startswith("when_") for k in method.evaluate("test"))
    negatives = make_features()
    test = negatives.folds == 2
    negatives.weak[test] = 0
    negatives.events = [[] if t else e for t, e in zip(test, negatives.events, strict=True)]
    metrics = WhenWho(tiny(), negatives, CPU).evaluate("test")
    assert "when_frame_auc" not in metrics and "who_auc_micro" not in metrics
    assert math.isfinite(metrics["loss"])
    empty = WhenWho(tiny(split={"train_folds": [1], "test_folds": [2], "val_fraction": 0}), fs, CPU)
    assert empty.evaluate("val") == {}


def test_artifacts_draw_figure_2_for_up_to_four_clips_with_events(
    features: FeatureSet, tmp_path: Path
) -> None:
    method = WhenWho(tiny(), features, CPU)
    paths = method.artifacts(tmp_path)  # PNGs, nothing else: tests/test_method_contract.py
    assert 1 <= len(paths) <= 4
    drawn = [int(p.stem.removeprefix("whenwho_clip")) for p in paths]
    assert all(features.events[i] for i in drawn) and set(drawn) <= set(method.splits.test)


def test_when_learns_to_find_events() -> None:
    fs = make_features(n=48, seed=1)
    method = WhenWho(tiny(), fs, CPU)
    for _ in range(8):
        method.train_epoch()
    assert method.evaluate("test")["when_frame_auc"] > 0.8


def test_frame_metrics_leave_out_clips_without_a_strong_annotation():
    """Issue 16: a clip with weak labels only (NIPS4B's 13 unannotated recordings, a DCASE
    weak set) was scored as a clip without events, every detection in it a false alarm. Only
    clips whose annotation is complete are frame-scored; how many were left out is reported.
    Checked against sklearn's ROC AUC over the frames of the annotated clips."""
    from sklearn.metrics import roc_auc_score

    from sedsweep.methods.evaluation import detection_candidates
    from sedsweep.metrics import defined_metrics

    from .reference import sed_eval_segment_scores

    fs = make_features(n=12, seed=4)
    idx = np.arange(len(fs))
    rng = np.random.default_rng(5)
    frames = [rng.uniform(size=len(fs.times(i))) for i in idx]

    def any_event(i: int) -> np.ndarray:  # by hand: frame centre inside some event
        t = fs.times(i)
        return np.array([any(on <= x < off for on, off, _ in fs.events[i]) for x in t])

    fs.strong = np.ones(len(fs), dtype=bool)
    fs.strong[[1, 4, 7]] = False
    got = defined_metrics(detection_candidates(fs, idx, frames, any_event=True, prefix="when_"))
    kept = [i for i in idx if fs.strong[i]]
    expected = roc_auc_score(
        np.concatenate([any_event(i) for i in kept]), np.concatenate([frames[i] for i in kept])
    )
    assert got["when_frame_auc"] == pytest.approx(expected)
    assert got["when_strong_excluded"] == 3.0
    fs.strong = None  # every clip annotated: all scored, nothing reported as left out
    every = defined_metrics(detection_candidates(fs, idx, frames, any_event=True))
    assert every["frame_auc"] == pytest.approx(
        roc_auc_score(np.concatenate([any_event(i) for i in idx]), np.concatenate(frames))
    )
    assert "strong_excluded" not in every and every["frame_auc"] != pytest.approx(expected)
    # issue 31: the frame AUC inside the clips that hold an event, and F1 on 100 ms segments
    held = [i for i in idx if any_event(i).any()]
    assert 0 < len(held) < len(idx)
    assert every["frame_auc_pos"] == pytest.approx(
        roc_auc_score(np.concatenate([any_event(i) for i in held]),
                      np.concatenate([frames[i] for i in held]))
    )  # fmt: skip
    reference = [(float(fs.durations[i]), [(a, b, 0) for a, b, _ in fs.events[i]]) for i in idx]
    estimated = [(d, frames_to_events(frames[i] >= 0.5, fs.times(i), fs.params.hop_s))
                 for i, (d, _) in zip(idx, reference, strict=True)]  # fmt: skip
    for key, length in (("segment_f1", 1.0), ("segment_f1_100ms", 0.1)):
        want = sed_eval_segment_scores(reference, estimated, length, 1)["f1"]
        assert every[key] == pytest.approx(want)
