"""Joint augmentation keeps boxes, masks and semantics consistent with the panoptic map."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unips.config import AugmentConfig
from unips.datasets import IGNORE_INDEX, PanopticDataset, collate_panoptic
from unips.datasets.transforms import PanopticAugmentation, ResizeShortestEdge, build_train_augmentation
from unips.seeding import seed_everything

CITYSCAPES_SMALL = AugmentConfig(kind="scale_crop", scale_range=(0.5, 2.0), crop_size=(96, 160))
COCO_SMALL = AugmentConfig(kind="shortest_edge", short_side=100, max_long_side=180)


def _dataset(root: Path, transform: PanopticAugmentation | None) -> PanopticDataset:
    return PanopticDataset(root / "images/train", root / "panoptic_train.json", root / "panoptic_train", transform)


def _assert_consistent(target: dict, categories) -> None:  # type: ignore[no-untyped-def]
    """Independent re-derivation of every target from the transformed panoptic map."""
    panoptic = target["panoptic"].numpy()
    segments = {s["id"]: s for s in target["segments_info"]}
    assert set(np.unique(panoptic)) - {0} == set(segments)
    things_present = [
        i for i, s in segments.items()
        if categories.is_thing(categories.train_id(s["category_id"])) and not s["iscrowd"]
    ]
    assert sorted(target["instance_ids"].tolist()) == sorted(things_present)
    for mask, box, label, seg_id in zip(target["masks"], target["boxes"], target["labels"], target["instance_ids"],
                                        strict=True):
        mask = mask.numpy().astype(bool)
        np.testing.assert_array_equal(mask, panoptic == int(seg_id))
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert label == categories.train_id(segments[int(seg_id)]["category_id"])
    semantic = target["semantic"].numpy()
    assert (semantic[panoptic == 0] == IGNORE_INDEX).all()
    for seg_id, seg in segments.items():
        assert (semantic[panoptic == seg_id] == categories.train_id(seg["category_id"])).all()


@pytest.mark.parametrize("cfg", [CITYSCAPES_SMALL, COCO_SMALL], ids=["scale_crop", "shortest_edge"])
def test_augmented_targets_agree_with_the_augmented_panoptic_map(synthetic_root: Path, cfg: AugmentConfig) -> None:
    dataset = _dataset(synthetic_root, build_train_augmentation(cfg))
    torch.manual_seed(0)
    dropped = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        if cfg.kind == "scale_crop":
            assert image.shape == (3, 96, 160)
        else:
            assert min(image.shape[1:]) == 90 or max(image.shape[1:]) == 180  # 128x256 -> 90x180
        _assert_consistent(target, dataset.categories)
        before = sum(1 for s in dataset.records[index].segments_info if s["category_id"] in (1, 2, 3))
        dropped += before - len(target["instance_ids"]) - sum(s["iscrowd"] for s in target["segments_info"])
    if cfg.kind == "scale_crop":
        assert dropped > 0, "random crops should have cut some instances away"


def test_an_instance_cropped_away_disappears_from_every_target(synthetic_root: Path) -> None:
    plain = _dataset(synthetic_root, None)
    _, full = plain[0]
    leftmost = int(full["boxes"][:, 2].argmin())
    keep_right = int(full["boxes"][leftmost, 2])  # the crop starts where that instance ends
    crop = PanopticAugmentation([A.Crop(x_min=keep_right, y_min=0, x_max=256, y_max=128)])
    _, cropped = _dataset(synthetic_root, crop)[0]
    gone = int(full["instance_ids"][leftmost])
    assert gone not in cropped["instance_ids"].tolist()
    assert len(cropped["instance_ids"]) > 0
    assert gone not in {s["id"] for s in cropped["segments_info"]}
    assert cropped["panoptic"].shape == (128, 256 - keep_right)
    _assert_consistent(cropped, plain.categories)


def test_large_segment_ids_survive_resampling_exactly() -> None:
    ids = np.zeros((40, 60), dtype=np.int32)
    ids[5:30, 5:25] = 255 * 1000 + 999  # uses all three bytes of the PNG encoding
    ids[10:35, 30:55] = 16_000_001
    augment = build_train_augmentation(AugmentConfig(crop_size=(50, 50), scale_range=(0.6, 1.7)))
    for seed in range(10):
        torch.manual_seed(seed)
        _, out = augment(np.zeros((40, 60, 3), np.uint8), ids)
        assert out.dtype == np.int32 and set(np.unique(out)) <= {0, 255_999, 16_000_001}


@pytest.mark.parametrize(
    ("size", "expected"),
    [((600, 1000), (800, 1333)), ((400, 1000), (533, 1333)), ((1000, 1200), (800, 960)), ((900, 600), (1200, 800))],
)
def test_resize_shortest_edge_keeps_the_longer_side_under_the_limit(size: tuple[int, int],
                                                                   expected: tuple[int, int]) -> None:
    out = A.Compose([ResizeShortestEdge(800, 1333)])(image=np.zeros((*size, 3), np.uint8))["image"]
    assert out.shape[:2] == expected


class _SameImage(Dataset):
    """Every index is the same image, so any difference between items comes from augmentation."""

    def __init__(self, dataset: PanopticDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        return self.dataset[0]


def _augmented_batches(root: Path, seed: int, workers: int) -> list[torch.Tensor]:
    dataset = _SameImage(_dataset(root, build_train_augmentation(CITYSCAPES_SMALL)))
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate_panoptic,
                        **seed_everything(seed))
    return [torch.stack(images) for images, _ in loader]


def test_augmentation_is_reproducible_per_seed_and_differs_across_workers(synthetic_root: Path) -> None:
    first = _augmented_batches(synthetic_root, seed=5, workers=2)
    again = _augmented_batches(synthetic_root, seed=5, workers=2)
    other = _augmented_batches(synthetic_root, seed=6, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # Batches 0 and 1 come from different workers: an identical copy of the pipeline would repeat itself.
    assert not torch.equal(first[0], first[1])
    # Within a batch too, the same image is augmented differently.
    assert not torch.equal(first[0][0], first[0][1])


def test_no_augmentation_for_kind_none() -> None:
    assert build_train_augmentation(AugmentConfig(kind="none")) is None
