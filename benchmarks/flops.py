"""FLOPs of each part of the network at the paper's 800x1300 input (COCO: 80 things, 53 stuff).

    python benchmarks/flops.py

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add;
the paper's "5 vs 140 billion" fit multiply-adds, the ratio is the same). The input is
padded to 800x1312 as the network does (multiples of 32); the affinity operation works
on the image's own 200x325 stride-4 grid (n = 65,000), with D = 100 detections and
N_st = 53 stuff channels (K = 153) and C = 128. The detector is counted at its working
load: RPN, the box head on 1000 proposals, the mask head on D = 100 boxes (a random
detector would keep almost no detection and make the mask head look free).

Last line: ``flops backbone_g=<a> decoder_g=<c> affinity_g=<b> ratio=<b/a>``.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection.image_list import ImageList

from unips.models.affinity import AffinityHead
from unips.models.backbone import ResNetFPN
from unips.models.decoder import FPNDecoder
from unips.models.detector import build_detector

HEIGHT, WIDTH, PADDED_WIDTH = 800, 1300, 1312
THINGS, STUFF, DETECTIONS, CHANNELS = 80, 53, 100, 128


def count(fn) -> float:  # type: ignore[no-untyped-def]
    """GFLOPs of one call."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    torch.manual_seed(0)
    backbone = ResNetFPN(50, 256, norm="frozen_bn", freeze_at=0).eval()
    semantic = FPNDecoder(256, 128, THINGS + STUFF).eval()
    q_decoder = FPNDecoder(256, 128, CHANNELS).eval()
    affinity = AffinityHead(8, 8, CHANNELS).eval()
    detector = build_detector(list(range(THINGS)), 256, with_masks=True).eval()
    image = torch.randn(1, 3, HEIGHT, PADDED_WIDTH)
    with torch.no_grad():
        features = backbone(image)

    parts = {"backbone (ResNet-50-FPN + SE)": count(lambda: backbone(image))}
    parts["semantic head"] = count(lambda: semantic(features))
    images = ImageList(image, [(HEIGHT, WIDTH)])

    def detect() -> None:
        proposals, _ = detector.rpn(images, features)
        heads = detector.roi_heads
        boxes = heads.box_head(heads.box_roi_pool(features, proposals, images.image_sizes))
        heads.box_predictor(boxes)
        xy = torch.rand(DETECTIONS, 2) * torch.tensor([WIDTH - 100, HEIGHT - 100])
        dets = [{"boxes": torch.cat([xy, xy + 100], 1), "labels": torch.zeros(DETECTIONS, dtype=torch.long)}]
        detector.mask_probs(features, dets, images.image_sizes)

    parts["detector (RPN, box head x1000, mask head x100)"] = count(detect)
    parts["Q decoder"] = count(lambda: q_decoder(features))
    q = torch.randn(CHANNELS, HEIGHT // 4, WIDTH // 4)
    psi = torch.rand(DETECTIONS + STUFF, HEIGHT // 4, WIDTH // 4)
    parts["affinity operation (phi0, phi1, two products)"] = count(lambda: affinity(q, psi))

    for name, gflops in parts.items():
        print(f"{name:<50} {gflops:9.1f} GFLOPs  ({gflops / 2:7.1f} G multiply-adds)")
    backbone_g = parts["backbone (ResNet-50-FPN + SE)"]
    affinity_g = parts["affinity operation (phi0, phi1, two products)"]
    print(f"flops backbone_g={backbone_g:.1f} decoder_g={parts['Q decoder']:.1f} affinity_g={affinity_g:.1f} "
          f"ratio={affinity_g / backbone_g:.4f}")


if __name__ == "__main__":
    main()
