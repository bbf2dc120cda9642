"""The unified panoptic network (backbone, heads, losses, inference). Imports with torch and torchvision alone."""

from unips.models.affinity import AffinityHead, affinity_product
from unips.models.backbone import ResNetFPN
from unips.models.decoder import FPNDecoder
from unips.models.detector import Detector, build_detector
from unips.models.panoptic_head import PanopticHead
from unips.models.panoptic_net import UnifiedPanopticNet
from unips.models.potential import dynamic_potential

__all__ = [
    "AffinityHead",
    "Detector",
    "FPNDecoder",
    "PanopticHead",
    "ResNetFPN",
    "UnifiedPanopticNet",
    "affinity_product",
    "build_detector",
    "dynamic_potential",
]
