"""He, Shen, Zhang & Liu (2020), *Staged training strategy and multi-activation for audio tagging
with noisy and sparse multi-label data* (DCASE2019 task 2).

A CNN-GRU tagger trained in three stages measured in iterations: verified clips only;
verified and unverified clips in a fixed share with loss masking of unverified samples (top-k,
or the updatable threshold η_t = α·η_{t−1} + (1−α)·T_t); verified clips only again. Heads:
sigmoid (BCE), optionally ensembled with a softmax (cross-entropy) or sparsemax (eq. 9) head
trained against q = y/‖y‖₁. Mixup and SpecAugment on random crops; evaluation on full clips.
"""

from __future__ import annotations

import math
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
    Scale,
    SplitConfig,
    Splits,
    autocast,
    logit,
    save_figure,
)
from sedsweep.methods.evaluation import TAGGING, names, split_chance, tagging_candidates
from sedsweep.metrics import defined_metrics, f1_macro, lwlrap, lwlrap_per_class
from sedsweep.nn.augment import Mixup, SpecAugment
from sedsweep.nn.blocks import conv_bn_relu
from sedsweep.nn.sparsemax import label_distribution, sparsemax, sparsemax_loss

Positive = Annotated[int, Field(ge=1)]


# -- config ------------------------------------------------------------------------------------
class ModelConfig(Strict):
    """CNN-GRU sizes; the paper's Fig. 1 did not survive, so these follow its spirit."""

    channels: list[Positive] = Field(
        default_factory=lambda: [64, 128, 256, 512], min_length=1, description="per conv block"
    )
    time_pools: list[Positive] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    freq_pools: list[Positive] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    gru_units: int = Field(default=256, ge=1, description="per direction of the BiGRU")
    pooling: Literal["mean", "max", "attention"] = Field(default="attention", description="time")
    dense_units: int = Field(default=256, ge=1, description="the hidden dense layer (ReLU)")

    @model_validator(mode="after")
    def _one_pool_per_block(self) -> ModelConfig:
        if not len(self.channels) == len(self.time_pools) == len(self.freq_pools):
            raise ValueError("channels, time_pools and freq_pools need one entry per conv block")
        return self


class StagesConfig(Strict):
    """Staged training (Sec. 3.1, eqs. 1–3): stage lengths in iterations and the selection rule."""

    stages: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [10000, 10000, 5000],
        min_length=3,
        max_length=3,
        description="iterations of stage 1 (verified), 2 (both, masked), 3 (verified)",
    )
    selection: Literal["none", "topk", "threshold"] = "threshold"
    k: int = Field(default=10, ge=1, description="top-k: masked per batch; threshold: T_t's rank")
    alpha: float = Field(default=0.9, ge=0, le=1, description="η smoothing, eq. 3")
    eta0: float | None = Field(default=None, description="initial η; None: the first T_t")
    unverified_share: float = Field(default=0.5, gt=0, lt=1, description="of stage-2 batches")
    verified_only: bool = Field(default=False, description="baseline: skip stage 2")

    @property
    def lengths(self) -> list[int]:
        """Stage lengths as trained (stage 2 is empty in the verified-only baseline)."""
        s1, s2, s3 = self.stages
        return [s1, 0 if self.verified_only else s2, s3]


class MixupConfig(Strict):
    """Mixup of clip pairs (labels mixed too)."""

    enabled: bool = True
    alpha: float = Field(default=1.0, gt=0, description="λ ~ Beta(α, α)")


class SpecAugmentConfig(Strict):
    """SpecAugment: time warp, frequency masks and time masks (widths are maxima)."""

    enabled: bool = True
    freq_masks: int = Field(default=2, ge=0)
    freq_width: int = Field(default=10, ge=0, description="mel bins")
    time_masks: int = Field(default=2, ge=0)
    time_width: int = Field(default=50, ge=0, description="frames")
    time_warp: int = Field(default=40, ge=0, description="frames; 0 disables")


