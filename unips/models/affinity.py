"""The dense instance affinity head (paper section 3.4.2), in linear memory.

``P = Psi + g phi1(Q) (phi0(Q)^T Psi S)`` revises the potential with learnt pairwise
affinities ``A = phi1(Q) phi0(Q)^T`` without ever forming the ``n x n`` matrix
``A``: the product is taken right to left, ``phi0(Q)^T Psi`` being only ``C x K``.
``phi0``, ``phi1`` are 1x1 convolutions followed by an activation (the paper names
none). The forms below are switches because the paper leaves them open and they
decide whether end-to-end training works (docs/design.md, "The affinity correction"):

* ``S``: ``1 / n`` by default, so the correction does not grow with the image; or, per
  channel, one over the channel's mass ``sum_j Psi_j(k)``, so that a large segment does not
  outweigh a small one just by its area.
* ``centre``: subtract the pixel mean of ``phi0(Q)``. With a ReLU, ``A >= 0`` carries a
  large constant part, and ``s A Psi`` then adds each channel's image mean to every
  pixel: a global boost of large (stuff) channels that the loss rewards and that
  erases small things. Centred, every row of ``A`` sums to zero. Still linear in ``n``.
* ``g``: a learnt scalar gain, initialised at 0, so training starts from ``P = Psi``
  and the affinities enter only as far as they help; without it ``g = 1``.
* ``support``: where each channel may be revised. Over the whole image, a detection's
  channel gains at every pixel that looks like its instance, so of two instances of one
  class the one the correction favours takes pixels of the other far outside its own box.
  Limited to the detection's box (stuff channels keep the whole image), the correction
  can only redraw boundaries where ``Psi`` already puts the instance; ``P_k = Psi_k = 0``
  elsewhere, as in the potential itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from unips.models.decoder import FPNDecoder

AffinityActivation = Literal["relu", "identity"]
MASS_FLOOR = 1.0  # "mass" scaling: a channel with less than one pixel's worth of Psi is not scaled up


AffinityScale = Literal["pixels", "mass", "none"]
AffinitySupport = Literal["image", "box"]


def affinity_product(
    psi: torch.Tensor,
    q0: torch.Tensor,
    q1: torch.Tensor,
    scale: AffinityScale = "pixels",
    centre: bool = False,
    gain: torch.Tensor | float = 1.0,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """``P = Psi + g W * (q1^T ((q0 - mean(q0)) Psi^T S))^T``, right to left.

    Args:
        psi: ``(K, n)`` potential, one row per channel.
        q0: ``(C, n)`` ``phi0(Q)`` flattened.
        q1: ``(C, n)`` ``phi1(Q)`` flattened.
        scale: ``S``: ``"pixels"`` = ``1 / n``; ``"mass"`` = ``1 / sum_j Psi_j(k)`` per channel ``k``,
            so each channel is revised by how alike pixel ``i`` is to its (Psi-weighted) mean feature,
            whatever its area; ``"none"`` = 1.
        centre: subtract each row's mean over the ``n`` pixels from ``q0`` first.
        gain: ``g``, a float or a 0-d tensor (learnt).
        support: ``W``, ``(K, n)`` weights in [0, 1] of where each channel may be revised, or None
            for everywhere.

    Returns:
        ``(K, n)``. Extra memory beyond the output is the ``(C, K)`` product (and ``q0`` centred),
        and with ``support`` one more ``(K, n)`` tensor.
    """
    if centre:
        q0 = q0 - q0.mean(dim=1, keepdim=True)
    small = q0 @ psi.T  # (C, K): phi0(Q)^T Psi
    if scale == "pixels":
        small = small / psi.shape[1]
    elif scale == "mass":
        small = small / psi.sum(dim=1).clamp(min=MASS_FLOOR)
    if support is None:
        return torch.addmm(psi, (small * gain).T, q1)  # (C, K)-sized work before the one (K, n) product
    return psi + support * ((small * gain).T @ q1)


class AffinityHead(nn.Module):
    """Affinity features ``Q`` from the FPN, and the affinity operation applied per image.

    Args:
        in_channels: FPN channels.
        decoder_channels: hidden channels of the decoder (as the semantic head's).
        channels: ``C``, the channels of ``Q`` (128 in the paper).
        scale: the correction's scaling (see :func:`affinity_product`).
        activation: after each of ``phi0``, ``phi1``.
        centre: centre ``phi0(Q)`` over the pixels of each image.
        learn_gain: a learnt gain on the correction, initialised at 0 (else the gain is 1).
        support: where a detection's channel is revised: the ``"image"`` or its ``"box"``.
    """

    def __init__(
        self,
        in_channels: int,
        decoder_channels: int,
        channels: int = 128,
        scale: AffinityScale = "mass",
        activation: AffinityActivation = "relu",
        centre: bool = True,
        learn_gain: bool = True,
        support: AffinitySupport = "image",
    ) -> None:
        super().__init__()
        self.decoder = FPNDecoder(in_channels, decoder_channels, channels)
        self.phi0 = nn.Conv2d(channels, channels, 1)
        self.phi1 = nn.Conv2d(channels, channels, 1)
        self.scale = scale
        self.activation = activation
        self.centre = centre
        self.gain = nn.Parameter(torch.zeros(())) if learn_gain else None
        self.support = support

    def features(self, fpn: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Q``: ``(B, C, H / 4, W / 4)``."""
        return self.decoder(fpn)

    def forward(self, q: torch.Tensor, psi: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the affinities of one image.

        Args:
            q: ``(C, h, w)`` affinity features of the image.
            psi: ``(K, h, w)`` its potential.
            boxes: ``(K, h, w)`` box indicators, 1 everywhere for a stuff channel; needed with
                ``support="box"``, ignored otherwise.

        Returns:
            ``P``: ``(K, h, w)``.
        """
        k, height, width = psi.shape
        flat = q.reshape(q.shape[0], -1)
        q0, q1 = self._phi(self.phi0, flat), self._phi(self.phi1, flat)
        gain = 1.0 if self.gain is None else self.gain
        support = None
        if self.support == "box":
            if boxes is None:
                raise ValueError("support='box' needs the box indicators of the channels")
            support = boxes.reshape(k, -1)
        p = affinity_product(psi.reshape(k, -1), q0, q1, self.scale, self.centre, gain, support)
        return p.reshape(k, height, width)

    def _phi(self, conv: nn.Conv2d, flat: torch.Tensor) -> torch.Tensor:
        """``activation(conv(Q))`` on ``(C, n)`` features: a 1x1 convolution is this matrix product.

        Computed as one ``addmm`` on the flattened map, it needs no layout-conversion buffers
        (a ``Conv2d`` call took ~40 MB more at n = 65,000); the ReLU runs in place because
        the product's backward does not need its output.
        """
        out = torch.addmm(conv.bias[:, None], conv.weight.flatten(1), flat)
        return out.relu_() if self.activation == "relu" else out
