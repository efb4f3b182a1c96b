"""Clip poolings of class maps Z [B, K, T, F] (Deshmukh, Raj & Singh 2020 and its baselines).

Every pooling returns clip log-odds and a K × T frame map (log-odds too). Pooled probabilities
are weighted means p = Σ w·σ(z) with weights summing to one (GMP: all weight on the largest),
computed as log p − log(1 − p) from log-sigmoids and log-weights, so they stay in (0, 1) and the
BCE stays finite however large the logits get (no clamping, no overflow above 1, no squashing
below 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.functional import log_softmax, logsigmoid

PoolingName = Literal["two_step", "gap", "gmp", "gwrp", "atrous"]
TwoStepForm = Literal["pointwise", "axis_linear"]
TwoStepInit = Literal["pass_through", "torch_default"]
STEP2_GAIN = 8.0  # pointwise init: σ(8·(p − ½)) spans 0.018…0.982 over p ∈ (0, 1)


@dataclass
class Pooled:
    """Clip log-odds [B, K], the localisation map's log-odds [B, K, T] and attention details."""

    logits: Tensor
    frame_logits: Tensor
    att_f: Tensor | None = None  # [B, K, T, F], sums to 1 over mel bins
    att_t: Tensor | None = None  # [B, K, T], sums to 1 over time
    step1: Tensor | None = None  # two-step: Z_p1 as log-odds [B, K, T]


def weighted_log_odds(logits: Tensor, log_weights: Tensor, dim: int) -> Tensor:
    """Log-odds of p = Σ_dim w·σ(z) for log-weights normalised over `dim` (eqs. 11 and 15)."""
    log_p = torch.logsumexp(log_weights + logsigmoid(logits), dim)
    return log_p - torch.logsumexp(log_weights + logsigmoid(-logits), dim)


def _uniform(x: Tensor, dim: int) -> Tensor:
    """Log-weights of a plain mean over `dim` (broadcastable to x)."""
    return x.new_full((1,), -math.log(x.shape[dim]))


def gwrp_log_odds(logits: Tensor, r: float, start_dim: int) -> Tensor:
    """GWRP (Kolesnikov & Lampert; Kong et al.): Σ r^rank·σ(z_sorted) / Σ r^rank, dims ≥ start."""
    ranked = logits.flatten(start_dim).sort(dim=-1, descending=True).values  # σ keeps the order
    rank = torch.arange(ranked.shape[-1], device=logits.device, dtype=logits.dtype)
    return weighted_log_odds(ranked, log_softmax(rank * math.log(r), dim=0), -1)


GlobalKind = Literal["gap", "gmp", "gwrp"]
GLOBAL_KINDS: tuple[GlobalKind, ...] = ("gap", "gmp", "gwrp")


class GlobalPooling(nn.Module):
    """GAP, GMP or GWRP over T × F; the frame map is the same pooling over mel bins alone."""

    def __init__(self, kind: GlobalKind, r: float = 0.9998) -> None:
        super().__init__()
        if kind not in GLOBAL_KINDS:
            raise ValueError(f"unknown global pooling {kind!r} (known: {', '.join(GLOBAL_KINDS)})")
        self.kind, self.r = kind, r

    def forward(self, z: Tensor) -> Pooled:
        """Pool class maps [B, K, T, F] into clip and frame log-odds."""
        if self.kind == "gmp":  # max σ(z) = σ(max z)
            frames = z.amax(dim=3)
            return Pooled(frames.amax(dim=2), frames)
        if self.kind == "gap":
            frames = weighted_log_odds(z, _uniform(z, 3), 3)
            return Pooled(weighted_log_odds(frames, _uniform(frames, 2), 2), frames)
        return Pooled(gwrp_log_odds(z, self.r, 2), gwrp_log_odds(z, self.r, 3))


class _AxisLinear(nn.Module):
    """A Linear map along one axis of the input (the published Linear(F→F) / Linear(T→T))."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size, self.dim = size, dim
        self.linear = nn.Linear(size, size)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the map along `dim`; a different axis length is an error naming both lengths."""
        if x.shape[self.dim] != self.size:
            axis = "mel bins" if self.dim == 3 else "frames"
            raise ValueError(
                f"two_step=axis_linear was built for {self.size} {axis} but got "
                f"{x.shape[self.dim]}; use two_step=pointwise for other lengths"
            )
        return self.linear(x.movedim(self.dim, -1)).movedim(-1, self.dim)


def _projection(form: TwoStepForm, k: int, size: int, dim: int) -> nn.Module:
    """One branch of an attention step: along the pooled axis, or per position across classes."""
    if form == "axis_linear":
        return _AxisLinear(size, dim)
    return (nn.Conv2d if dim == 3 else nn.Conv1d)(k, k, 1)


def _parameters_of(projection: nn.Module) -> nn.Module:
    """The layer holding a projection's weight and bias (an axis map's Linear, or the conv)."""
    return projection.linear if isinstance(projection, _AxisLinear) else projection


