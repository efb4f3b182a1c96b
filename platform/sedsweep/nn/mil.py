"""Multi-instance learning for frame-level detection from weak labels (Morfi & Stowell 2018).

Losses take frame logits [B, T], a frame mask [B, T] (True = valid frame) and bag labels
Y ∈ {0, 1} [B]; padded frames never affect the value or receive gradient; bags are averaged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits as bce_logits

from sedsweep.nn.blocks import masked_mean

EPS = 1e-7  # Keras' epsilon: probabilities are clipped to [EPS, 1 - EPS] before the log


def _bce(p: Tensor, target: Tensor) -> Tensor:
    """Per-item binary cross-entropy of probabilities (clipped like Keras)."""
    p = p.clamp(EPS, 1 - EPS)
    return -(target * p.log() + (1 - target) * (1 - p).log())


def _bag_max(logits: Tensor, mask: Tensor) -> Tensor:
    """Largest valid logit per bag (= logit of max_t p_t, sigmoid being monotone)."""
    return logits.masked_fill(~mask, -math.inf).amax(dim=1)


def max_loss(logits: Tensor, mask: Tensor, y: Tensor) -> Tensor:
    """MIL with max pooling, eq. 2: BCE(max_t p_t, Y)."""
    return bce_logits(_bag_max(logits.float(), mask), y.float())


def mmm_loss(
    logits: Tensor,
    mask: Tensor,
    y: Tensor,
    w_max: float = 1 / 3,
    w_mean: float = 1 / 3,
    w_min: float = 1 / 3,
) -> Tensor:
    """MMM loss, eq. 5: w_max·BCE(max p, Y) + w_mean·BCE(mean p, Y/2) + w_min·BCE(min p, 0)."""
    logits, y = logits.float(), y.float()
    bag_min = -_bag_max(-logits, mask)
    mean = masked_mean(torch.sigmoid(logits), mask, 1)
    return (
        w_max * bce_logits(_bag_max(logits, mask), y, reduction="none")
        + w_mean * _bce(mean, y / 2)
        + w_min * bce_logits(bag_min, torch.zeros_like(y), reduction="none")
    ).mean()


def noisy_or_loss(logits: Tensor, mask: Tensor, y: Tensor) -> Tensor:
    """Noisy-or MIL, eq. 4: BCE(1 − Π_t (1 − p_t), Y), computed in log space."""
    logits, y = logits.float(), y.float()
    # log(1 − P) = Σ_t log(1 − p_t) = −Σ_t softplus(z_t) = −s;  log P = log(1 − e^{−s})
    s = torch.nn.functional.softplus(logits).masked_fill(~mask, 0).sum(dim=1).clamp_min(1e-30)
    return (-y * torch.log(-torch.expm1(-s)) + (1 - y) * s).mean()


def _cycled(items: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The first n items of back-to-back shuffles of `items` (each shuffle covers all of them)."""
    rounds = -(-n // len(items))
    return np.concatenate([rng.permutation(items) for _ in range(rounds)])[:n]


def half_and_half(
    positives: np.ndarray, negatives: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of Half-and-Half (HnH) batches: batch_size/2 positive + batch_size/2 negative bags.

    The majority side is shuffled and covered completely (its last batch topped up from a
    fresh shuffle); the minority side is reshuffled and cycled, i.e. duplicated, to match.
    """
    if batch_size < 2 or batch_size % 2:
        raise ValueError(f"Half-and-Half needs an even batch size ≥ 2, not {batch_size}")
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("Half-and-Half needs both positive and negative training clips")
    half = batch_size // 2
    n_batches = -(-max(len(positives), len(negatives)) // half)
    pos = _cycled(positives, n_batches * half, rng).reshape(n_batches, half)
    neg = _cycled(negatives, n_batches * half, rng).reshape(n_batches, half)
    return list(np.concatenate([pos, neg], axis=1))
