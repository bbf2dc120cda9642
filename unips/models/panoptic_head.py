"""The panoptic segmentation submodule: dynamic potential head + optional dense instance affinity head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unips.models.affinity import AffinityHead
from unips.models.decoder import OUTPUT_STRIDE
from unips.models.geometry import box_indicator
from unips.models.potential import Variant, dynamic_potential


class PanopticHead(nn.Module):
    """``Psi`` from semantic probabilities and detections, then ``P`` through the affinity head.

    Args:
        stuff_classes: training ids of the stuff classes, one full-image channel each (first).
        variant: potential head variant ``"A"``, ``"B"`` or ``"C"``.
        affinity: the affinity head (the ablation's ``aff``), or None for ``P = Psi``.
        stride: image pixels per pixel of ``V``.
    """

    def __init__(
        self,
        stuff_classes: Sequence[int],
        variant: Variant = "B",
        affinity: AffinityHead | None = None,
        stride: int = OUTPUT_STRIDE,
    ) -> None:
        super().__init__()
        self.stuff_classes = list(stuff_classes)
        self.variant = variant
        self.affinity = affinity
        self.stride = stride

    def affinity_features(self, fpn: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """``Q``, ``(B, C, H / 4, W / 4)``, or None without the affinity head."""
        return self.affinity.features(fpn) if self.affinity is not None else None

    def forward(
        self,
        semantic_probs: torch.Tensor,
        detections: Mapping[str, torch.Tensor],
        masks: torch.Tensor | None = None,
        q: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One image.

        Args:
            semantic_probs: ``V``, ``(N_classes, h, w)``.
            detections: ``boxes`` (D, 4) image pixels, ``scores`` (D,), ``labels`` (D,) training ids.
            masks: ``(D, h, w)`` mask probabilities pasted into the frame, or None.
            q: ``(C, h, w)`` affinity features, needed with the affinity head.

        Returns:
            ``(Psi, P)``, each ``(N_st + D, h, w)``; ``P`` is None without the affinity head.
        """
        boxed = self.affinity is not None and self.affinity.support == "box"
        height, width = semantic_probs.shape[-2:]
        # The box-limited affinity reuses the indicator the potential is made with.
        inside = box_indicator(detections["boxes"], height, width, self.stride) if boxed else None
        psi = dynamic_potential(semantic_probs, detections["boxes"], detections["scores"], detections["labels"],
                                self.stuff_classes, self.variant, masks, self.stride, inside)
        if self.affinity is None:
            return psi, None
        if q is None:
            raise ValueError("the affinity head needs the affinity features q")
        support = None
        if inside is not None:
            stuff = psi.new_ones(len(self.stuff_classes), height, width)
            support = torch.cat([stuff, inside.to(psi.dtype)])
        return psi, self.affinity(q, psi, support)
