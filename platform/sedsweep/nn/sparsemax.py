"""Sparsemax and its multi-label loss (Martins & Astudillo 2016), as used by He et al. (2020).

Scores z are batched along the last dimension [..., K]. Everything is written with sort,
cumsum and gather, so autograd differentiates the closed form directly: the Jacobian of
sparsemax and the gradient sparsemax(z) − q of the loss come out exact (almost everywhere).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sparsemax_threshold(z: Tensor) -> Tensor:
    """τ(z) of eqs. 6–8 along the last dimension, shaped [..., 1]."""
    z_sorted = z.sort(dim=-1, descending=True).values
    cumsum = z_sorted.cumsum(dim=-1)
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = (1 + k * z_sorted > cumsum).sum(dim=-1, keepdim=True)  # k(z), eq. 7 (a prefix)
    return (cumsum.gather(-1, support - 1) - 1) / support.to(z.dtype)


def sparsemax(z: Tensor) -> Tensor:
    """Eq. 5: the Euclidean projection of z onto the simplex, max(z − τ(z), 0)."""
    return (z - sparsemax_threshold(z)).clamp_min(0)


def sparsemax_loss(z: Tensor, q: Tensor) -> Tensor:
    """Eq. 9 per item: −qᵀz + ½ Σ_{j∈S(z)} (z_j² − τ²(z)) + ½‖q‖², for q on the simplex."""
    tau = sparsemax_threshold(z)
    energy = torch.where(z > tau, z**2 - tau**2, torch.zeros_like(z)).sum(dim=-1)
    return -(q * z).sum(dim=-1) + energy / 2 + (q**2).sum(dim=-1) / 2


def label_distribution(y: Tensor) -> tuple[Tensor, Tensor]:
    """Sec. 3.2's target q = y / ‖y‖₁ (labels as a uniform distribution) and a has-a-label flag.

    A row without any positive has no distribution: its q is all zeros and its flag 0, and the
    callers weight that item's distribution loss by the flag (no loss, no gradient).
    """
    total = y.sum(dim=-1, keepdim=True)
    labelled = (total > 0).to(y.dtype)
    return y / total.clamp_min(torch.finfo(y.dtype).tiny), labelled.squeeze(-1)
