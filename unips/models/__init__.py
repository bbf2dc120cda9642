"""The unified panoptic network (backbone, heads, losses) and its post-processor. Imports with torch and
torchvision alone (plus the package's pydantic configuration types)."""

from unips.models.affinity import AffinityHead, affinity_product
from unips.models.backbone import ResNetFPN
from unips.models.decoder import FPNDecoder
from unips.models.detector import Detector, build_detector
from unips.models.panoptic_head import PanopticHead
from unips.models.panoptic_net import ImageOutput, UnifiedPanopticNet
from unips.models.postprocess import PanopticPostprocessor, PanopticPrediction
from unips.models.potential import dynamic_potential

__all__ = [
    "AffinityHead",
    "Detector",
    "FPNDecoder",
    "ImageOutput",
    "PanopticHead",
    "PanopticPostprocessor",
    "PanopticPrediction",
    "ResNetFPN",
    "UnifiedPanopticNet",
    "affinity_product",
    "build_detector",
    "dynamic_potential",
]