class TwoStepAttention(nn.Module):
    """Two-step attention pooling, eqs. 8–15: over mel bins (K × T × F → K × T), then over time.

    Each step has a classification branch (sigmoid) and an attention branch (softmax over the
    pooled axis), as in the published code. ``axis_linear`` is the published form (linear maps
    along the pooled axis, so the clip length is fixed at `n_frames`); ``pointwise`` projects
    across classes at each position (1 × 1 convolutions) and accepts any clip length.

    Initialisation (the paper gives none). ``pass_through`` (the default): the classification
    branches start as pass-through (per class across classes for pointwise, per mel bin and per
    frame along the axis for axis_linear), step 2's as σ(g·(Z_p1 − ½)) with g = `STEP2_GAIN`,
    the attention branches at zero (uniform weights): a mean of σ(Z) over F, then a mean over T
    whose probabilities can already approach 0 and 1. Both forms then compute the same function
    at the start. ``torch_default`` is PyTorch's default init (what published code that sets none
    gets), a named variant: for axis_linear it shares one T × T map of zero-mean weights across
    classes, so the expected gain from Z_p1 to the clip output is zero and the encoder's
    gradient cancels in expectation; pointwise mixes classes and keeps step-2 logits within
    about ±1. Both train far slower.

    Localisation map: step 2's classification branch is linear in Z_p1, so Z_p1 may mark an
    event by low as well as high values. The pointwise form therefore localises with σ(Z_c2),
    the per-frame class probabilities whose step-2 attention mean is the clip probability; the
    axis_linear form mixes frames in Z_c2 and localises with Z_p1.
    """

    def __init__(
        self,
        n_classes: int,
        n_frames: int,
        n_mels: int,
        form: TwoStepForm,
        init: TwoStepInit = "pass_through",
    ) -> None:
        super().__init__()
        self.form = form
        self.cla1 = _projection(form, n_classes, n_mels, 3)
        self.att1 = _projection(form, n_classes, n_mels, 3)
        self.cla2 = _projection(form, n_classes, n_frames, 2)
        self.att2 = _projection(form, n_classes, n_frames, 2)
        if init == "pass_through":
            self._pass_through()

    @torch.no_grad()
    def _pass_through(self) -> None:
        """Identity classification branches (step 2 with gain), zero attention branches."""
        for cla, gain, centre in ((self.cla1, 1.0, 0.0), (self.cla2, STEP2_GAIN, 0.5)):
            layer = _parameters_of(cla)
            n = layer.weight.shape[0]
            layer.weight.copy_(gain * torch.eye(n).view(n, n, *[1] * (layer.weight.ndim - 2)))
            layer.bias.fill_(-gain * centre)
        for att in (self.att1, self.att2):
            nn.init.zeros_(_parameters_of(att).weight)
            nn.init.zeros_(_parameters_of(att).bias)

    def forward(self, z: Tensor) -> Pooled:
        """Clip log-odds Z_p2, the localisation map, Z_p1 (log-odds) and both steps' weights."""
        log_a1 = log_softmax(self.att1(z), dim=3)  # eqs. 8, 10
        step1 = weighted_log_odds(self.cla1(z), log_a1, 3)  # eqs. 9, 11
        p1 = torch.sigmoid(step1)
        log_a2 = log_softmax(self.att2(p1), dim=2)  # eqs. 12, 14
        cla2 = self.cla2(p1)  # eq. 13
        clip = weighted_log_odds(cla2, log_a2, 2)  # eq. 15
        frames = cla2 if self.form == "pointwise" else step1
        return Pooled(clip, frames, log_a1.exp(), log_a2.exp(), step1)


class AtrousAttention(nn.Module):
    """Atrous attention pooling (Ren et al. 2019) over the class maps, with true probabilities.

    Three [Conv5×5 (dilation 1, 2, 4) → BN → ReLU] give each class map context, then 1 × 1
    classification and attention convolutions give p = Σ_{T,F} σ(cla)·softmax_{T,F}(att). The
    softmax over T × F factorises exactly into one over F and one over time, which yields the
    K × T frame map and the two attention maps.
    """

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        k = n_classes
        self.context = nn.Sequential(
            *(
                layer
                for d in (1, 2, 4)
                for layer in (
                    nn.Conv2d(k, k, 5, padding=2 * d, dilation=d, bias=False),
                    nn.BatchNorm2d(k),
                    nn.ReLU(inplace=True),
                )
            )
        )
        self.cla = nn.Conv2d(k, k, 1)
        self.att = nn.Conv2d(k, k, 1)

    def forward(self, z: Tensor) -> Pooled:
        """Clip and frame log-odds with attention over F and over time."""
        h = self.context(z)
        att = self.att(h)
        log_a1 = log_softmax(att, dim=3)
        frames = weighted_log_odds(self.cla(h), log_a1, 3)
        log_a2 = log_softmax(torch.logsumexp(att, dim=3), dim=2)
        return Pooled(weighted_log_odds(frames, log_a2, 2), frames, log_a1.exp(), log_a2.exp())


def make_pooling(
    name: PoolingName,
    n_classes: int,
    n_frames: int,
    n_mels: int,
    form: TwoStepForm = "pointwise",
    r: float = 0.9998,
    init: TwoStepInit = "pass_through",
) -> nn.Module:
    """The pooling module `name` for K class maps of n_frames × n_mels."""
    if name == "two_step":
        return TwoStepAttention(n_classes, n_frames, n_mels, form, init)
    if name == "atrous":
        return AtrousAttention(n_classes)
    return GlobalPooling(name, r)  # GAP, GMP, GWRP; any other name is refused there
