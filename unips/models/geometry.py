"""Geometry on per-detection tensors: box indicators and differentiable mask pasting.

Coordinates are image pixels; a frame of stride ``s`` has pixel ``j`` centred at
``(j + 0.5) * s``, which is where bilinear upsampling by ``s`` puts it too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_centres(size: int, stride: float, like: torch.Tensor) -> torch.Tensor:
    """``(size,)`` image coordinates of a frame's pixel centres along one axis."""
    return (torch.arange(size, device=like.device, dtype=like.dtype) + 0.5) * stride


def box_indicator(boxes: torch.Tensor, height: int, width: int, stride: float = 1.0) -> torch.Tensor:
    """``(D, h, w)`` in [0, 1]: the share of each frame pixel's area inside each ``(D, 4)`` box.

    An anti-aliased ``[i in B_k]``: frame pixel ``(r, c)`` covers the image square
    ``[c s, (c + 1) s) x [r s, (r + 1) s)``. A hard "centre inside the box" test at stride 4
    would drop a whole frame pixel when a box edge passes just beside its centre, leaving
    object pixels with no potential at all; for boxes on pixel edges at stride 1 both agree.
    """
    boxes = boxes.detach()

    def coverage(size: int, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        start = torch.arange(size, device=boxes.device, dtype=boxes.dtype) * stride  # (n,)
        overlap = torch.minimum(start[None, :] + stride, high[:, None]) - torch.maximum(start[None, :], low[:, None])
        return (overlap / stride).clamp(min=0.0, max=1.0)  # (D, n)

    return coverage(height, boxes[:, 1], boxes[:, 3])[:, :, None] * coverage(width, boxes[:, 0], boxes[:, 2])[:, None, :]


def _tent_weights(centres: torch.Tensor, low: torch.Tensor, high: torch.Tensor, cells: int) -> torch.Tensor:
    """``(D, n, cells)`` bilinear weights sampling ``cells`` box cells at ``(n,)`` positions.

    Cell ``m`` of a box spanning ``[low, high]`` is centred at ``low + (m + 0.5) (high - low) / cells``;
    positions beyond the outer cell centres fade to zero, as with zero padding.
    """
    u = (centres[None, :] - low[:, None]) / (high - low).clamp(min=1e-6)[:, None] * cells - 0.5  # (D, n)
    m = torch.arange(cells, device=centres.device, dtype=centres.dtype)
    return (1.0 - (u[:, :, None] - m[None, None, :]).abs()).clamp(min=0.0)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, stride: float = 1.0) -> torch.Tensor:
    """Paste ``(D, M, M)`` box-relative masks into a ``(D, h, w)`` frame, differentiably in ``masks``.

    Bilinear sampling with zero padding (the same numbers as ``F.grid_sample`` with
    ``align_corners=False``), done as two small matrix products ``R_y @ mask @ R_x^T``
    instead of a ``(D, h, w, 2)`` sampling grid. Boxes get no gradient.
    """
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width))
    boxes = boxes.detach().to(masks.dtype)
    cells = masks.shape[-1]
    ry = _tent_weights(pixel_centres(height, stride, masks), boxes[:, 1], boxes[:, 3], cells)  # (D, h, M)
    rx = _tent_weights(pixel_centres(width, stride, masks), boxes[:, 0], boxes[:, 2], cells)  # (D, w, M)
    return ry @ masks @ rx.transpose(1, 2)


def upsampled_argmax(logits: torch.Tensor, height: int, width: int, stride: int, chunk: int = 16) -> torch.Tensor:
    """Argmax over channels after bilinear upsampling by ``stride``, cropped to ``(height, width)``.

    Args:
        logits: ``(K, h, w)`` with ``h * stride >= height`` and ``w * stride >= width``.

    Returns:
        ``(height, width)`` int64 channel indices. Channels are upsampled ``chunk`` at a time so a
        full-resolution ``(K, H, W)`` tensor never exists.
    """
    size = (logits.shape[1] * stride, logits.shape[2] * stride)
    best_value = best_index = None
    for start in range(0, logits.shape[0], chunk):
        up = F.interpolate(logits[None, start : start + chunk], size=size, mode="bilinear", align_corners=False)[0]
        up = up[:, :height, :width]
        value, index = up.max(dim=0)
        index = index + start
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value  # ties keep the lower channel, as a single argmax would
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index, best_index)
    assert best_index is not None
    return best_index
