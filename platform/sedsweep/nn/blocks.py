"""Network blocks: conv stacks pooled over frequency only, masked poolings, packed recurrences."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def frame_mask(lengths: Tensor, n_frames: int) -> Tensor:
    """Boolean [B, T]: True on the first lengths[b] frames of each clip."""
    return torch.arange(n_frames, device=lengths.device) < lengths[:, None]


def masked_mean(x: Tensor, mask: Tensor, dims: int | tuple[int, ...]) -> Tensor:
    """Mean of `x` over `dims`, counting only positions where `mask` (broadcast to x) is True."""
    mask = mask.expand_as(x)
    return x.masked_fill(~mask, 0).sum(dims) / mask.sum(dims).clamp_min(1)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv3×3 ('same', no bias) → BatchNorm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FreqPoolCNN(nn.Module):
    """Stages of two conv blocks, each stage followed by max-pooling over frequency only.

    Input [B, T, F] with a frame mask [B, T]; output [B, C, T, F / Π pools]. Padded frames are
    zeroed on input and after every block, so a clip's valid outputs do not depend on its padding
    (in eval mode: batch statistics in training mode still see the padded frames).
    """

    def __init__(self, n_mels: int, channels: int, freq_pools: Sequence[int]) -> None:
        super().__init__()
        self.pools = list(freq_pools)
        self.stages = nn.ModuleList(
            nn.ModuleList([conv_bn_relu(c_in, channels), conv_bn_relu(channels, channels)])
            for c_in in [1] + [channels] * (len(self.pools) - 1)
        )
        bins = n_mels
        for pool in self.pools:
            bins //= pool
        if bins < 1:
            raise ValueError(f"frequency pools {self.pools} reduce {n_mels} mel bins to nothing")
        self.out_bins = bins
        self.out_channels = channels

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Features [B, C, T, F'] of log-mel input [B, T, F]; padded frames are zero."""
        pad = ~mask[:, None, :, None]
        h = x.unsqueeze(1).masked_fill(pad, 0)
        for stage, pool in zip(self.stages, self.pools, strict=True):
            for block in stage:
                h = block(h).masked_fill(pad, 0)
            h = nn.functional.max_pool2d(h, (1, pool))
        return h


def packed_rnn(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
    """Run a batch-first RNN over the valid frames only (lengths on CPU); padded outputs are 0."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
