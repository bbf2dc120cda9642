"""Box indicators and differentiable mask pasting against independent references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unips.models.geometry import box_indicator, paste_masks


def test_box_indicator_gives_the_covered_share_of_each_frame_pixel() -> None:
    inside = box_indicator(torch.tensor([[2.0, 0.0, 6.0, 4.0]]), height=2, width=3, stride=4)
    # Frame columns cover image x in [0,4), [4,8), [8,12): the box [2, 6) covers half of the first two.
    torch.testing.assert_close(inside[0], torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    hard = box_indicator(torch.tensor([[1.0, 1.0, 3.0, 2.0]]), height=3, width=4, stride=1)[0]
    expected = torch.zeros(3, 4)
    expected[1, 1:3] = 1.0
    torch.testing.assert_close(hard, expected)


def test_paste_masks_equals_grid_sample_with_zero_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 28, 28, generator=generator)
    xy = torch.rand(5, 2, generator=generator) * 40
    boxes = torch.cat([xy, xy + 4 + torch.rand(5, 2, generator=generator) * 30], dim=1)
    height, width, stride = 17, 23, 4.0
    pasted = paste_masks(masks, boxes, height, width, stride)
    ys = (torch.arange(height) + 0.5) * stride
    xs = (torch.arange(width) + 0.5) * stride
    gx = (xs[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]) * 2 - 1
    gy = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(5, height, width), gy[:, :, None].expand(5, height, width)], dim=-1)
    reference = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    torch.testing.assert_close(pasted, reference, rtol=1e-5, atol=1e-6)


def test_paste_masks_is_differentiable_in_the_masks_only() -> None:
    masks = torch.rand(2, 28, 28, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [5.0, 5.0, 30.0, 25.0]], requires_grad=True)
    paste_masks(masks, boxes, 8, 8, 4).sum().backward()
    assert masks.grad is not None and masks.grad.abs().sum() > 0
    assert boxes.grad is None
    assert paste_masks(masks[:0], boxes[:0], 8, 8, 4).shape == (0, 8, 8)
