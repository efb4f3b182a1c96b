"""Deshmukh, Raj & Singh (2020), *Multi-task learning for interpretable weakly labelled SED*: 2APAE.

A VGG-like shared encoder keeps the T × F resolution; a 1 × 1 convolution gives K class maps that
a pooling turns into clip probabilities: two-step attention (over mel bins, then over time) or a
baseline (GAP, GMP, GWRP, atrous attention). A decoder reconstructs the normalised log-mel from
the encoder output as the auxiliary task; the loss is BCE + α·MSE (eq. 7).
"""

from __future__ import annotations

import copy
import functools
import math
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce_logits
from torch.nn.functional import mse_loss

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
    split_chance,
    tagging_candidates,
)
from sedsweep.metrics import defined_metrics
from sedsweep.nn.blocks import conv_bn_relu
from sedsweep.nn.pooling import Pooled, PoolingName, TwoStepForm, TwoStepInit, make_pooling

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHANNELS = (32, 64, 128, 256)  # Table I
N_FIGURES = 3
TOP_CLASSES = 2  # step-1 attention maps drawn per figure (Fig. 3, subplots 3 and 4)
MAX_TICKS = 24  # class names on the figure axes up to this many classes
Monitor = Literal["ap_micro", "ap_macro", "auc_micro", "auc_macro", "lwlrap"]
# CPU scales: 16 kHz, 2048-point frames and hops, 32 bands: 78 × 32 maps per 10 s clip (8× fewer
# positions than the paper's 311 × 64; tests/benchmarks/bench_mtl_attention.py).
CPU_FEATURES = {
    "sr": 16000, "n_fft": 2048, "win_length": 2048, "hop_length": 2048, "n_mels": 32, "fmax": 8000
}  # fmt: skip


# -- config ------------------------------------------------------------------------------------
class ModelConfig(Strict):
    """Encoder (and decoder) size."""

    width: float = Field(default=1.0, gt=0, description="scales the 32/64/128/256 channels")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the four encoder blocks."""
        return tuple(max(1, round(c * self.width)) for c in CHANNELS)


class MtlConfig(Strict):
    """The auxiliary reconstruction task."""

    alpha: float = Field(default=0.001, ge=0, description="α of eq. 7; 0 removes the decoder")


class OptimConfig(Strict):
    """Adam, with ReduceLROnPlateau on the validation `monitor` (as the published code)."""

    lr: float = Field(default=1e-3, gt=0)
    plateau: bool = Field(default=True, description="reduce lr when the monitor plateaus")
    factor: float = Field(default=0.1, gt=0, lt=1, description="lr multiplier on a plateau")
    patience: int = Field(default=10, ge=0, description="epochs without improvement")
    min_lr: float = Field(default=0.0, ge=0)


class MtlAttentionConfig(MethodConfig):
    """2APAE settings; defaults are the paper's (Adam 1e-3, batch 24, α = 0.001)."""

    pooling: PoolingName = "two_step"
    two_step: TwoStepForm = Field(
        default="axis_linear",
        description="axis_linear: the published form (linear maps along mel bins, then along "
        "time); pointwise: a named variant (1 × 1 maps across classes at each position)",
    )
    two_step_init: TwoStepInit = Field(
        default="pass_through",
        description="pass_through: identity class branches, uniform attention (the paper gives "
        "no init); torch_default: PyTorch's default init, a named variant",
    )
    gwrp_r: float = Field(default=0.9998, gt=0, le=1, description="GWRP rank decay r")
    mtl: MtlConfig = Field(default_factory=MtlConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    monitor: Monitor = Field(default="ap_micro", description="validation metric: selection, lr")
    batch_size: int = Field(default=24, ge=1)
    split: SplitConfig = Field(default_factory=lambda: SplitConfig(val_folds=[-2], test_folds=[-1]))

    @field_validator("split")
    @classmethod
    def _has_validation(cls, split: SplitConfig) -> SplitConfig:
        if not split.val_folds and split.val_fraction == 0:
            raise ValueError("model selection needs a validation split: set val_folds")
        return split


# -- networks ----------------------------------------------------------------------------------
def vgg_block(c_in: int, c_out: int) -> nn.Sequential:
    """[Conv3×3 → BN → ReLU] × 2 → AvgPool2d(3, stride 1, padding 1): T × F kept (Table I)."""
    return nn.Sequential(
        conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out), nn.AvgPool2d(3, 1, 1)
    )


