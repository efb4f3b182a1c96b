"""Training-time augmentation of log-mel batches [B, T, F]: mixup and SpecAugment.

Both are parameter-free modules, so `.train()` / `.eval()` switch them together with a
network; in eval mode they return their inputs unchanged. Their randomness comes from the
numpy Generator passed to each call (a method's one rng, which its checkpoints save).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class Mixup(nn.Module):
    """Mixup (Zhang et al. 2018): λ·(x_i, y_i) + (1 − λ)·(x_j, y_j), λ ~ Beta(α, α) per item."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(
        self, x: Tensor, y: Tensor, rng: np.random.Generator, groups: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mix each item with a random partner from its own group (all one group when None)."""
        if not self.training:
            return x, y
        groups = np.zeros(len(x), dtype=np.int64) if groups is None else np.asarray(groups)
        partner = np.arange(len(x))
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            partner[members] = rng.permutation(members)
        lam = torch.from_numpy(rng.beta(self.alpha, self.alpha, len(x))).to(x.device, x.dtype)
        j = torch.from_numpy(partner).to(x.device)
        lx = lam.view(-1, *[1] * (x.ndim - 1))
        ly = lam.view(-1, *[1] * (y.ndim - 1)).to(y.dtype)
        return lx * x + (1 - lx) * x[j], ly * y + (1 - ly) * y[j]


def _bands(rng: np.random.Generator, b: int, n: int, count: int, width: int) -> np.ndarray:
    """Boolean [b, n]: `count` bands per item, each of a width drawn from 0..width, anywhere."""
    widths = rng.integers(0, width + 1, (b, count))
    starts = rng.integers(0, n - widths + 1)
    pos = np.arange(n)
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return inside.any(axis=1)


def time_warp(x: Tensor, rng: np.random.Generator, w: int) -> Tensor:
    """SpecAugment time warp: frame c ∈ [w, T−1−w] moves by d ∈ [−w, w], linear in between."""
    b, t, _ = x.shape
    if w < 1 or t <= 2 * w + 1:
        return x
    c = rng.integers(w, t - w, b)[:, None].astype(np.float64)
    moved = c + rng.integers(-w, w + 1, b)[:, None]
    out = np.arange(t, dtype=np.float64)[None, :]
    left = out * c / np.maximum(moved, 1e-9)
    right = c + (out - moved) * (t - 1 - c) / np.maximum(t - 1 - moved, 1e-9)
    src = np.clip(np.where(out <= moved, left, right), 0, t - 1)
    lo = np.floor(src).astype(np.int64)
    frac = torch.from_numpy(src - lo).to(x.device, x.dtype)[..., None]
    i0 = torch.from_numpy(lo).to(x.device)[..., None].expand_as(x)
    i1 = (i0 + 1).clamp_max(t - 1)
    x0, x1 = x.gather(1, i0), x.gather(1, i1)
    return x0 + frac * (x1 - x0)


class SpecAugment(nn.Module):
    """SpecAugment (Park et al. 2019): time warp, then frequency and time masks set to 0."""

    def __init__(
        self, freq_masks: int, freq_width: int, time_masks: int, time_width: int, warp: int
    ) -> None:
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.warp = warp

    def forward(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        """Augmented features (0 is the mean of z-scored features)."""
        if not self.training:
            return x
        b, t, f = x.shape
        x = time_warp(x, rng, self.warp)
        masked = torch.from_numpy(
            _bands(rng, b, t, self.time_masks, self.time_width)[:, :, None]
            | _bands(rng, b, f, self.freq_masks, self.freq_width)[:, None, :]
        ).to(x.device)
        return x.masked_fill(masked, 0.0)
