"""Panoptic quality (PQ = SQ x RQ) exactly as ``panopticapi.evaluation.pq_compute`` defines it, vectorised.

One image is scored from its joint histogram: the pixel count of every
(ground-truth segment, predicted segment) pair, from one ``np.bincount`` over
compact per-map indices. What panopticapi does pair by pair in Python is then a
few array operations on that small ``(G, P)`` matrix. The accumulator keeps four
numbers per category (TP, FP, FN, IoU sum), so its memory does not grow with the
number of images.

panopticapi's rules, reproduced on purpose (each is tested against panopticapi):

1. Ground-truth areas are taken from ``segments_info[...]["area"]``, not recounted
   from the map; prediction areas are counted in the map. A JSON area smaller than
   the segment's pixel count can push an IoU (and SQ) above 1.
2. ``union = pred area + gt area - intersection - (pred pixels on VOID)``.
3. A match needs IoU > 0.5 (strictly), the same category, and a non-crowd ground truth.
4. An unmatched prediction is not a false positive when (its VOID pixels + its pixels
   on a crowd segment of its category) / its area > 0.5 (exactly half is a false
   positive); only ONE crowd segment per category and image is remembered, the last
   one in ``segments_info`` order, so a prediction on an earlier crowd segment of the
   same class is a false positive.
5. Crowd ground truth is never matched (even at IoU 1) and never a false negative.
   Categories with TP + FP + FN = 0 are left out of the averages (their per-class
   PQ = SQ = RQ = 0).
6. A group (All / Things / Stuff) with no counted category makes panopticapi divide
   by zero; here its PQ / SQ / RQ are NaN with ``n = 0``.
7. Floating-point order: matched IoUs are added one at a time per category, within an
   image in (gt id, pred id) order, images in order, as panopticapi's per-process loop
   does. panopticapi's own result therefore depends on its process count
   (``cpu_count()``) in the last bit; ours is bit-identical to it when the images are
   split into the same contiguous chunks (``np.array_split``) and summed in order.

Where we are stricter than panopticapi, which silently mis-scores these: a segment id
listed twice (panopticapi keeps the last entry), segment id 0 in a prediction's
``segments_info`` (panopticapi then scores the void pixels as that segment), a
ground-truth id in the map but not in ``segments_info`` (panopticapi treats those
pixels as neither void nor a segment) or the reverse (a false negative for
panopticapi), and a prediction of another size (a bare numpy broadcasting error in
panopticapi) all raise :class:`PanopticFormatError` naming the image and segment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import MAX_SEGMENT_ID, VOID_ID, PanopticFormatError, as_id_map
from unips.evaluation.trim import trim_small_stuff

# Rows / columns of the joint histogram before the segments: ids missing from
# segments_info, then VOID; segment k of segments_info is at index k + FIRST_SEGMENT.
UNLISTED, VOID_INDEX, FIRST_SEGMENT = 0, 1, 2


@dataclass(frozen=True)
class Segments:
    """The segments of one map as arrays, in ``segments_info`` order."""

    ids: np.ndarray  # (S,) int64 segment ids
    labels: np.ndarray  # (S,) int64 training ids of their categories
    crowd: np.ndarray  # (S,) bool
    area: np.ndarray  # (S,) areas as given in segments_info (ground truth only; 0 for predictions)


def parse_segments(
    segments_info: Sequence[dict[str, Any]], categories: CategoryMap, where: str, *, ground_truth: bool
) -> Segments:
    """Check ``segments_info`` (ids unique and in range, categories known) and turn it into arrays.

    Args:
        segments_info: dicts with ``id`` and ``category_id`` (dataset id); ground truth also
            ``area`` and optionally ``iscrowd``.
        where: names the image (and file) in error messages, e.g. ``"image id 7 (prediction x.png)"``.
    """
    n = len(segments_info)
    ids = np.empty(n, np.int64)
    labels = np.empty(n, np.int64)
    crowd = np.zeros(n, bool)
    area = np.zeros(n, np.float64 if ground_truth else np.int64)
    seen: set[int] = set()
    for k, seg in enumerate(segments_info):
        if "id" not in seg or "category_id" not in seg:
            raise PanopticFormatError(f"{where}: segments_info[{k}] lacks 'id' or 'category_id': {seg}")
        seg_id, cat_id = seg["id"], seg["category_id"]
        if not isinstance(seg_id, (int, np.integer)) or not 0 < seg_id <= MAX_SEGMENT_ID:
            raise PanopticFormatError(f"{where}: segment id {seg_id!r} must be an integer in [1, {MAX_SEGMENT_ID}] "
                                      f"({VOID_ID} is void)")
        if seg_id in seen:
            raise PanopticFormatError(f"{where}: duplicate segment id {seg_id} in segments_info")
        seen.add(int(seg_id))
        if cat_id not in categories:
            raise PanopticFormatError(f"{where}: segment id {seg_id} has unknown category_id {cat_id} "
                                      f"(known: {[c.id for c in categories.categories]})")
        ids[k] = seg_id
        labels[k] = categories.train_id(cat_id)
        if ground_truth:
            if "area" not in seg:
                raise PanopticFormatError(f"{where}: ground-truth segment id {seg_id} lacks 'area'")
            area[k] = seg["area"]
            crowd[k] = seg.get("iscrowd", 0) == 1
    if ground_truth and np.all(area == np.rint(area)):
        area = area.astype(np.int64)  # keep integer arithmetic (and panopticapi's exact IoUs) when areas are whole
    return Segments(ids, labels, crowd, area)


@dataclass(frozen=True)
class SegmentRows:
    """A ground-truth map given as its histogram rows (:mod:`unips.evaluation.gt_cache`): ``(H, W)``
    uint8 / uint16, ``VOID_INDEX`` for void and ``k + FIRST_SEGMENT`` for segment ``k`` of its
    ``segments_info``; every pixel is one of these (no unlisted ids)."""

    rows: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rows.shape


class JointHistogram:
    """Pixel counts of all (ground-truth index, prediction index) pairs of one image.

    Holds a lookup table per map from segment id to compact index (grown to cover the largest
    listed id, at most ``2**24`` entries; only the touched entries are reset), so per-image
    work is one pass over the pixels (:func:`unips.evaluation.joint_counts.joint_counts`).
    """

    def __init__(self) -> None:
        self._gt_table = np.zeros(1, np.int32)
        self._pred_table = np.zeros(1, np.int32)

    @staticmethod
    def _grown(table: np.ndarray, listed: np.ndarray) -> np.ndarray:
        """``table``, or a larger zeroed one (a power of two) if a listed id lies beyond its end."""
        needed = 1 << int(listed.max(initial=0)).bit_length()  # listed ids were checked by parse_segments
        # np.zeros is calloc: the pages of the table that no id touches never become resident.
        return table if needed <= len(table) else np.zeros(needed, np.int32)

    def __call__(self, gt: np.ndarray, gt_ids: np.ndarray, pred: np.ndarray, pred_ids: np.ndarray,
                 where_gt: str, where_pred: str, *, gt_is_rows: bool = False) -> np.ndarray:
        """``(G + 2, P + 2)`` int64 counts; rows / columns: unlisted ids, VOID, then the segments in order.

        Args:
            gt, pred: ``(H, W)`` id maps of equal shape.
            gt_ids, pred_ids: ``(G,)`` / ``(P,)`` segment ids of their ``segments_info`` (unique, > 0).
            gt_is_rows: ``gt`` holds rows already (:class:`SegmentRows`), not ids.

        Raises:
            PanopticFormatError: a map holds an id outside ``[0, 2**24 - 1]``.
        """
        from unips.evaluation.joint_counts import joint_counts  # numba: imported when first needed

        rows, cols = len(gt_ids) + FIRST_SEGMENT, len(pred_ids) + FIRST_SEGMENT
        self._pred_table = self._grown(self._pred_table, pred_ids)
        with segment_index(self._pred_table, pred_ids) as pred_table:
            if gt_is_rows:
                counts = joint_counts(gt, pred, np.arange(rows, dtype=np.int32), pred_table, rows, cols)
            else:
                self._gt_table = self._grown(self._gt_table, gt_ids)
                with segment_index(self._gt_table, gt_ids) as gt_table:
                    counts = joint_counts(gt, pred, gt_table, pred_table, rows, cols)
        if counts[UNLISTED].any():  # ids beyond the table: say so if some lie beyond any valid id
            _check_range(gt, "ground-truth", where_gt)
        if counts[:, UNLISTED].any():
            _check_range(pred, "predicted", where_pred)
        return counts


@contextmanager
def segment_index(table: np.ndarray, ids: np.ndarray) -> Iterator[np.ndarray]:
    """``table`` mapping VOID to ``VOID_INDEX`` and ``ids[k]`` to ``k + FIRST_SEGMENT`` inside the block,
    all zeros again after it."""
    try:
        table[VOID_ID] = VOID_INDEX
        table[ids] = np.arange(FIRST_SEGMENT, len(ids) + FIRST_SEGMENT)
        yield table
    finally:
        table[ids] = 0
        table[VOID_ID] = 0


def _check_range(ids: np.ndarray, what: str, where: str) -> None:
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high > MAX_SEGMENT_ID:
        raise PanopticFormatError(f"{where}: {what} map holds ids in [{low}, {high}], outside [0, {MAX_SEGMENT_ID}]")


def _unlisted_ids(ids: np.ndarray, listed: np.ndarray) -> list[int]:
    """Non-void ids of a map that ``segments_info`` lacks (only computed to word an error)."""
    present = pd.unique(ids.ravel())
    return sorted(int(i) for i in np.setdiff1d(present, np.append(listed, VOID_ID)))


def check_consistency(counts: np.ndarray, gt: np.ndarray, gt_seg: Segments, pred: np.ndarray, pred_seg: Segments,
                      where_gt: str, where_pred: str) -> None:
    """Every id of each map is in its ``segments_info`` and every listed segment is in its map."""
    if counts[UNLISTED].sum():
        raise PanopticFormatError(f"{where_gt}: segment id(s) {_unlisted_ids(gt, gt_seg.ids)} are in the "
                                  "ground-truth map but not in its segments_info")
    if counts[:, UNLISTED].sum():
        raise PanopticFormatError(f"{where_pred}: segment id(s) {_unlisted_ids(pred, pred_seg.ids)} are in the "
                                  "predicted map but not in its segments_info")
    absent = gt_seg.ids[counts[FIRST_SEGMENT:].sum(axis=1) == 0]
    if len(absent):
        raise PanopticFormatError(f"{where_gt}: segment id(s) {absent.tolist()} are in the ground-truth "
                                  "segments_info but not in its map")
    absent = pred_seg.ids[counts[:, FIRST_SEGMENT:].sum(axis=0) == 0]
    if len(absent):
        raise PanopticFormatError(f"{where_pred}: segment id(s) {absent.tolist()} are in the predicted "
                                  "segments_info but not in its map")


@dataclass(frozen=True)
class ImageMatch:
    """The PQ outcome of one image, per training id (``C`` categories)."""

    tp: np.ndarray  # (C,) int64
    fp: np.ndarray  # (C,) int64
    fn: np.ndarray  # (C,) int64
    match_labels: np.ndarray  # (M,) training ids of the matched pairs, in panopticapi's visiting order
    match_ious: np.ndarray  # (M,) their IoUs


def match_segments(counts: np.ndarray, gt_seg: Segments, pred_seg: Segments, num_classes: int) -> ImageMatch:
    """Apply panopticapi's matching and FP / FN rules to one image's joint histogram."""
    inter = counts[FIRST_SEGMENT:, FIRST_SEGMENT:]
    pred_area = counts[:, FIRST_SEGMENT:].sum(axis=0)  # counted in the map (rule 1)
    pred_void = counts[VOID_INDEX, FIRST_SEGMENT:]

    g, p = np.nonzero(inter)  # panopticapi only visits pairs that share pixels
    same = (gt_seg.labels[g] == pred_seg.labels[p]) & ~gt_seg.crowd[g]
    g, p = g[same], p[same]
    intersection = inter[g, p]
    union = pred_area[p] + gt_seg.area[g] - intersection - pred_void[p]  # rule 2
    iou = intersection / union
    hit = iou > 0.5  # rule 3; with IoU > 0.5 a segment can match at most once
    g, p, iou = g[hit], p[hit], iou[hit]
    order = np.lexsort((pred_seg.ids[p], gt_seg.ids[g]))  # rule 7: panopticapi's (gt id, pred id) order
    g, p, iou = g[order], p[order], iou[order]

    gt_matched = np.zeros(len(gt_seg.ids), bool)
    gt_matched[g] = True
    pred_matched = np.zeros(len(pred_seg.ids), bool)
    pred_matched[p] = True
    missed = ~gt_matched & ~gt_seg.crowd

    # Rule 4: one crowd segment per category, the last listed wins (a dict overwritten in order).
    crowd_of_label: dict[int, int] = {}
    for k in np.flatnonzero(gt_seg.crowd):
        crowd_of_label[int(gt_seg.labels[k])] = int(k)
    unmatched = np.flatnonzero(~pred_matched)
    ignored_pixels = pred_void[unmatched].copy()
    for j, q in enumerate(unmatched):
        crowd = crowd_of_label.get(int(pred_seg.labels[q]))
        if crowd is not None:
            ignored_pixels[j] += inter[crowd, q]
    false_positive = unmatched[~(ignored_pixels / pred_area[unmatched] > 0.5)]

    return ImageMatch(
        tp=np.bincount(gt_seg.labels[g], minlength=num_classes),
        fp=np.bincount(pred_seg.labels[false_positive], minlength=num_classes),
        fn=np.bincount(gt_seg.labels[missed], minlength=num_classes),
        match_labels=gt_seg.labels[g],
        match_ious=iou,
    )


@dataclass(frozen=True)
class GroupScore:
    """PQ, SQ, RQ (fractions, as panopticapi returns them) averaged over the ``n`` counted categories."""

    pq: float
    sq: float
    rq: float
    n: int


GROUPS = (("All", None), ("Things", True), ("Stuff", False))


@dataclass(frozen=True)
class PQResult:
    """All / Things / Stuff scores and a per-class table (fractions in [0, 1], like panopticapi)."""

    groups: dict[str, GroupScore]
    per_class: pd.DataFrame  # one row per category: category_id, name, isthing, pq, sq, rq, tp, fp, fn, iou

    def to_panopticapi(self) -> dict[str, Any]:
        """The dict ``panopticapi.evaluation.pq_compute`` returns (plus tp / fp / fn / iou per class)."""
        out: dict[str, Any] = {name: vars(score).copy() for name, score in self.groups.items()}
        out["per_class"] = {
            int(row.category_id): {"pq": row.pq, "sq": row.sq, "rq": row.rq, "tp": int(row.tp), "fp": int(row.fp),
                                   "fn": int(row.fn), "iou": row.iou}
            for row in self.per_class.itertuples()
        }
        return out

    def flat(self) -> dict[str, float]:
        """Percentages under detectron2-style names: PQ, SQ, RQ, PQ_th, ..., RQ_st."""
        out = {}
        for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            score = self.groups[name]
            out.update({f"PQ{suffix}": 100 * score.pq, f"SQ{suffix}": 100 * score.sq, f"RQ{suffix}": 100 * score.rq})
        return out

    def table(self) -> str:
        """panopticapi's printed table."""
        lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"), "-" * (10 + 7 * 4)]
        for name, score in self.groups.items():
            lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
                name, 100 * score.pq, 100 * score.sq, 100 * score.rq, score.n))
        return "\n".join(lines)


