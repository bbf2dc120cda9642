"""Where each dataset keeps its files, and the dataset a config asks for.

Plain branches on ``data.dataset``; a new dataset is one more branch here.

=========== ====================================== ========================================
dataset     images                                 panoptic JSON / PNG folder
=========== ====================================== ========================================
coco        ``{root}/{split}/``                    ``{root}/annotations/panoptic_{split}{.json,/}``
cityscapes  ``{root}/leftImg8bit/{split}/``        ``{root}/gtFine/cityscapes_panoptic_{split}{.json,/}``
synthetic   ``{root}/images/{split}/``             ``{root}/panoptic_{split}{.json,/}``
=========== ====================================== ========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unips.config import DataConfig
from unips.datasets import cityscapes, synthetic
from unips.datasets.coco_panoptic import PanopticDataset
from unips.datasets.transforms import build_test_resize, build_train_augmentation


@dataclass(frozen=True)
class SplitFiles:
    image_dir: Path
    json_path: Path
    png_dir: Path


def split_files(data: DataConfig, split: str) -> SplitFiles:
    """The image folder, panoptic JSON and PNG folder of one split."""
    root = data.root
    if data.dataset == "coco":
        return SplitFiles(root / split, root / "annotations" / f"panoptic_{split}.json",
                          root / "annotations" / f"panoptic_{split}")
    if data.dataset == "cityscapes":
        return SplitFiles(cityscapes.image_dir(root, split), cityscapes.panoptic_json_path(root, split),
                          cityscapes.panoptic_png_dir(root, split))
    return SplitFiles(root / "images" / split, root / f"panoptic_{split}.json", root / f"panoptic_{split}")


def check_data(data: DataConfig) -> None:
    """Raise ``FileNotFoundError`` naming the first file or folder a training on ``data`` would miss
    (the synthetic set counts as there when it may be generated): checked in seconds, before Ray starts."""
    if data.dataset == "synthetic":
        if not data.synthetic.generate and not Path(data.root).exists():
            raise FileNotFoundError(f"data.root {data.root} does not exist; the synthetic set is generated only at "
                                    f"the preset's own data.root, or with data.synthetic.generate=true")
        return
    if not Path(data.root).is_dir():
        raise FileNotFoundError(f"data.root {data.root} ({data.dataset}) does not exist; docs/data.md says how "
                                "to put the dataset there")
    for split in (data.train_split, data.val_split):
        files = split_files(data, split)
        for path in (files.json_path, files.image_dir, files.png_dir):
            if not path.exists():
                hint = f": {_convert_hint(data.root)}" if data.dataset == "cityscapes" else ""
                raise FileNotFoundError(f"{path} not found ({data.dataset} {split} split){hint}")


def _convert_hint(root: Path) -> str:
    return f"convert Cityscapes once with `python -m unips.datasets.cityscapes --root {root}`"


def ensure_synthetic(data: DataConfig) -> Path:
    """Generate the synthetic set at ``data.root`` on first use (the embedded default), where allowed."""
    check_data(data)
    s = data.synthetic
    return synthetic.ensure_generated(data.root, s.num_train, s.num_val, s.height, s.width, s.seed)


def build_dataset(data: DataConfig, split: str, train: bool) -> PanopticDataset:
    """The dataset of one split, with training augmentation or the test-time resize."""
    if data.dataset == "synthetic":
        ensure_synthetic(data)
    files = split_files(data, split)
    if data.dataset == "cityscapes" and not files.json_path.exists():
        raise FileNotFoundError(f"{files.json_path} not found: {_convert_hint(data.root)}")
    transform = (build_train_augmentation(data.augment) if train
                 else build_test_resize(data.test_short_side, data.test_max_long_side))
    return PanopticDataset(files.image_dir, files.json_path, files.png_dir, transform=transform)
