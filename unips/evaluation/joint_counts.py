"""The joint histogram of two segment-id maps in one pass over the pixels: the hot loop of PQ.

``counts[gt_index[g] * cols + pred_index[p]] += 1`` for every pixel ``(g, p)``. In numpy this is
two gathers, an add and a ``bincount``, five passes over memory of the image's size (about 12 ms
for a 1024x2048 pair of int64 maps on one core here); compiled with numba it is one pass that
reads each map once and keeps nothing but the small ``counts`` (``benchmarks/pq_speed.py``).

An id outside a table (an id that no ``segments_info`` lists, or one out of range, negative
included) counts in row or column 0; the caller words the error. The function is compiled once
per pair of map dtypes and cached on disk beside this file (numba's ``cache=True``), so a
process pays the compilation only the first time on a machine.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _count(gt: np.ndarray, pred: np.ndarray, gt_index: np.ndarray, pred_index: np.ndarray, cols: int,
           counts: np.ndarray) -> None:
    gt_size, pred_size = gt_index.shape[0], pred_index.shape[0]
    if gt.shape[0] == 0:
        return
    # Segments are runs of equal pixels along a row: count a run in a register and look it up once
    # it ends, instead of incrementing the same counter in memory pixel after pixel.
    run_gt, run_pred, run = gt[0], pred[0], 0
    for i in range(gt.shape[0]):
        g, p = gt[i], pred[i]
        if g == run_gt and p == run_pred:
            run += 1
            continue
        row = gt_index[run_gt] if 0 <= run_gt < gt_size else 0
        col = pred_index[run_pred] if 0 <= run_pred < pred_size else 0
        counts[row * cols + col] += run
        run_gt, run_pred, run = g, p, 1
    row = gt_index[run_gt] if 0 <= run_gt < gt_size else 0
    col = pred_index[run_pred] if 0 <= run_pred < pred_size else 0
    counts[row * cols + col] += run


def joint_counts(gt: np.ndarray, pred: np.ndarray, gt_index: np.ndarray, pred_index: np.ndarray,
                 rows: int, cols: int) -> np.ndarray:
    """``(rows, cols)`` int64 pixel counts of (``gt_index[gt]``, ``pred_index[pred]``) pairs.

    Args:
        gt, pred: ``(H, W)`` integer id maps of equal shape (any integer dtype).
        gt_index, pred_index: ``(N,)`` / ``(M,)`` integer lookup tables from id to row / column,
            values in ``[0, rows)`` / ``[0, cols)``; ids at or beyond a table's end, or negative,
            count in row / column 0.
    """
    counts = np.zeros(rows * cols, np.int64)
    # The GIL is released (nogil): evaluation threads count images side by side.
    _count(gt.reshape(-1), pred.reshape(-1), gt_index, pred_index, cols, counts)
    return counts.reshape(rows, cols)
