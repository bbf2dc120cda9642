"""The post-processor's three inference modes on hand-built outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unips.config import InferenceMode
from unips.models.geometry import upsampled_argmax
from unips.models.panoptic_net import ImageOutput
from unips.models.postprocess import PanopticPostprocessor, channels_to_panoptic, heuristic_merge

CAR, ROAD, SKY = 2, 0, 1  # training ids; road and sky are stuff
STUFF = [ROAD, SKY]


def test_heuristic_merge_drops_covered_instances_and_leaves_uncovered_thing_pixels_void() -> None:
    masks = np.zeros((3, 10, 10), dtype=bool)
    masks[0, 2:8, 2:8] = True  # best car
    masks[1, 3:8, 3:8] = True  # mostly under car 0: dropped
    masks[2, 6:10, 6:10] = True  # partly under car 0 (4 of 16 px): kept, its free pixels only
    scores = np.array([0.8, 0.9, 0.7])  # pasted from the highest score down: car 1 first
    masks[[0, 1]] = masks[[1, 0]]
    semantic = np.full((10, 10), ROAD)
    semantic[9, 0:2] = SKY
    semantic[2:4, 0:2] = CAR  # car pixels that no instance covers: void
    panoptic, segments = heuristic_merge(masks, scores, np.array([CAR, CAR, CAR]), semantic, STUFF,
                                         overlap_thresh=0.5)
    assert [(s["train_id"], s["score"]) for s in segments] == [(CAR, 0.9), (CAR, 0.7), (ROAD, 1.0), (SKY, 1.0)]
    areas = {s["id"]: int((panoptic == s["id"]).sum()) for s in segments}
    assert list(areas.values()) == [36, 12, 100 - 36 - 12 - 4 - 2, 2]  # car 2 keeps 16 minus car 1's 4
    assert (panoptic[2:4, 0:2] == 0).all()


def test_channels_become_segments_of_their_class() -> None:
    channel_map = np.array([[0, 0, 2], [1, 1, 2], [1, 4, 4]])
    classes = [ROAD, SKY, CAR, CAR, CAR]  # channel 3 wins no pixel: no segment
    panoptic, segments = channels_to_panoptic(channel_map, classes, [1, 1, 0.9, 0.8, 0.7])
    assert [(s["train_id"], s["score"]) for s in segments] == [(ROAD, 1.0), (SKY, 1.0), (CAR, 0.9), (CAR, 0.7)]
    assert panoptic.tolist() == [[1, 1, 3], [2, 2, 3], [2, 4, 4]]


def _output(with_p: bool = True) -> ImageOutput:
    """An 8x8 image: road everywhere but a car (kept, score 0.9) and a weak duplicate not kept (0.3).

    On the 2x2 frame (stride 4) ``Psi`` puts the car in the top-left cell; ``P`` moves it to the
    bottom-right one, so the two argmax modes differ.
    """
    psi = torch.zeros(3, 2, 2)  # channels: road, sky, the kept car
    psi[0] = 0.5
    psi[2, 0, 0] = 0.9
    p = psi.clone()
    p[2] = 0.0
    p[2, 1, 1] = 0.9
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, 4:] = True  # the kept car's mask: top right
    masks[1] = True  # the duplicate covers everything, and must not enter the merge
    semantic = torch.full((8, 8), ROAD)
    semantic[:, :2] = SKY
    detections = {"boxes": torch.tensor([[4.0, 0, 8, 4], [0, 0, 8, 8]]), "scores": torch.tensor([0.9, 0.3]),
                  "labels": torch.tensor([CAR, CAR]), "masks": masks}
    return ImageOutput(image_id=7, semantic=semantic, psi=psi, p=p if with_p else None,
                       channel_classes=[ROAD, SKY, CAR], channel_scores=[1.0, 1.0, 0.9], detections=detections,
                       kept=torch.tensor([True, False]))


def test_each_mode_reads_its_own_output() -> None:
    postprocess = PanopticPostprocessor(["full", "amx", "heu"], STUFF, overlap_thresh=0.5, stride=4)
    predictions = postprocess(_output())
    assert list(predictions) == [InferenceMode.FULL, InferenceMode.AMX, InferenceMode.HEU]
    car = {mode: [s for s in prediction.segments if s["train_id"] == CAR] for mode, prediction in predictions.items()}
    assert all(len(segments) == 1 and segments[0]["score"] == pytest.approx(0.9) for segments in car.values())
    where = {mode: prediction.panoptic.numpy() == car[mode][0]["id"] for mode, prediction in predictions.items()}
    assert where["amx"][0, 0] and not where["amx"][7, 7]  # argmax of Psi: top left
    assert where["full"][7, 7] and not where["full"][0, 0]  # argmax of P: bottom right
    assert where["heu"].sum() == 16 and where["heu"][:4, 4:].all()  # the kept mask only, not the duplicate
    heu = predictions["heu"]
    assert {s["train_id"]: s["area"] for s in heu.segments} == {CAR: 16, ROAD: 64 - 16 - 16, SKY: 16}
    assert all(s["bbox"] is not None for s in heu.segments)


def test_a_mode_the_network_cannot_answer_is_named() -> None:
    with pytest.raises(ValueError, match="'full'.*affinity head"):
        PanopticPostprocessor(["full"], STUFF)(_output(with_p=False))
    no_masks = _output()
    del no_masks.detections["masks"]
    with pytest.raises(ValueError, match="'heu'.*mask head"):
        PanopticPostprocessor(["heu"], STUFF)(no_masks)
    with pytest.raises(ValueError, match="'best'"):
        PanopticPostprocessor(["best"], STUFF)


def test_upsampled_argmax_equals_a_single_full_resolution_argmax() -> None:
    logits = torch.randn(37, 5, 9, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0].argmax(0)
    torch.testing.assert_close(upsampled_argmax(logits, 18, 33, stride=4, chunk=8), expected[:18, :33])
