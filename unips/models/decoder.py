"""The Panoptic-FPN semantic decoder, with GroupNorm after each 3x3 conv (paper section 3.2).

The semantic head is this decoder with one output channel per class; the
affinity feature extractor that produces ``Q`` has "the same architecture"
(section 3.4.2) with ``C`` output channels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from unips.models.backbone import FPN_LEVELS

#: The stride of the decoder's output (that of P2), and so of ``V``, ``Q``, ``Psi`` and ``P``.
OUTPUT_STRIDE = 4


class _ConvGNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(math.gcd(32, out_channels), out_channels),
            nn.ReLU(inplace=True),
        )


class FPNDecoder(nn.Module):
    """Upsample every FPN level to stride 4 and sum them, then a 1x1 conv to ``out_channels``.

    Level ``P_k`` (stride ``2^k``) goes through ``max(1, k - 2)`` blocks of 3x3 conv + GN + ReLU,
    each but P2's followed by 2x bilinear upsampling.

    ``forward(features)`` takes the ``"0"``..``"3"`` maps ``(B, in_channels, H / s, W / s)`` and
    returns ``(B, out_channels, H / 4, W / 4)``.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for level in range(len(FPN_LEVELS)):
            blocks = [_ConvGNReLU(in_channels if i == 0 else channels, channels) for i in range(max(1, level))]
            self.levels.append(nn.ModuleList(blocks))
        self.predictor = nn.Conv2d(channels, out_channels, 1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for level, blocks in zip(FPN_LEVELS, self.levels, strict=True):
            x = features[level]
            for block in blocks:
                x = block(x)
                if level != "0":
                    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return self.predictor(total)