class PostprocessConfig(Strict):
    """Sec. 2.3 score normalisation before the metrics."""

    normalise: bool = True


class OptimConfig(Strict):
    """Adam (Sec. 4.2)."""

    lr: float = Field(default=1e-3, gt=0)


class StagedConfig(MethodConfig):
    """Staged-training settings; defaults are the paper's (FSDKaggle2019: 10k/10k/5k, batch 64).

    `epochs` left unset (or None) becomes ceil(trained iterations / iterations_per_epoch).
    """

    activation: Literal["sigmoid", "sig_softmax", "sig_sparsemax"] = "sig_sparsemax"
    ensemble: Literal["mean", "geometric"] = Field(default="mean", description="of the 2 heads")
    crop_frames: int = Field(default=512, ge=1, description="random training crops")
    iterations_per_epoch: int = Field(default=500, ge=1)
    batch_size: int = 64
    staged: StagesConfig = Field(default_factory=StagesConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    specaugment: SpecAugmentConfig = Field(default_factory=SpecAugmentConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    split: SplitConfig = Field(
        default_factory=lambda: SplitConfig(test_folds=[-1], val_fraction=0.15)
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_epochs(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("epochs") is None:
            probe = cls.model_validate({**data, "epochs": 1})
            data = {**data, "epochs": max(1, -(-probe.iterations // probe.iterations_per_epoch))}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> StagedConfig:
        if self.iterations == 0:
            raise ValueError("the stages train no iteration at all")
        if self.staged.selection != "none" and self.staged.k > self.batch_size:
            raise ValueError(f"staged.k ({self.staged.k}) must be ≤ batch_size ({self.batch_size})")
        if self.crop_frames < math.prod(self.model.time_pools):
            raise ValueError(f"crop_frames ({self.crop_frames}) is shorter than the time pooling")
        return self

    @property
    def iterations(self) -> int:
        """Iterations of all stages together."""
        return sum(self.staged.lengths)

    def stage_at(self, iteration: int) -> int:
        """Stage (1, 2, 3) of the iteration after `iteration` completed ones (3 past the end)."""
        s1, s2, _ = self.staged.lengths
        return 1 if iteration < s1 else 2 if iteration < s1 + s2 else 3


# -- network -----------------------------------------------------------------------------------
class CnnGru(nn.Module):
    """Fig. 1: conv blocks → BiGRU → pooling over time → dense (ReLU) → one dense layer per head.

    A conv block is [Conv3×3 → BN → ReLU] × 2 → average pooling (time, frequency); channels
    and the remaining frequency bins are flattened into the BiGRU's input at each time step.
    """

    def __init__(self, n_mels: int, n_classes: int, m: ModelConfig, heads: int) -> None:
        super().__init__()
        if n_mels < math.prod(m.freq_pools):
            raise ValueError(f"frequency pools {m.freq_pools} reduce {n_mels} mel bins to nothing")
        ins = [1, *m.channels[:-1]]
        self.cnn = nn.Sequential(
            *(
                nn.Sequential(conv_bn_relu(i, o), conv_bn_relu(o, o), nn.AvgPool2d((tp, fp)))
                for i, o, tp, fp in zip(ins, m.channels, m.time_pools, m.freq_pools, strict=True)
            )
        )
        features = m.channels[-1] * (n_mels // math.prod(m.freq_pools))
        self.gru = nn.GRU(features, m.gru_units, batch_first=True, bidirectional=True)
        self.pooling = m.pooling
        self.attention = nn.Linear(2 * m.gru_units, 1) if m.pooling == "attention" else None
        self.dense = nn.Linear(2 * m.gru_units, m.dense_units)
        self.heads = nn.ModuleList(nn.Linear(m.dense_units, n_classes) for _ in range(heads))

    def forward(self, x: Tensor) -> Tensor:
        """Logits [heads, B, n_classes] of log-mel input [B, T, F]."""
        h = self.cnn(x.unsqueeze(1))  # [B, C, T', F']
        h = h.permute(0, 2, 1, 3).flatten(2)  # [B, T', C·F']: the GRU sees where energy lies
        h, _ = self.gru(h.float())
        if self.attention is not None:
            h = (torch.softmax(self.attention(h), dim=1) * h).sum(dim=1)
        else:
            h = h.mean(dim=1) if self.pooling == "mean" else h.amax(dim=1)
        h = torch.relu(self.dense(h))
        return torch.stack([head(h) for head in self.heads])


# -- loss masking (eqs. 1–3) -------------------------------------------------------------------
def topk_mask(losses: Tensor, verified: Tensor, k: int) -> Tensor:
    """M_i·(1 − V_i) of the top-k rule: the k largest-loss unverified samples (all if fewer)."""
    n = min(k, int((~verified).sum()))
    masked = torch.zeros_like(verified)
    masked[losses.masked_fill(verified, -math.inf).topk(n).indices] = True
    return masked


def update_threshold(eta: float | None, losses: Tensor, k: int, alpha: float) -> float:
    """Eq. 3: η_t = α·η_{t−1} + (1 − α)·T_t, T_t the k-th largest loss; no η_{t−1}: η_t = T_t."""
    t = losses.topk(min(k, len(losses))).values[-1].item()
    return t if eta is None else alpha * eta + (1 - alpha) * t


def threshold_mask(losses: Tensor, verified: Tensor, eta: float) -> Tensor:
    """M_i·(1 − V_i) of eqs. 1–2: unverified samples whose loss C_i exceeds η."""
    return (losses > eta) & ~verified


# -- scores and metrics ------------------------------------------------------------------------
def normalise_scores(s: np.ndarray) -> np.ndarray:
    """Sec. 2.3: z-score each class over the clips, then one min-max over all scores to [0, 1].

    A per-class min-max would undo the per-class z-score (both are per-class affine maps), so
    the min-max is global: it keeps the z-scored ranking and bounds the scores.
    """
    z = (s - s.mean(axis=0)) / np.maximum(s.std(axis=0), 1e-12)
    return (z - z.min()) / max(float(z.max() - z.min()), 1e-12)


STAGED_TAGGING = ("lwlrap_multi", "f1_macro")  # beyond the shared TAGGING names


def tagging_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The shared tagging metrics, lwlrap on multi-label clips (Table 2) and the macro F-score
    (Sec. 4.3): those defined."""
    multi = y.sum(axis=1) > 1
    return defined_metrics(
        {
            **tagging_candidates(y, s),
            STAGED_TAGGING[0]: lambda: lwlrap(y[multi], s[multi]),
            STAGED_TAGGING[1]: lambda: f1_macro(y, s),
        }
    )


# -- the method --------------------------------------------------------------------------------
class Staged(Method):
    """CNN-GRU with staged training, loss masking and multi-activation heads (He et al. 2020).

    Input: fixed-length log-mel clips (the he2020 preset's 2000 frames), z-scored per mel bin
    with training-split statistics and kept on the device; training batches are random crops of
    `crop_frames`, evaluation uses the full clips. One "epoch" is `iterations_per_epoch`
    iterations, so a stage boundary may fall inside an epoch; iterations past the last stage
    continue stage 3.

    Batches: each draws its clips uniformly from the verified (and, in stage 2, the unverified)
    training clips, without replacement unless a source is smaller than its share. Mixup pairs
    clips from the same source, so a mixed sample keeps its verified flag.

    Per-sample loss C_i: the sigmoid head's BCE (mean over classes, as Keras) plus the second
    head's loss against q = y/‖y‖₁ (softmax cross-entropy or eq. 9); a clip without labels has
    no q and only its BCE counts. Batch loss (eq. 1): Σ_i (1 − M_i·(1 − V_i))·C_i / B, the mask
    touching unverified samples only (V_i = 1 for verified ones, see NOTES.md). Threshold
    rule: each stage-2 iteration first updates η with the batch's T_t (eq. 3, η_t is "the
    current threshold"), then masks with that η_t (eq. 2).

    Prediction: sigmoid(z₁), or the mean / geometric mean of it and softmax(z₂) / sparsemax(z₂).
    Post-processing (switchable) normalises each split's scores with that split's own per-class
    statistics: transductive, label-free, as on a challenge's test set.
    """

    name = "staged"
    Config = StagedConfig
    config: StagedConfig
    feature_preset = "he2020"
    synthetic_kind = "noisy"
    scales: ClassVar[dict[str, Scale]] = {
        "tiny": Scale(
            config={
                "model": {
                    "channels": [4, 8, 8, 8],
                    "gru_units": 8,
                    "dense_units": 8,
                },
                "batch_size": 8,
                "crop_frames": 128,
                "iterations_per_epoch": 3,
                "staged": {"stages": [2, 3, 1], "k": 2},
                "specaugment": {"freq_width": 8, "time_width": 16, "time_warp": 8},
            },
            corpus={"scale": "tiny", "sr": 16000, "max_duration": 4.0},
            features={
                "sr": 16000,
                "win_length": 640,
                "hop_length": 320,
                "n_fft": 1024,
                "fixed_frames": 256,
            },
        ),
        "small": Scale(
            config={
                "model": {"channels": [16, 32, 64, 64], "gru_units": 32, "dense_units": 64},
                "batch_size": 32,
                "crop_frames": 256,
                "iterations_per_epoch": 100,
                "staged": {"stages": [1000, 1000, 500], "k": 5},
                "specaugment": {"time_width": 32, "time_warp": 20},
            },
            corpus={"scale": "small", "sr": 16000, "max_duration": 10.0},
            features={
                "sr": 16000,
                "win_length": 640,
                "hop_length": 320,
                "n_fft": 1024,
                "fixed_frames": 500,
            },
        ),
        "paper": Scale(),
    }

    def __init__(self, config: StagedConfig, features: FeatureSet, device: torch.device) -> None:
        super().__init__(config, features, device)
        self._load_data(features)
        self.model = CnnGru(
            features.n_mels,
            len(features.classes),
            config.model,
            heads=1 if config.activation == "sigmoid" else 2,
        ).to(device)
        a = config.specaugment
        self.mixup = Mixup(config.mixup.alpha) if config.mixup.enabled else None
        self.specaugment = (
            SpecAugment(a.freq_masks, a.freq_width, a.time_masks, a.time_width, a.time_warp)
            if a.enabled
            else None
        )
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr)
        self.iteration = 0
        self.eta = config.staged.eta0
        self.trace: dict[str, list[float]] = {"loss": [], "threshold": [], "masked_fraction": []}

    # -- data --------------------------------------------------------------------------------
    @classmethod
    def check_data(cls, config: MethodConfig, splits: Splits, verified: np.ndarray) -> None:
        """Stage 1 needs verified training clips, stage 2 unverified ones (issue 16: an
        all-verified import failed only after feature extraction, inside every trial)."""
        assert isinstance(config, StagedConfig)
        train = verified[splits.train]
        if not train.any():
            raise ValueError("staged training needs verified training clips")
        stage2 = config.staged.lengths[1]
        if stage2 and train.all():
            raise ValueError(
                "stage 2 needs unverified training clips and every training clip is verified: "
                f"set staged.verified_only=true (it skips stage 2: {stage2} of the "
                f"{config.iterations} iterations, so fewer epochs unless epochs is set)"
            )

    # -- data --------------------------------------------------------------------------------
    def _load_data(self, fs: FeatureSet) -> None:
        """Z-score all clips with training statistics into one [N, T, F] device tensor."""
        cfg = self.config
        if fs.fixed_length is None:
            raise ValueError("staged needs fixed-length clips: set the feature field fixed_frames")
        self.crop = min(cfg.crop_frames, fs.fixed_length)
        if self.crop < math.prod(cfg.model.time_pools):
            raise ValueError(f"clips of {self.crop} frames are shorter than the time pooling")
        a = cfg.specaugment
        if a.enabled and (a.freq_width >= fs.n_mels or a.time_width >= self.crop):
            raise ValueError("specaugment mask widths must be below the mel bins and the crop")
        self.x = self.zscored_inputs()
        self.y = torch.from_numpy(fs.weak).to(self.device)
        train = self.splits.train
        self.sources = {
            "verified": train[fs.verified[train]],
            "unverified": train[~fs.verified[train]],
        }

    def batch_indices(self, stage: int) -> np.ndarray:
        """One training batch: verified clips, then (stage 2 only) the unverified share."""
        b = self.config.batch_size
        n_unverified = round(b * self.config.staged.unverified_share) if stage == 2 else 0
        return np.concatenate(
            [self._draw("verified", b - n_unverified), self._draw("unverified", n_unverified)]
        )

    def _draw(self, source: str, n: int) -> np.ndarray:
        """n clips drawn uniformly from a source (with replacement only if it is too small)."""
        pool = self.sources[source]
        return self.rng.choice(pool, n, replace=n > len(pool)) if n else pool[:0]

    def _crop(self, idx: np.ndarray) -> Tensor:
        """A random `crop`-frame window of each clip."""
        starts = self.rng.integers(0, self.x.frames - self.crop + 1, len(idx))
        return self.x.take(idx, self.crop, starts)

    # -- losses ------------------------------------------------------------------------------
    def sample_losses(self, logits: Tensor, y: Tensor) -> Tensor:
        """C_i of eq. 1: BCE of the sigmoid head (mean over classes) + the second head's loss."""
        losses = bce_logits(logits[0], y, reduction="none").mean(dim=1)
        if self.config.activation == "sigmoid":
            return losses
        q, labelled = label_distribution(y)
        if self.config.activation == "sig_sparsemax":
            second = sparsemax_loss(logits[1], q)
        else:
            second = -(q * torch.log_softmax(logits[1], dim=1)).sum(dim=1)
        return losses + labelled * second

    def select(self, stage: int, losses: Tensor, verified: Tensor) -> Tensor:
        """The samples whose loss is ignored (M_i·(1 − V_i) = 1); η is updated first (eq. 3)."""
        s = self.config.staged
        if stage != 2 or s.selection == "none":
            return torch.zeros_like(verified)
        if s.selection == "topk":
            return topk_mask(losses, verified, s.k)
        self.eta = update_threshold(self.eta, losses, s.k, s.alpha)
        return threshold_mask(losses, verified, self.eta)

    def scores(self, logits: Tensor) -> Tensor:
        """Prediction: the sigmoid head, or its configured ensemble with the second head."""
        p = torch.sigmoid(logits[0])
        if self.config.activation == "sigmoid":
            return p
        z = logits[1]
        r = sparsemax(z) if self.config.activation == "sig_sparsemax" else torch.softmax(z, dim=1)
        return (p + r) / 2 if self.config.ensemble == "mean" else (p * r).sqrt()

    # -- training ----------------------------------------------------------------------------
    def _set_training(self, mode: bool) -> None:
        for module in (self.model, self.mixup, self.specaugment):
            if module is not None:
                module.train(mode)

    def train_step(self) -> dict[str, int]:
        """One iteration of the current stage; returns its stage and masked/unverified counts."""
        stage = self.config.stage_at(self.iteration)
        idx = self.batch_indices(stage)
        it = torch.from_numpy(idx).to(self.device)
        verified_np = self.features.verified[idx]
        verified = torch.from_numpy(verified_np).to(self.device)
        x, y = self._crop(idx), self.y[it]
        self._set_training(True)
        if self.mixup is not None:
            x, y = self.mixup(x, y, self.rng, groups=verified_np)
        if self.specaugment is not None:
            x = self.specaugment(x, self.rng)
        with autocast(self.device, self.config.amp):
            logits = self.model(x)
        losses = self.sample_losses(logits.float(), y)
        masked = self.select(stage, losses.detach(), verified)
        loss = losses.masked_fill(masked, 0.0).sum() / len(idx)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.iteration += 1
        unverified, n_masked = int((~verified_np).sum()), int(masked.sum())
        if stage == 2 and self.config.staged.selection == "threshold":
            threshold = float(self.eta)
        else:  # top-k: the smallest ignored loss plays η's part (Fig. 4c)
            threshold = losses.detach()[masked].min().item() if n_masked else math.nan
        self.trace["loss"].append(loss.item())
        self.trace["threshold"].append(threshold)
        self.trace["masked_fraction"].append(n_masked / unverified if unverified else 0.0)
        return {"masked": n_masked, "unverified": unverified, "stage": stage,
                "unmasked": losses.detach().mean().item()}  # fmt: skip

    def train_epoch(self) -> dict[str, float]:
        """`iterations_per_epoch` iterations; the loss (eq. 1, masked), the same without its
        mask (`loss_unmasked`, what the validity gate reads), η, the masked share of the
        unverified samples, the stage."""
        first = len(self.trace["loss"])
        steps = [self.train_step() for _ in range(self.config.iterations_per_epoch)]
        self.epoch += 1
        unverified = sum(s["unverified"] for s in steps)
        metrics = {
            "loss": float(np.mean(self.trace["loss"][first:])),
            "loss_unmasked": float(np.mean([s["unmasked"] for s in steps])),
            "masked_fraction": sum(s["masked"] for s in steps) / unverified if unverified else 0.0,
            "stage": float(steps[-1]["stage"]),
            "iteration": float(self.iteration),
        }
        if self.eta is not None:
            metrics["eta"] = self.eta
        return metrics

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [n, C] (before post-processing) and unmasked losses C_i on full clips."""
        self._set_training(False)

        def step(batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
            it = torch.from_numpy(batch).to(self.device)
            with autocast(self.device, self.config.amp):
                logits = self.model(self.x.take(batch)).float()
            losses = self.sample_losses(logits, self.y[it]).cpu().numpy()
            return {"scores": self.scores(logits).cpu().numpy(), "losses": losses}, {}

        pred = self.predict_batches(idx, step)
        return pred.stacked("scores"), np.asarray(pred.outputs["losses"])

    def _split_scores(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clip indices, post-processed scores and losses of a split."""
        idx = self.splits[split]
        scores, losses = self.predict(idx)
        if self.config.postprocess.normalise:
            scores = normalise_scores(scores)
        return idx, scores, losses

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and tagging metrics; `verified_…` again on the verified clips of a mixed split."""
        if len(self.splits[split]) == 0:
            return {}
        idx, s, losses = self._split_scores(split)
        y = self.features.weak[idx]
        metrics = {"loss": float(losses.mean()), **tagging_metrics(y, s)}
        ver = self.features.verified[idx]
        if ver.any() and not ver.all():
            metrics |= {f"verified_{k}": v for k, v in tagging_metrics(y[ver], s[ver]).items()}
        return metrics

    @torch.no_grad()
    def references(self) -> dict[str, float]:
        """The validity gate's references (`Method.references`): the unmasked training loss
        (`train/loss_unmasked`, C_i of eq. 1 averaged) when the outputs predict the label
        prior of the verified training clips (stages 1 and 3, where trials end): the sigmoid
        head each class's share, the second head the mean label distribution q̄ (softmax
        logits log q̄; sparsemax of q̄ is q̄ itself). Mixup leaves it unchanged in
        expectation: both losses are linear in the target. And the chance level of every
        validation and test metric (constant scores, before post-processing)."""
        fs, train = self.features, self.splits.train
        verified = train[fs.verified[train]]
        y = self.y[torch.from_numpy(verified).to(self.device)]
        heads = [logit(y.mean(dim=0).cpu().numpy()).to(y)]
        if self.config.activation != "sigmoid":
            q, labelled = label_distribution(y)
            mean_q = (q * labelled[:, None]).sum(dim=0) / labelled.sum().clamp_min(1)
            sparse = self.config.activation == "sig_sparsemax"
            heads.append(mean_q if sparse else mean_q.clamp_min(1e-12).log())
        logits = torch.stack([h.expand_as(y) for h in heads])
        refs = {"train/loss_unmasked": float(self.sample_losses(logits, y).mean())}

        def score(idx: np.ndarray, out: np.ndarray) -> dict[str, Any]:
            y, ver = fs.weak[idx], fs.verified[idx]
            s = np.broadcast_to(out, y.shape)
            metrics = tagging_metrics(y, s)
            if ver.any() and not ver.all():
                metrics |= {f"verified_{k}": v for k, v in tagging_metrics(y[ver], s[ver]).items()}
            return {k: (lambda v=v: v) for k, v in metrics.items()}

        return refs | split_chance(self.splits, score, fs.weak[train].mean(axis=0))

    @classmethod
    def metric_names(cls) -> set[str]:
        """The loss and the tagging metrics, again with `verified_` on mixed splits."""
        tagging = {*TAGGING, *STAGED_TAGGING}
        return {"loss", *tagging, *names("verified_", tuple(tagging))}

    # -- checkpoints -------------------------------------------------------------------------
    def network(self) -> nn.Module:
        """The CNN-GRU tagger."""
        return self.model

    def own_state(self) -> dict[str, Any]:
        """Network, optimiser, iteration, η and the traces."""
        return {
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "iteration": self.iteration,
            "eta": self.eta,
            "trace": self.trace,
        }

    def load_own_state(self, state: dict[str, Any]) -> None:
        """Restore network, optimiser, iteration, η and the traces."""
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.iteration, self.eta, self.trace = int(state["iteration"]), state["eta"], state["trace"]

    # -- figures -----------------------------------------------------------------------------
    def artifacts(self, out_dir: Path) -> list[Path]:
        """η and masked-fraction curves over the iterations (Fig. 4c), per-class test lwlrap."""
        from matplotlib.figure import Figure

        figures: list[tuple[str, Figure]] = []
        if self.trace["loss"]:
            fig = Figure(figsize=(8, 5), layout="constrained")
            eta, share = fig.subplots(2, 1, sharex=True)
            steps = np.arange(1, len(self.trace["loss"]) + 1)
            eta.plot(steps, self.trace["threshold"])
            title = f"{self.config.activation}, selection {self.config.staged.selection}"
            eta.set(ylabel="selection threshold (η)", title=title)
            share.plot(steps, self.trace["masked_fraction"])
            share.set(xlabel="iteration", ylabel="masked share of unverified", ylim=(0, 1.05))
            for boundary in np.cumsum(self.config.staged.lengths)[:2]:
                for ax in (eta, share):
                    ax.axvline(boundary + 0.5, color="grey", linestyle="--")
            figures.append(("staged_eta_masked.png", fig))
        split = "test" if len(self.splits.test) else "val"
        if len(self.splits[split]):
            idx, s, _ = self._split_scores(split)
            per_class, _ = lwlrap_per_class(self.features.weak[idx], s)
            fig = Figure(figsize=(max(6, 0.3 * len(per_class)), 4), layout="constrained")
            ax = fig.subplots()
            ax.bar(np.arange(len(per_class)), np.nan_to_num(per_class))
            ax.set_xticks(np.arange(len(per_class)), self.features.classes, rotation=90)
            ax.set(ylabel=f"{split} lwlrap", ylim=(0, 1), title="per-class lwlrap")
            figures.append(("staged_lwlrap_per_class.png", fig))
        return [save_figure(fig, Path(out_dir) / name) for name, fig in figures]
