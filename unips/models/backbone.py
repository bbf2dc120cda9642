"""ResNet-FPN backbone with squeeze-and-excitation on C5 (paper section 3.1).

Built from torchvision's ResNet and ``FeaturePyramidNetwork``. ImageNet weights
come only from a local torchvision state-dict file; nothing is downloaded.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork, SqueezeExcitation
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

_RESNETS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
#: The FPN levels P2..P5 in the feature dict (torchvision's names), at strides 4, 8, 16, 32; the RPN
#: also gets P6 as "pool".
FPN_LEVELS = ("0", "1", "2", "3")


def _norm_layer(norm: Literal["frozen_bn", "bn", "gn"]) -> type[nn.Module] | object:
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    return lambda channels: nn.GroupNorm(math.gcd(32, channels), channels)


def load_resnet_weights(body: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a torchvision ResNet state dict (``fc.*`` ignored) into the backbone body.

    A missing file, or one whose tensors do not fit (another depth, or BN weights into a
    GroupNorm body), raises an error naming the file and the keys at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path} (weights are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        incompatible = body.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path} does not fit this ResNet: {err}") from err
    missing = list(incompatible.missing_keys)
    unexpected = list(incompatible.unexpected_keys)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this ResNet: missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


class ResNetFPN(nn.Module):
    """ResNet body, SE block on C5, FPN.

    Args:
        depth: 18, 34, 50 or 101.
        fpn_channels: channels of every FPN level (256 in the paper).
        se_on_c5: squeeze-and-excitation on the last stage's output before the FPN.
        norm: ``frozen_bn`` (the paper, with ImageNet weights), ``bn`` or ``gn`` (from scratch).
        freeze_at: 0 trains everything; 1 freezes the stem; k > 1 also the first k - 1 stages.
        pretrained: local torchvision ResNet state-dict file, or None.

    ``forward(x (B, 3, H, W))`` with H, W multiples of 32 returns an ordered dict of
    ``(B, fpn_channels, H / s, W / s)`` maps for ``"0"``..``"3"`` (P2..P5, s = 4..32) and
    ``"pool"`` (P6, s = 64, for the RPN).
    """

    def __init__(
        self,
        depth: Literal[18, 34, 50, 101] = 50,
        fpn_channels: int = 256,
        se_on_c5: bool = True,
        norm: Literal["frozen_bn", "bn", "gn"] = "frozen_bn",
        freeze_at: int = 2,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        net = _RESNETS[depth](weights=None, norm_layer=_norm_layer(norm))
        self.body = IntermediateLayerGetter(net, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"})
        if pretrained is not None:
            load_resnet_weights(self.body, pretrained)
        elif freeze_at > 0:
            warnings.warn(f"freeze_at={freeze_at} freezes randomly initialised layers: give backbone weights "
                          "or set model.backbone.freeze_at=0", stacklevel=2)
        frozen = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]][:freeze_at]
        for name, module in self.body.named_children():
            if any(name in group for group in frozen):
                module.requires_grad_(False)
        widths = [64, 128, 256, 512] if depth in (18, 34) else [256, 512, 1024, 2048]
        self.se = SqueezeExcitation(widths[-1], widths[-1] // 16) if se_on_c5 else nn.Identity()
        self.fpn = FeaturePyramidNetwork(widths, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c = self.body(x)
        c["3"] = self.se(c["3"])
        return self.fpn(c)
