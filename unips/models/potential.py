"""The dynamic potential head (paper section 3.4.1): parameter-free, one channel per instance or stuff class.

For pixel ``i`` and detection ``k`` with box ``B_k``, score ``s_k``, class ``c_k`` and
(optionally) pasted mask ``M_k``, and semantic probabilities ``V``:

=========  =========================  ==================================
variant    without masks              with masks
=========  =========================  ==================================
A          ``V_i(c_k) [i in B_k]``     ``V_i(c_k) M_i(k) [i in B_k]``
B          ``s_k V_i(c_k) [i in B_k]`` ``s_k V_i(c_k) M_i(k) [i in B_k]``
C          ``s_k V_i(c_k) [i in B_k]`` ``s_k (V_i(c_k) + M_i(k)) [i in B_k]``
=========  =========================  ==================================

Every stuff class ``l`` gets a full-image channel ``V_i(l)``. Channels are ordered
stuff first (in the order of ``stuff_classes``), then the detections, so a stuff
class keeps its channel index whatever the number of detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from unips.models.geometry import box_indicator

Variant = Literal["A", "B", "C"]


def dynamic_potential(
    semantic_probs: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    stuff_classes: Sequence[int],
    variant: Variant,
    masks: torch.Tensor | None = None,
    stride: float = 1.0,
    inside: torch.Tensor | None = None,
) -> torch.Tensor:
    """Build ``Psi``.

    Args:
        semantic_probs: ``V``, ``(N_classes, h, w)`` softmax probabilities.
        boxes: ``(D, 4)`` ``x1, y1, x2, y2`` in image pixels.
        scores: ``(D,)`` detection scores ``s_k`` (kept in the autograd graph).
        classes: ``(D,)`` class indices into ``V`` (training ids).
        stuff_classes: the ``N_st`` stuff class indices into ``V``.
        variant: ``"A"``, ``"B"`` or ``"C"``.
        masks: ``(D, h, w)`` mask probabilities ``M`` pasted into the frame, or None (mask-free).
        stride: image pixels per frame pixel (4 for the stride-4 ``V``).
        inside: ``(D, h, w)`` the boxes' indicator ``B`` if the caller has it already (else made here).

    Returns:
        ``(N_st + D, h, w)``.
    """
    stuff = semantic_probs[list(stuff_classes)]
    if boxes.shape[0] == 0:
        return stuff
    height, width = semantic_probs.shape[-2:]
    if inside is None:
        inside = box_indicator(boxes, height, width, stride)
    inside = inside.to(semantic_probs.dtype)
    v = semantic_probs[classes]  # (D, h, w): V_i(c_k)
    s = scores[:, None, None].to(semantic_probs.dtype)
    if masks is None:
        things = v if variant == "A" else s * v
    elif variant == "A":
        things = v * masks
    elif variant == "B":
        things = s * v * masks
    else:
        things = s * (v + masks)
    return torch.cat([stuff, things * inside], dim=0)