class Decoder(nn.Module):
    """Table III: mirrored blocks 256 → 128 → 64 → 32, then a linear Conv3×3 to one map."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(vgg_block(a, b) for a, b in pairwise(channels[::-1])))
        self.out = nn.Conv2d(channels[0], 1, 3, padding=1)  # linear: z-scored targets go below 0

    def forward(self, h: Tensor) -> Tensor:
        """Reconstructed log-mel [B, T, F] from encoder features [B, C, T, F]."""
        return self.out(self.blocks(h)).squeeze(1)


class MtlAttentionNet(nn.Module):
    """Shared encoder → 1 × 1 class conv → pooling; the decoder only when α > 0 (eq. 7)."""

    def __init__(self, n_classes: int, n_frames: int, n_mels: int, cfg: MtlAttentionConfig):
        super().__init__()
        c = cfg.model.channels
        self.encoder = nn.Sequential(*(vgg_block(a, b) for a, b in pairwise((1, *c))))
        self.classes = nn.Conv2d(c[-1], n_classes, 1)
        self.pooling = make_pooling(
            cfg.pooling, n_classes, n_frames, n_mels, cfg.two_step, cfg.gwrp_r, cfg.two_step_init
        )
        self.decoder = Decoder(c) if cfg.mtl.alpha > 0 else None  # built last: same init

    def forward(self, x: Tensor) -> tuple[Pooled, Tensor | None]:
        """Pooling outputs and, with a decoder, the reconstruction of log-mel input [B, T, F]."""
        h = self.encoder(x.unsqueeze(1))
        z = self.classes(h)
        recon = self.decoder(h) if self.decoder is not None else None
        with torch.autocast(x.device.type, enabled=False):  # log-odds need full precision
            return self.pooling(z.float()), recon


# -- the method --------------------------------------------------------------------------------
class MtlAttention(Method):
    """2APAE: two-step attention pooling with a reconstruction auxiliary task (Deshmukh et al.).

    Input: fixed-length log-mel clips z-scored per mel bin with training-split statistics, kept
    on the device as one [N, T, F] tensor; the decoder reconstructs that normalised input.

    Selection: after every epoch the validation split (a fold that is never the test fold)
    is scored with `monitor`; ReduceLROnPlateau steps on it, and the weights of the best epoch
    so far are kept. ``evaluate("train" | "val")`` scores the current weights;
    ``evaluate("test")`` scores the selected (best-validation) weights and reports their
    ``selected_epoch``, so the last epoch's test metrics are the selected model's, chosen
    without looking at the test fold.

    Loss: BCE on clip probabilities + α·MSE of the reconstruction; with α = 0 there is no
    decoder at all (no parameters, no compute). Every pooling also gives a K × T frame map
    (see `sedsweep.nn.pooling`), scored by frame AUC and segment F1 / ER against the events.
    """

    name = "mtl_attention"
    Config = MtlAttentionConfig
    config: MtlAttentionConfig
    feature_preset = "deshmukh2020"
    synthetic_kind = "remix"
    scales: ClassVar[dict[str, Scale]] = {
        "tiny": Scale(
            config={"model": {"width": 0.125}, "epochs": 2, "batch_size": 8},
            corpus={"scale": "tiny", "snr_db": [0.0], "sr": 16000},
            features=CPU_FEATURES,
        ),
        "small": Scale(
            config={
                "model": {"width": 0.25},
                "epochs": 30,
                "batch_size": 8,  # 3× the steps of the paper's 24 on a 200-clip training split
                "optim": {"patience": 4},
            },
            corpus={"scale": "small", "snr_db": [0.0], "sr": 16000},
            features=CPU_FEATURES,
        ),
        "paper": Scale(corpus={"scale": "paper", "snr_db": [0.0]}),
    }

    def __init__(
        self, config: MtlAttentionConfig, features: FeatureSet, device: torch.device
    ) -> None:
        super().__init__(config, features, device)
        if features.fixed_length is None:
            raise ValueError(
                "mtl_attention needs clips of one length (set the feature field fixed_frames)"
            )
        if len(self.splits.val) == 0:
            raise ValueError("mtl_attention selects its model on a validation split; it is empty")
        self.x = self.zscored_inputs()
        self.y = torch.from_numpy(features.weak).to(device)
        k, t = len(features.classes), features.fixed_length
        self.model = MtlAttentionNet(k, t, features.n_mels, config).to(device)
        self.selected = copy.deepcopy(self.model)
        self.selected_epoch, self.best = 0, -math.inf
        o = config.optim
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=o.lr)
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimiser, mode="max", factor=o.factor, patience=o.patience, min_lr=o.min_lr
            )
            if o.plateau
            else None
        )
        self._memo: dict[str, tuple[int, dict[str, float]]] = {}  # split -> (epoch scored, metrics)

    # -- forward and losses ------------------------------------------------------------------
    def _forward(
        self, model: MtlAttentionNet, idx: np.ndarray
    ) -> tuple[Pooled, Tensor | None, dict[str, Tensor]]:
        """Pooling outputs, reconstruction and the BCE / MSE terms of the batch `idx`."""
        it = torch.from_numpy(idx).to(self.device)
        x = self.x.take(idx)
        with autocast(self.device, self.config.amp):
            pooled, recon = model(x)
        losses = {"bce": bce_logits(pooled.logits, self.y[it])}
        if recon is not None:
            losses["mse"] = mse_loss(recon.float(), x)
        return pooled, recon, losses

    def _objective(self, losses: dict[str, Any]) -> Any:
        """Eq. 7: BCE + α·MSE (the MSE term only exists when α > 0)."""
        return losses["bce"] + self.config.mtl.alpha * losses.get("mse", 0.0)

    # -- training ----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """One pass over the training split, then validation: lr schedule and model selection."""
        self.model.train()
        lr = self.optimiser.param_groups[0]["lr"]
        history: dict[str, list[Tensor]] = {}
        for idx in batches(self.splits.train, self.config.batch_size, self.rng):
            _, _, losses = self._forward(self.model, idx)
            self.optimiser.zero_grad(set_to_none=True)
            self._objective(losses).backward()
            self.optimiser.step()
            for key, value in losses.items():
                history.setdefault(key, []).append(value.detach())
        self.epoch += 1
        score = self.evaluate("val").get(self.config.monitor, math.nan)
        if math.isfinite(score):
            if self.scheduler is not None:
                self.scheduler.step(score)
            if score > self.best:
                self.best, self.selected_epoch = score, self.epoch
                self.selected.load_state_dict(self.model.state_dict())
        means = {k: torch.stack(v).mean().item() for k, v in history.items()}
        return {
            "loss": float(self._objective(means)),
            **{f"loss_{k}": v for k, v in means.items()},
            "lr": lr,
        }

    # -- evaluation --------------------------------------------------------------------------
    def _predict(self, model: MtlAttentionNet, idx: np.ndarray) -> Predictions:
        """Per clip: probabilities ('clip', [K]) and frame maps ('frames', [T, K]); mean losses
        ('bce', and 'mse' with a decoder)."""
        model.eval()

        def step(batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Tensor]]:
            pooled, _, losses = self._forward(model, batch)
            clip = torch.sigmoid(pooled.logits).cpu().numpy()
            frames = torch.sigmoid(pooled.frame_logits).transpose(1, 2).cpu().numpy()
            return {"clip": clip, "frames": frames}, losses

        return self.predict_batches(idx, step)

    def evaluate(self, split: str) -> dict[str, float]:
        """Tagging AP / AUC / lwlrap, frame AUC and segment F1 / ER and the loss on `split`."""
        stamp = self.selected_epoch if split == "test" else self.epoch
        if split in self._memo and self._memo[split][0] == stamp:
            return dict(self._memo[split][1])
        idx = self.splits[split]
        if len(idx) == 0:
            return {}
        fs = self.features
        pred = self._predict(self.selected if split == "test" else self.model, idx)
        metrics = defined_metrics(
            {
                "loss": lambda: float(self._objective(pred.losses)),
                **{f"loss_{k}": functools.partial(float, v) for k, v in pred.losses.items()},
                **tagging_candidates(fs.weak[idx], pred.stacked("clip")),
                **detection_candidates(fs, idx, pred.outputs["frames"]),
            }
        )
        if split == "test":
            metrics["selected_epoch"] = float(self.selected_epoch)
        self._memo[split] = (stamp, metrics)
        return dict(metrics)

    @classmethod
    def metric_names(cls) -> set[str]:
        """Loss terms, tagging and detection metrics, and the test split's selected epoch."""
        return {"loss", "loss_bce", "loss_mse", "selected_epoch", *TAGGING, *DETECTION}

    def selection_epoch(self) -> int:
        """The best-validation epoch so far (its weights are `self.selected`)."""
        return self.selected_epoch

    @torch.no_grad()
    def references(self) -> dict[str, float]:
        """The validity gate's references (`Method.references`): the tagging loss
        (`train/loss_bce`; the auxiliary MSE is not what a pooling is judged by) when every
        clip predicts the training label prior, i.e. the prior's mean entropy; and the chance
        level of every validation and test metric (constant clip scores and frame maps)."""
        fs, train = self.features, self.splits.train
        y = self.y[torch.from_numpy(train).to(self.device)]
        prior = fs.weak[train].mean(axis=0)
        refs = {"train/loss_bce": float(bce_logits(logit(prior).to(y).expand_as(y), y))}

        def score(idx: np.ndarray, out: np.ndarray) -> dict[str, Any]:
            clip = np.broadcast_to(out, (len(idx), len(out)))
            frames = [np.broadcast_to(out, (int(fs.lengths[i]), len(out))) for i in idx]
            return {
                **tagging_candidates(fs.weak[idx], clip),
                **detection_candidates(fs, idx, frames),
            }

        return refs | split_chance(self.splits, score, prior)

    # -- checkpoints -------------------------------------------------------------------------
    def network(self) -> nn.Module:
        """The weights selected on the validation fold (what `evaluate('test')` scores)."""
        return self.selected

    def own_state(self) -> dict[str, Any]:
        """Model, selected model, optimiser, scheduler and the selection state."""
        return {
            "model": self.model.state_dict(),
            "selected": self.selected.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "best": self.best,
            "selected_epoch": self.selected_epoch,
        }

    def load_own_state(self, state: dict[str, Any]) -> None:
        """Restore models, optimiser, scheduler and selection state; drop cached evaluations."""
        self.model.load_state_dict(state["model"])
        self.selected.load_state_dict(state["selected"])
        self.optimiser.load_state_dict(state["optimiser"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.best, self.selected_epoch = float(state["best"]), int(state["selected_epoch"])
        self._memo.clear()

    # -- figures -----------------------------------------------------------------------------
    def artifacts(self, out_dir: Path) -> list[Path]:
        """Figure 3 of the paper for a few test clips, drawn from the selected model."""
        fs, chosen = self.features, self.splits.test[:N_FIGURES]
        if len(chosen) == 0:
            return []
        self.selected.eval()
        with torch.no_grad():
            pooled, recon, _ = self._forward(self.selected, chosen)

        def numpy(x: Tensor | None, sigmoid: bool = False) -> np.ndarray | None:
            return None if x is None else (torch.sigmoid(x) if sigmoid else x).float().cpu().numpy()

        clip_p = numpy(pooled.logits, sigmoid=True)
        frame_p, step1_p = numpy(pooled.frame_logits, True), numpy(pooled.step1, True)
        att_f, att_t, recon_np = numpy(pooled.att_f), numpy(pooled.att_t), numpy(recon)
        paths = []
        for b, i in enumerate(chosen.tolist()):
            panels: list[tuple[str, np.ndarray, str]] = [
                ("input log-mel (normalised)", self.x.take(np.array([i]))[0].cpu().numpy().T, "mel")
            ]
            if recon_np is not None:
                panels.append(("decoder output", recon_np[b].T, "mel"))
            if att_f is not None:
                for c in np.argsort(-clip_p[b])[:TOP_CLASSES]:
                    panels.append((f"step-1 weights: {fs.classes[c]}", att_f[b, c].T, "mel"))
            if step1_p is not None:
                panels.append(("step-1 output", step1_p[b], "prob"))
            if pooled.step1 is not pooled.frame_logits:
                panels.append(("frame probabilities (localisation map)", frame_p[b], "prob"))
            if att_t is not None:
                panels.append(("step-2 weights", att_t[b], "class"))
            path = Path(out_dir) / f"mtl_attention_clip{i:05d}.png"
            paths.append(save_figure(figure3(fs, i, panels, clip_p[b]), path, dpi=70))
        return paths


def figure3(
    fs: FeatureSet, i: int, panels: list[tuple[str, np.ndarray, str]], clip_p: np.ndarray
) -> Figure:
    """Draw Fig. 3: time panels ('mel', 'class' or 'prob' in [0, 1]) above clip probabilities."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    k, t, hop = len(fs.classes), fs.times(i), fs.params.hop_s
    events = fs.events[i] if fs.events is not None else []
    fig = Figure(figsize=(9, 1.8 * (len(panels) + 1)), layout="constrained")
    axes = fig.subplots(len(panels) + 1, 1)
    for ax, (title, image, kind) in zip(axes, panels, strict=False):
        limits = {"vmin": 0.0, "vmax": 1.0} if kind == "prob" else {}
        extent = (t[0] - hop / 2, t[-1] + hop / 2, 0, image.shape[0])
        ax.imshow(
            image, aspect="auto", origin="lower", interpolation="nearest", extent=extent, **limits
        )
        ax.set(title=title, ylabel="mel bin" if kind == "mel" else "class")
        if kind != "mel":
            ax.set_yticks(np.arange(k) + 0.5, fs.classes if k <= MAX_TICKS else [""] * k)
            for on, off, c in events:  # the strong labels, for reference
                ax.add_patch(Rectangle((on, c), off - on, 1, fill=False, ec="red", lw=1))
    axes[-2].set_xlabel("time (s)")
    present = fs.weak[i] > 0
    axes[-1].bar(np.arange(k), clip_p, color=np.where(present, "C1", "C0"))
    axes[-1].set(title=f"clip probabilities (orange: present) — {fs.clip_ids[i]}", ylim=(0, 1))
    axes[-1].set_xticks(np.arange(k), fs.classes if k <= MAX_TICKS else [""] * k, rotation=90)
    return fig
