"""Panoptic data: the COCO panoptic reader, the synthetic generator, Cityscapes conversion, augmentation."""

from unips.datasets.categories import IGNORE_INDEX, Category, CategoryMap
from unips.datasets.coco_panoptic import PanopticDataset, collate_panoptic
from unips.datasets.panoptic_format import PanopticFormatError

__all__ = ["IGNORE_INDEX", "Category", "CategoryMap", "PanopticDataset", "PanopticFormatError", "collate_panoptic"]
