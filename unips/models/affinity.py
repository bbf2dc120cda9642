"""The dense instance affinity head (paper section 3.4.2), in linear memory.

``P = Psi + phi1(Q) (phi0(Q)^T Psi)`` revises the potential with learnt pairwise
affinities ``A = phi1(Q) phi0(Q)^T`` without ever forming the ``n x n`` matrix
``A``: the product is taken right to left, ``phi0(Q)^T Psi`` being only ``C x K``.
By default the correction is scaled by ``1 / n`` so its size does not grow with
the image (DESIGN.md 2.2); ``phi0``, ``phi1`` are 1x1 convolutions followed by a
ReLU (the paper says "an activation"; ReLU keeps affinities non-negative).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from unips.models.decoder import FPNDecoder


def affinity_product(psi: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``P = Psi + s q1^T (q0 Psi^T)^T``, right to left, with ``s = 1/n`` or 1.

    Args:
        psi: ``(K, n)`` potential, one row per channel.
        q0: ``(C, n)`` ``phi0(Q)`` flattened.
        q1: ``(C, n)`` ``phi1(Q)`` flattened.

    Returns:
        ``(K, n)``. Extra memory beyond the output is the ``(C, K)`` product.
    """
    n = psi.shape[1]
    small = q0 @ psi.T  # (C, K): phi0(Q)^T Psi
    return torch.addmm(psi, small.T, q1, alpha=1.0 / n if normalize else 1.0)


def naive_affinity_product(psi: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Reference only: forms the ``(n, n)`` affinity matrix. Same arguments as :func:`affinity_product`."""
    affinity = q1.T @ q0  # (n, n): A_ij = phi1(Q)_i . phi0(Q)_j
    correction = (affinity @ psi.T).T
    return psi + correction / (psi.shape[1] if normalize else 1.0)


class AffinityHead(nn.Module):
    """Affinity features ``Q`` from the FPN, and the affinity operation applied per image.

    Args:
        in_channels: FPN channels.
        decoder_channels: hidden channels of the decoder (as the semantic head's).
        channels: ``C``, the channels of ``Q`` (128 in the paper).
        normalize: scale the correction by ``1 / n``.
    """

    def __init__(self, in_channels: int, decoder_channels: int, channels: int = 128, normalize: bool = True) -> None:
        super().__init__()
        self.decoder = FPNDecoder(in_channels, decoder_channels, channels)
        self.phi0 = nn.Conv2d(channels, channels, 1)
        self.phi1 = nn.Conv2d(channels, channels, 1)
        self.normalize = normalize

    def features(self, fpn: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Q``: ``(B, C, H / 4, W / 4)``."""
        return self.decoder(fpn)

    def forward(self, q: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Apply the affinities of one image.

        Args:
            q: ``(C, h, w)`` affinity features of the image.
            psi: ``(K, h, w)`` its potential.

        Returns:
            ``P``: ``(K, h, w)``.
        """
        k, height, width = psi.shape
        flat = q.reshape(q.shape[0], -1)
        q0, q1 = self._phi(self.phi0, flat), self._phi(self.phi1, flat)
        return affinity_product(psi.reshape(k, -1), q0, q1, self.normalize).reshape(k, height, width)

    @staticmethod
    def _phi(conv: nn.Conv2d, flat: torch.Tensor) -> torch.Tensor:
        """``ReLU(conv(Q))`` on ``(C, n)`` features: a 1x1 convolution is this matrix product.

        Computed as one ``addmm`` on the flattened map, it needs no layout-conversion buffers
        (a ``Conv2d`` call took ~40 MB more at n = 65,000); the ReLU runs in place because
        the product's backward does not need its output.
        """
        return torch.addmm(conv.bias[:, None], conv.weight.flatten(1), flat).relu_()
