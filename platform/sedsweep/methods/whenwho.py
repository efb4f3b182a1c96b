"""Morfi & Stowell (2018), *Deep learning on low-resource datasets*: WHEN and WHO networks.

WHEN detects "any event" frame by frame, trained from weak labels with a MIL loss (MMM by
default); WHO tags the clip. Both share a conv trunk design; they are trained separately, jointly
(one trunk, weighted sum of losses) or with tied weights (one trunk, alternating task passes),
each task fed Half-and-Half (balanced) or plain random batches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce_logits

from sedsweep.config import Strict
from sedsweep.features import FeatureSet
from sedsweep.methods.base import (
    Method,
    MethodConfig,
    Predictions,
    Scale,
    SplitConfig,
    autocast,
    batches,
    logit,
    save_figure,
)
from sedsweep.methods.evaluation import (
    DETECTION,
    TAGGING,
    detection_candidates,
    names,
    split_chance,
    tagging_candidates,
)
from sedsweep.metrics import defined_metrics
from sedsweep.nn.blocks import FreqPoolCNN, frame_mask, masked_mean, packed_rnn
from sedsweep.nn.mil import half_and_half, max_loss, mmm_loss, noisy_or_loss

Input = Literal["hnh", "random"]
N_FIGURES = 4


# -- config ------------------------------------------------------------------------------------
class MMMWeights(Strict):
    """Weights of the max, mean and min terms of the MMM loss (eq. 5)."""

    w_max: float = Field(default=1 / 3, ge=0)
    w_mean: float = Field(default=1 / 3, ge=0)
    w_min: float = Field(default=1 / 3, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> MMMWeights:
        if self.w_max + self.w_mean + self.w_min <= 0:
            raise ValueError("at least one MMM weight must be positive")
        return self


class InputConfig(Strict):
    """Batch type per task: 'hnh' (Half-and-Half, balanced) or 'random'."""

    when: Input = Field(default="hnh", description="WHEN batches (separate, tied)")
    who: Input = Field(default="random", description="WHO batches (separate, tied)")
    joint: Input = Field(default="hnh", description="the shared batches of joint training")


class JointConfig(Strict):
    """Loss weights of joint training: w_when·L_WHEN + w_who·L_WHO."""

    w_when: float = Field(default=0.5, ge=0)
    w_who: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> JointConfig:
        if self.w_when + self.w_who <= 0:
            raise ValueError("w_when and w_who must not both be zero")
        return self


class ModelConfig(Strict):
    """Trunk and head sizes (Tables 1 and 2 of the paper)."""

    channels: int = Field(default=64, ge=1, description="feature maps of every conv layer")
    freq_pools: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [5, 4, 2],
        min_length=1,
        description="max-pool size over frequency after each conv pair; one entry per pair",
    )
    gru_units: int = Field(default=64, ge=1, description="units per direction of each BiGRU")
    gru_layers: int = Field(default=2, ge=1)
    dense_units: int = Field(default=64, ge=1, description="time-distributed dense (ReLU)")
    who_bias_prior: float = Field(default=0.01, gt=0, lt=1, description="WHO bias = logit(·)")

    @property
    def conv_pairs(self) -> int:
        """Number of [Conv → BN → ReLU] × 2 stages (one per frequency pool)."""
        return len(self.freq_pools)


class OptimConfig(Strict):
    """Adam with a halving schedule and Keras-style L2 kernel penalties λ·Σw²."""

    lr: float = Field(default=1e-5, gt=0)
    halve_every: int = Field(default=20, ge=1, description="epochs between lr halvings")
    lr_min: float = Field(default=1e-8, gt=0, description="the schedule's floor")
    l2_conv: float = Field(default=1e-3, ge=0)
    l2_gru: float = Field(default=1e-2, ge=0, description="BiGRU input kernels")
    l2_dense: float = Field(default=1e-2, ge=0, description="WHEN time-distributed dense kernels")
    l2_who: float = Field(default=1e-3, ge=0, description="WHO dense kernel")

    @model_validator(mode="after")
    def _floor_below_lr(self) -> OptimConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min:g}) must be ≤ lr ({self.lr:g})")
        return self


class WhenWhoConfig(MethodConfig):
    """WHEN/WHO settings; defaults are the paper's (NIPS4B: train fold 1, test fold 2)."""

    mode: Literal["separate", "joint", "tied"] = "separate"
    when_loss: Literal["mmm", "max", "noisy_or"] = "mmm"
    mmm: MMMWeights = Field(default_factory=MMMWeights)
    input: InputConfig = Field(default_factory=InputConfig)
    joint: JointConfig = Field(default_factory=JointConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    epochs: int = Field(
        default=200, ge=1, description="lr 1e-5 halved every 20 epochs reaches 1e-8 after ~200"
    )
    split: SplitConfig = Field(
        default_factory=lambda: SplitConfig(test_folds=[-1], val_fraction=0.15)
    )

    @property
    def inputs(self) -> list[Input]:
        """The batch types this mode uses."""
        i = self.input
        return [i.joint] if self.mode == "joint" else [i.when, i.who]

    @model_validator(mode="after")
    def _even_hnh_batches(self) -> WhenWhoConfig:
        if "hnh" in self.inputs and self.batch_size % 2:
            raise ValueError(f"Half-and-Half input needs an even batch_size, not {self.batch_size}")
        return self


# -- networks ----------------------------------------------------------------------------------
class WhenHead(nn.Module):
    """WHEN: reshape → BiGRU × layers → time-distributed Dense(ReLU) → Dense(1): frame logits."""

    def __init__(self, in_features: int, m: ModelConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(
            in_features, m.gru_units, m.gru_layers, batch_first=True, bidirectional=True
        )
        self.dense = nn.Linear(2 * m.gru_units, m.dense_units)
        self.out = nn.Linear(m.dense_units, 1)

    def forward(self, h: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        """Frame logits [B, T] from trunk features [B, C, T, F']."""
        b, c, t, f = h.shape
        seq = h.permute(0, 2, 1, 3).reshape(b, t, c * f).float()  # fp32 GRU unless autocast casts
        seq = packed_rnn(self.gru, seq, lengths)
        return self.out(torch.relu(self.dense(seq))).squeeze(-1)


class WhoHead(nn.Module):
    """WHO: global average pooling over valid frames and bins → Dense(#classes): clip logits."""

    def __init__(self, channels: int, n_classes: int, prior: float) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, n_classes)
        nn.init.constant_(self.fc.bias, math.log(prior / (1 - prior)))

    def forward(self, h: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        """Clip logits [B, n_classes] from trunk features [B, C, T, F']."""
        return self.fc(masked_mean(h.float(), mask[:, None, :, None], (2, 3)))


class WhenWhoNet(nn.Module):
    """A conv trunk with a WHEN head, a WHO head, or both (hard parameter sharing)."""

    def __init__(self, n_mels: int, n_classes: int, m: ModelConfig, tasks: tuple[str, ...]):
        super().__init__()
        self.trunk = FreqPoolCNN(n_mels, m.channels, m.freq_pools)
        heads = {
            "when": lambda: WhenHead(m.channels * self.trunk.out_bins, m),
            "who": lambda: WhoHead(m.channels, n_classes, m.who_bias_prior),
        }
        self.heads = nn.ModuleDict({t: heads[t]() for t in tasks})

    def forward(
        self, x: Tensor, mask: Tensor, lengths: Tensor, tasks: tuple[str, ...]
    ) -> dict[str, Tensor]:
        """Logits of the requested heads for log-mel input [B, T, F]."""
        h = self.trunk(x, mask)
        return {t: self.heads[t](h, mask, lengths) for t in tasks}


def l2_coefficient(name: str, param: Tensor, o: OptimConfig) -> float:
    """The Keras-style L2 λ of a WhenWhoNet parameter: kernels only (Tables 1–2), not biases/BN."""
    if param.ndim == 4 and name.startswith("trunk."):
        return o.l2_conv
    if name.startswith("heads.when.gru.weight_ih"):
        return o.l2_gru
    if param.ndim == 2 and name.startswith(("heads.when.dense.", "heads.when.out.")):
        return o.l2_dense
    if param.ndim == 2 and name.startswith("heads.who."):
        return o.l2_who
    return 0.0


@dataclass(frozen=True)
class _Pass:
    """One pass over the training set per epoch: which heads, which batches, which optimiser."""

    tasks: tuple[str, ...]
    input: Input
    optimiser: str


# -- the method --------------------------------------------------------------------------------
class WhenWho(Method):
    """WHEN/WHO networks with MMM loss and Half-and-Half batches (Morfi & Stowell 2018).

    Input: log-mel clips z-scored per mel bin with training-split statistics (as the published
    code does), kept on the device as one zero-padded tensor; padded frames are masked in the
    trunk, the BiGRU (packed), the MIL pooling, the WHO average pooling and the metrics.

    L2: Keras adds λ·Σw² to the loss, whose gradient 2λw is what torch.optim.Adam's coupled
    ``weight_decay`` adds, so each kernel group gets weight_decay = 2λ (biases and BN: none).

    Modes: ``separate`` = two networks and optimisers; ``joint`` = one trunk, one optimiser,
    loss w_when·L_WHEN + w_who·L_WHO; ``tied`` = one trunk, per epoch a WHEN pass then a WHO
    pass, with two optimisers (trunk + own head) like two Keras models sharing layers. The
    reported ``loss`` is the joint objective in joint mode and L_WHEN + L_WHO otherwise.

    Scales: the paper's lr 1e-5 (halved every 20 epochs) needs ~200 epochs on GPU; it is far
    too small for the short CPU scales, so ``tiny`` and ``small`` raise it to 1e-3.
    """

    name = "whenwho"
    Config = WhenWhoConfig
    config: WhenWhoConfig
    feature_preset = "morfi2018"
    synthetic_kind = "lowres"
    eval_batch = 64
    scales: ClassVar[dict[str, Scale]] = {
        "tiny": Scale(
            config={
                "model": {"channels": 8, "gru_units": 8, "dense_units": 8},
                "epochs": 2,
                "batch_size": 8,
                "optim": {"lr": 1e-3},
            },
            corpus={"scale": "tiny"},
        ),
        "small": Scale(
            config={
                "model": {"channels": 32, "gru_units": 32, "dense_units": 32},
                "epochs": 30,
                "optim": {"lr": 1e-3, "halve_every": 10},
            },
            corpus={"scale": "small"},
        ),
        "paper": Scale(),
    }

    def __init__(self, config: WhenWhoConfig, features: FeatureSet, device: torch.device) -> None:
        super().__init__(config, features, device)
        self._load_data(features)
        self.when_loss: Callable[[Tensor, Tensor, Tensor], Tensor] = {
            "mmm": functools.partial(mmm_loss, **config.mmm.model_dump()),
            "max": max_loss,
            "noisy_or": noisy_or_loss,
        }[config.when_loss]
        inp, both = config.input, ("when", "who")
        if config.mode == "joint":
            self.passes = [_Pass(both, inp.joint, "joint")]
        else:
            self.passes = [_Pass(("when",), inp.when, "when"), _Pass(("who",), inp.who, "who")]
        sizes = (features.n_mels, len(features.classes), config.model)
        names = [("when",), ("who",)] if config.mode == "separate" else [both]
        self.models = nn.ModuleDict(
            {"shared" if len(t) == 2 else t[0]: WhenWhoNet(*sizes, tasks=t) for t in names}
        ).to(device)
        self.optimisers = {
            p.optimiser: torch.optim.Adam(self._param_groups(p.tasks), lr=config.optim.lr)
            for p in self.passes
        }
        self.lr = config.optim.lr
        if "hnh" in config.inputs:  # fail now, not at the first epoch
            half_and_half(*self._bags(), config.batch_size, np.random.default_rng(0))

    # -- data --------------------------------------------------------------------------------
    def _load_data(self, fs: FeatureSet) -> None:
        """Z-score every clip with training statistics into one padded device tensor."""
        self.x = self.zscored_inputs()
        self.lengths_cpu = torch.from_numpy(fs.lengths.astype(np.int64))
        self.lengths = self.lengths_cpu.to(self.device)
        self.weak = torch.from_numpy(fs.weak.astype(np.float32)).to(self.device)
        self.bag_labels = fs.weak.max(axis=1) > 0  # WHEN: any class present
        self.bag = torch.from_numpy(self.bag_labels.astype(np.float32)).to(self.device)

    def _bags(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative training clips (WHEN bag labels)."""
        train = self.splits.train
        return train[self.bag_labels[train]], train[~self.bag_labels[train]]

    def epoch_batches(self, kind: Input) -> list[np.ndarray]:
        """This epoch's batches of training clips: Half-and-Half or plain shuffled."""
        if kind == "hnh":
            return half_and_half(*self._bags(), self.config.batch_size, self.rng)
        return list(batches(self.splits.train, self.config.batch_size, self.rng))

    # -- model plumbing ----------------------------------------------------------------------
    def _net(self, task: str) -> WhenWhoNet:
        """The network that holds `task`'s head."""
        return self.models[task] if self.config.mode == "separate" else self.models["shared"]

    def _param_groups(self, tasks: tuple[str, ...]) -> list[dict[str, Any]]:
        """Adam groups over the trunk and the `tasks` heads, weight_decay = 2λ per L2 λ."""
        net, groups = self._net(tasks[0]), {}
        heads = tuple(f"heads.{t}." for t in tasks)
        for name, param in net.named_parameters():
            if name.startswith(("trunk.", *heads)):
                groups.setdefault(l2_coefficient(name, param, self.config.optim), []).append(param)
        return [{"params": ps, "weight_decay": 2 * lam} for lam, ps in groups.items()]

    def _forward(
        self, groups: list[tuple[WhenWhoNet, tuple[str, ...]]], idx: np.ndarray
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Logits and per-task losses of the batch `idx` through (network, heads) groups."""
        lengths = self.lengths_cpu[idx]
        it = torch.from_numpy(idx).to(self.device)
        longest = int(lengths.max())
        x, mask = self.x.take(idx, longest), frame_mask(self.lengths[it], longest)
        with autocast(self.device, self.config.amp):
            out = {k: v for net, tasks in groups for k, v in net(x, mask, lengths, tasks).items()}
        out = {k: v.float() for k, v in out.items()}
        losses = {}
        if "when" in out:
            losses["when"] = self.when_loss(out["when"], mask, self.bag[it])
        if "who" in out:
            losses["who"] = bce_logits(out["who"], self.weak[it])
        return out, losses

    def _objective(self, losses: dict[str, Any]) -> Any:
        """Joint: w_when·L_WHEN + w_who·L_WHO; otherwise the sum of the task losses present."""
        if self.config.mode != "joint":
            return sum(losses.values())
        return self.config.joint.w_when * losses["when"] + self.config.joint.w_who * losses["who"]

    # -- training ----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """One epoch: each pass (see class docstring) over its own batches of the train split."""
        o = self.config.optim
        self.lr = max(o.lr * 0.5 ** (self.epoch // o.halve_every), o.lr_min)
        history: dict[str, list[Tensor]] = {"when": [], "who": []}
        for p in self.passes:
            net, opt = self._net(p.tasks[0]), self.optimisers[p.optimiser]
            net.train()
            for group in opt.param_groups:
                group["lr"] = self.lr
            for idx in self.epoch_batches(p.input):
                _, losses = self._forward([(net, p.tasks)], idx)
                opt.zero_grad(set_to_none=True)
                self._objective(losses).backward()
                opt.step()
                for task, value in losses.items():
                    history[task].append(value.detach())
        self.epoch += 1
        means = {k: torch.stack(v).mean().item() for k, v in history.items()}
        return {
            "loss": float(self._objective(means)),
            "loss_when": means["when"],
            "loss_who": means["who"],
            "lr": self.lr,
        }

    # -- evaluation --------------------------------------------------------------------------
    def _predict(self, idx: np.ndarray) -> Predictions:
        """Per clip: WHEN frame probabilities ('when', [T_i]) and WHO probabilities ('who',
        [C]); mean per-bag losses ('when', 'who')."""
        groups = [(self._net("when"), ("when",)), (self._net("who"), ("who",))]
        if self.config.mode != "separate":
            groups = [(self.models["shared"], ("when", "who"))]
        self.models.eval()

        def step(batch: np.ndarray) -> tuple[dict[str, Any], dict[str, Tensor]]:
            out, losses = self._forward(groups, batch)
            probs = torch.sigmoid(out["when"]).cpu().numpy()
            lengths = self.lengths_cpu[batch].tolist()
            frames = [probs[k, :n] for k, n in enumerate(lengths)]
            return {"when": frames, "who": torch.sigmoid(out["who"]).cpu().numpy()}, losses

        return self.predict_batches(idx, step)

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss, WHO tagging metrics, WHEN frame AUC and segment F1/ER: those defined on `split`."""
        idx = self.splits[split]
        if len(idx) == 0:
            return {}
        fs = self.features
        pred = self._predict(idx)
        return defined_metrics(
            {
                "loss": lambda: float(self._objective(pred.losses)),
                **tagging_candidates(fs.weak[idx], pred.stacked("who"), prefix="who_"),
                **detection_candidates(
                    fs, idx, pred.outputs["when"], any_event=True, prefix="when_"
                ),
            }
        )

    @classmethod
    def metric_names(cls) -> set[str]:
        """The loss, WHO tagging metrics and WHEN detection metrics."""
        return {"loss", *names("who_", TAGGING), *names("when_", DETECTION)}

    # -- what a model that learned nothing scores ---------------------------------------------
    def references(self) -> dict[str, float]:
        """The validity gate's references (`Method.references`): each task's training loss
        (`train/loss_when`, `train/loss_who`: the gate reads the one of the objective's task)
        when the outputs predict the label prior of one epoch's training clips as its pass
        draws them (Half-and-Half weighs positive and negative bags equally): every WHO class
        at its frequency, every WHEN bag at the positive bags' share; and the chance level of
        every validation metric (constant "any event" frame probabilities, constant scores)."""
        rng = np.random.default_rng(0)  # never the method's own: training must not move
        refs = {}
        for p in self.passes:
            if p.input == "hnh":
                idx = np.concatenate(half_and_half(*self._bags(), self.config.batch_size, rng))
            else:
                idx = self.splits.train
            for task in p.tasks:
                refs[f"train/loss_{task}"] = self._prior_loss(task, idx)
        fs, train = self.features, self.splits.train

        def score(idx: np.ndarray, out: np.ndarray) -> dict[str, Any]:
            frames = [np.full(int(fs.lengths[i]), out[0]) for i in idx]
            who = np.broadcast_to(out[1:], (len(idx), len(out) - 1))
            return {
                **tagging_candidates(fs.weak[idx], who, prefix="who_"),
                **detection_candidates(fs, idx, frames, any_event=True, prefix="when_"),
            }

        prior = np.concatenate([[self.bag_labels[train].mean()], fs.weak[train].mean(axis=0)])
        return refs | split_chance(self.splits, score, prior)

    @torch.no_grad()
    def _prior_loss(self, task: str, idx: np.ndarray) -> float:
        """`task`'s loss on clips `idx` (repeats count) when the outputs predict their label
        prior π: WHO, each class's share; WHEN, frame probabilities whose bag probability
        is the positive share (π itself under max and MMM pooling; 1 − (1 − π)^(1/T) over a
        clip's T frames under noisy-or)."""
        it = torch.from_numpy(idx).to(self.device)
        if task == "who":
            y = self.weak[it]
            return float(bce_logits(logit(y.mean(dim=0).cpu().numpy()).to(y).expand_as(y), y))
        lengths = self.lengths_cpu[idx]
        mask, y = frame_mask(self.lengths[it], int(lengths.max())), self.bag[it]
        bag = float(y.mean())
        per_clip = np.full(len(idx), bag)
        if self.config.when_loss == "noisy_or":
            per_clip = 1 - (1 - bag) ** (1 / lengths.numpy())
        frames = logit(per_clip).to(self.device)[:, None].expand(mask.shape)
        return float(self.when_loss(frames, mask, y))

    # -- checkpoints -------------------------------------------------------------------------
    def network(self) -> nn.Module:
        """The WHEN and WHO networks (one ModuleDict; tied mode shares the trunk)."""
        return self.models

    def own_state(self) -> dict[str, Any]:
        """Networks, optimisers and the current learning rate."""
        return {
            "models": self.models.state_dict(),
            "optimisers": {k: o.state_dict() for k, o in self.optimisers.items()},
            "lr": self.lr,
        }

    def load_own_state(self, state: dict[str, Any]) -> None:
        """Restore networks, optimisers and learning rate."""
        self.models.load_state_dict(state["models"])
        for key, opt in self.optimisers.items():
            opt.load_state_dict(state["optimisers"][key])
        self.lr = float(state["lr"])

    # -- figures -----------------------------------------------------------------------------
    def artifacts(self, out_dir: Path) -> list[Path]:
        """Figure 2 of the paper for up to four test clips: log-mel, WHEN probabilities, events."""
        from matplotlib.figure import Figure

        fs, test = self.features, self.splits.test
        has_events = [bool(fs.events[i]) for i in test] if fs.events else self.bag_labels[test]
        chosen = test[np.asarray(has_events, dtype=bool)][:N_FIGURES]
        if len(chosen) == 0:
            return []
        frames = self._predict(chosen).outputs["when"]
        paths = []
        for i, probs in zip(chosen.tolist(), frames, strict=True):
            t, half = fs.times(i), fs.params.hop_s / 2
            fig = Figure(figsize=(8, 6), layout="constrained")
            mel, when, spans = fig.subplots(3, 1, sharex=True, height_ratios=[2, 1, 1])
            edges = (t[0] - half, t[-1] + half, 0, fs.n_mels)
            mel.imshow(fs.clip(i).T, aspect="auto", origin="lower", extent=edges)
            mel.set(ylabel="mel bin", title=fs.clip_ids[i], xlim=(0, fs.durations[i]))
            when.plot(t, probs)
            when.axhline(0.5, color="grey", linestyle="--")
            when.set(ylabel="WHEN p", ylim=(0, 1))
            events = fs.events[i] if fs.events else []
            present = sorted({c for _, _, c in events})
            for on, off, c in events:
                spans.broken_barh([(on, off - on)], (present.index(c) + 0.1, 0.8))
            spans.set(xlabel="time (s)", ylabel="events", ylim=(0, max(1, len(present))))
            spans.set_yticks(np.arange(len(present)) + 0.5, [fs.classes[c] for c in present])
            paths.append(save_figure(fig, Path(out_dir) / f"whenwho_clip{i:05d}.png"))
        return paths
