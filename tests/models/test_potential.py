"""Every cell of the dynamic potential head's table, by hand on a 4x4 image with 2 boxes and 1 stuff class."""

from __future__ import annotations

import pytest
import torch

from unips.models.potential import dynamic_potential

# Classes: 0 = car (thing), 1 = person (thing), 2 = road (stuff). V is constant per class, so each
# expected value below is plain arithmetic on these numbers.
V = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 0.25), torch.full((4, 4), 0.25)])
V[2, 3, 3] = 0.75  # the stuff channel must copy V everywhere, including this pixel
BOXES = torch.tensor([[0.0, 0.0, 2.0, 2.0],  # car: rows 0-1, columns 0-1
                      [1.0, 1.0, 4.0, 3.0]])  # person: rows 1-2, columns 1-3
SCORES = torch.tensor([0.9, 0.6])
CLASSES = torch.tensor([0, 1])
MASKS = torch.stack([torch.full((4, 4), 0.8), torch.full((4, 4), 0.4)])

IN_CAR = torch.zeros(4, 4)
IN_CAR[0:2, 0:2] = 1
IN_PERSON = torch.zeros(4, 4)
IN_PERSON[1:3, 1:4] = 1

# (variant, with masks) -> (value inside the car box, value inside the person box)
EXPECTED = {
    ("A", False): (0.5, 0.25),
    ("B", False): (0.9 * 0.5, 0.6 * 0.25),
    ("C", False): (0.9 * 0.5, 0.6 * 0.25),
    ("A", True): (0.5 * 0.8, 0.25 * 0.4),
    ("B", True): (0.9 * 0.5 * 0.8, 0.6 * 0.25 * 0.4),
    ("C", True): (0.9 * (0.5 + 0.8), 0.6 * (0.25 + 0.4)),
}


@pytest.mark.parametrize(("variant", "with_masks"), list(EXPECTED))
def test_each_cell_of_the_table(variant: str, with_masks: bool) -> None:
    psi = dynamic_potential(V, BOXES, SCORES, CLASSES, stuff_classes=[2], variant=variant,
                            masks=MASKS if with_masks else None)
    car, person = EXPECTED[(variant, with_masks)]
    assert psi.shape == (3, 4, 4)  # N_st + D channels, stuff first
    torch.testing.assert_close(psi[0], V[2])
    torch.testing.assert_close(psi[1], car * IN_CAR)
    torch.testing.assert_close(psi[2], person * IN_PERSON)


def test_channel_count_follows_the_detections() -> None:
    assert dynamic_potential(V, BOXES[:0], SCORES[:0], CLASSES[:0], [2], "B").shape == (1, 4, 4)
    three = dynamic_potential(V, BOXES[[0, 1, 1]], SCORES[[0, 1, 1]], CLASSES[[0, 1, 1]], [2, 0], "B")
    assert three.shape == (5, 4, 4)


def test_scores_keep_their_gradient() -> None:
    scores = SCORES.clone().requires_grad_(True)
    dynamic_potential(V, BOXES, scores, CLASSES, [2], "B").sum().backward()
    torch.testing.assert_close(scores.grad, torch.tensor([0.5 * 4, 0.25 * 6]))


def test_stride_maps_image_boxes_to_the_frame() -> None:
    """At stride 4 the 4x4 frame covers a 16x16 image; a box over image pixels 4..12 covers frame cells 1..2."""
    psi = dynamic_potential(V, torch.tensor([[4.0, 4.0, 12.0, 8.0]]), torch.ones(1), torch.tensor([0]), [2], "A",
                            stride=4)
    expected = torch.zeros(4, 4)
    expected[1, 1:3] = 0.5
    torch.testing.assert_close(psi[1], expected)