def pq_table(metrics: Mapping[str, float], prefix: str = "") -> str:
    """PQ / SQ / RQ of All, Things and Stuff in panopticapi's layout, from flat percentages
    (``<prefix>PQ``, ``<prefix>SQ_th``, ...; a missing one prints as nan)."""
    lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}", "-" * 31]
    for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        values = [metrics.get(f"{prefix}{name}{suffix}", float("nan")) for name in ("PQ", "SQ", "RQ")]
        lines.append(f"{group:10s}| {values[0]:5.1f}  {values[1]:5.1f}  {values[2]:5.1f}")
    return "\n".join(lines)


class PQAccumulator:
    """Per-category TP / FP / FN / IoU sums over images; memory independent of the number of images.

    Args:
        categories: the dataset's categories (segments carry dataset category ids).
        stuff_area_limit: if set, predicted stuff segments with fewer pixels become void
            before matching (:func:`unips.evaluation.trim.trim_small_stuff`, paper Appendix C).

    ``update`` takes numpy arrays or torch tensors; :meth:`result` gives :class:`PQResult`.
    """

    def __init__(self, categories: CategoryMap, stuff_area_limit: int | None = None) -> None:
        self.categories = categories
        self.stuff_area_limit = stuff_area_limit
        num = len(categories)
        self.tp = np.zeros(num, np.int64)
        self.fp = np.zeros(num, np.int64)
        self.fn = np.zeros(num, np.int64)
        self.iou = np.zeros(num, np.float64)
        self.num_images = 0
        self._histogram = JointHistogram()
        self._thing_ids = {c.id for c in categories.categories if c.isthing}

    def update(
        self,
        pred_panoptic: Any,
        pred_segments: Sequence[dict[str, Any]],
        gt_panoptic: Any,
        gt_segments: Sequence[dict[str, Any]],
        *,
        image_id: object = None,
        where_pred: str | None = None,
        where_gt: str | None = None,
    ) -> ImageMatch:
        """Score one image and add it; returns its :class:`ImageMatch`.

        Args:
            pred_panoptic, gt_panoptic: ``(H, W)`` integer segment ids, 0 = void; the ground truth may
                also come as :class:`SegmentRows` (from :mod:`unips.evaluation.gt_cache`).
            pred_segments: ``id`` and ``category_id`` (dataset id) per predicted segment.
            gt_segments: ``id``, ``category_id``, ``area`` and ``iscrowd`` per ground-truth segment.
            image_id: names the image in error messages; ``where_pred`` / ``where_gt`` override
                the wording (the file evaluator adds the file names).
        """
        match, _, _ = self.match(pred_panoptic, pred_segments, gt_panoptic, gt_segments, image_id=image_id,
                                 where_pred=where_pred, where_gt=where_gt)
        self.add(match)
        return match

    def match(
        self,
        pred_panoptic: Any,
        pred_segments: Sequence[dict[str, Any]],
        gt_panoptic: Any,
        gt_segments: Sequence[dict[str, Any]],
        *,
        image_id: object = None,
        where_pred: str | None = None,
        where_gt: str | None = None,
    ) -> tuple[ImageMatch, np.ndarray, tuple[Segments, Segments]]:
        """Score one image without adding it: ``(match, joint histogram, (gt segments, pred segments))``."""
        where_pred = where_pred or f"image id {image_id} (prediction)"
        where_gt = where_gt or f"image id {image_id} (ground truth)"
        pred = as_id_map(pred_panoptic, "predicted", where_pred)
        gt_is_rows = isinstance(gt_panoptic, SegmentRows)
        gt = gt_panoptic.rows if gt_is_rows else as_id_map(gt_panoptic, "ground-truth", where_gt)
        if pred.shape != gt.shape:
            raise PanopticFormatError(f"{where_pred}: the prediction is {pred.shape[1]}x{pred.shape[0]} but the "
                                      f"ground truth is {gt.shape[1]}x{gt.shape[0]} (width x height)")
        pred_seg = parse_segments(pred_segments, self.categories, where_pred, ground_truth=False)
        gt_seg = parse_segments(gt_segments, self.categories, where_gt, ground_truth=True)
        if self.stuff_area_limit is not None:
            # Check the prediction as given before trimming can hide a listed-but-absent stuff segment.
            present = pd.unique(pred.ravel())
            absent = np.setdiff1d(pred_seg.ids, present)
            if len(absent):
                raise PanopticFormatError(f"{where_pred}: segment id(s) {absent.tolist()} are in the predicted "
                                          "segments_info but not in its map")
            pred, kept = trim_small_stuff(pred, pred_segments, self._thing_ids, self.stuff_area_limit)
            pred_seg = parse_segments(kept, self.categories, where_pred, ground_truth=False)
        counts = self._histogram(gt, gt_seg.ids, pred, pred_seg.ids, where_gt, where_pred, gt_is_rows=gt_is_rows)
        check_consistency(counts, gt, gt_seg, pred, pred_seg, where_gt, where_pred)
        return match_segments(counts, gt_seg, pred_seg, len(self.categories)), counts, (gt_seg, pred_seg)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the sums only: the lookup table and pixel buffers stay in the process that made them."""
        return {**self.__dict__, "_histogram": JointHistogram()}

    def add(self, match: ImageMatch) -> None:
        """Add one image's outcome (IoUs one by one, in order: see rule 7)."""
        self.tp += match.tp
        self.fp += match.fp
        self.fn += match.fn
        np.add.at(self.iou, match.match_labels, match.match_ious)  # unbuffered: sequential, in order
        self.num_images += 1

    def merge(self, other: PQAccumulator) -> None:
        """Add another accumulator's sums (e.g. from a worker process)."""
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        self.num_images += other.num_images

    def result(self) -> PQResult:
        """PQ / SQ / RQ per class and averaged over All / Things / Stuff, with panopticapi's formulas."""
        tp, fp, fn, iou = self.tp, self.fp, self.fn, self.iou
        counted = tp + fp + fn > 0
        denominator = np.where(counted, tp + 0.5 * fp + 0.5 * fn, 1.0)
        pq = np.where(counted, iou / denominator, 0.0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
        rq = np.where(counted, tp / denominator, 0.0)
        isthing = np.array([c.isthing for c in self.categories.categories], bool)
        groups = {}
        for name, thing in GROUPS:
            members = counted & (isthing == thing if thing is not None else True)
            n = int(members.sum())
            # A plain loop: panopticapi sums class scores one by one (np.sum would sum pairwise).
            sums = [0.0, 0.0, 0.0]
            for k in np.flatnonzero(members):
                sums = [sums[0] + pq[k], sums[1] + sq[k], sums[2] + rq[k]]
            groups[name] = GroupScore(*(float(s / n) if n else float("nan") for s in sums), n=n)
        per_class = pd.DataFrame({
            "category_id": [c.id for c in self.categories.categories],
            "name": self.categories.names,
            "isthing": isthing,
            "pq": pq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn, "iou": iou,
        })
        return PQResult(groups, per_class)
