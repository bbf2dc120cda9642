"""The compiled joint histogram equals numpy's count of (row, column) pairs, for every map dtype."""

from __future__ import annotations

import numpy as np
import pytest

from unips.evaluation.joint_counts import joint_counts


def _naive(gt: np.ndarray, pred: np.ndarray, gt_index: np.ndarray, pred_index: np.ndarray, rows: int,
           cols: int) -> np.ndarray:
    def lookup(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
        ids = ids.astype(np.int64).ravel()
        inside = (ids >= 0) & (ids < len(table))
        return np.where(inside, table[np.clip(ids, 0, len(table) - 1)], 0)

    key = lookup(gt, gt_index) * cols + lookup(pred, pred_index)
    return np.bincount(key, minlength=rows * cols).reshape(rows, cols)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint32, np.uint8, np.int16])
def test_counts_equal_numpys_with_ids_outside_the_tables_in_row_and_column_zero(dtype: type) -> None:
    rng = np.random.default_rng(0)
    # Runs of equal pixels (as segments give) and single pixels, ids in and beyond the tables.
    gt = np.repeat(rng.integers(0, 40, size=(30, 12)), rng.integers(1, 6, size=12), axis=1)[:, :40]
    pred = np.repeat(rng.integers(0, 40, size=(30, 10)), rng.integers(1, 8, size=10), axis=1)[:, :40]
    gt, pred = gt[:, :min(gt.shape[1], pred.shape[1])], pred[:, :min(gt.shape[1], pred.shape[1])]
    if np.issubdtype(dtype, np.signedinteger):
        gt[3, :5] = -7  # negative ids: outside any table
    gt, pred = gt.astype(dtype), pred.astype(dtype)
    gt_index = np.zeros(32, np.int32)
    gt_index[rng.choice(32, 10, replace=False)] = np.arange(1, 11)
    pred_index = np.zeros(16, np.int32)
    pred_index[rng.choice(16, 6, replace=False)] = np.arange(1, 7)
    counts = joint_counts(gt, pred, gt_index, pred_index, 11, 7)
    np.testing.assert_array_equal(counts, _naive(gt, pred, gt_index, pred_index, 11, 7))
    assert counts.sum() == gt.size and counts[0].sum() > 0 and counts[:, 0].sum() > 0


def test_a_non_contiguous_map_and_an_empty_one() -> None:
    gt = np.arange(60, dtype=np.int64).reshape(6, 10) % 4
    pred = (np.arange(60, dtype=np.int64).reshape(6, 10) // 7) % 3
    table = np.array([0, 1, 2, 3], np.int32)
    view_gt, view_pred = gt[:, ::2], pred[:, ::2]
    np.testing.assert_array_equal(joint_counts(view_gt, view_pred, table, table, 4, 4),
                                  _naive(view_gt, view_pred, table, table, 4, 4))
    empty = np.zeros((0, 5), np.int64)
    assert joint_counts(empty, empty, table, table, 4, 4).sum() == 0
