"""Cityscapes in the COCO panoptic format, converted with ``cityscapesscripts``.

    python -m unips.datasets.cityscapes --root data/cityscapes [--splits train val]

expects the official layout (``gtFine/{split}/{city}/*_gtFine_instanceIds.png`` and
``leftImg8bit/{split}/{city}/*_leftImg8bit.png``) and writes, next to ``gtFine``'s
split folders, ``gtFine/cityscapes_panoptic_{split}.json`` and
``gtFine/cityscapes_panoptic_{split}/`` with ``cityscapesscripts``'
``createPanopticImgs`` (label ids as category ids; classes ignored in evaluation
become void; instance-less ids of thing classes become crowd regions). One thing is
changed in its output: ``images[].file_name`` points at the real
``{city}/{image}_leftImg8bit.png`` under ``leftImg8bit/{split}``, so the generic
:class:`~unips.datasets.PanopticDataset` reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from unips.commands import run_command
from unips.datasets.panoptic_format import read_json, write_json
from unips.progress import progress_bar

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"


def panoptic_json_path(root: Path, split: str) -> Path:
    return root / "gtFine" / f"cityscapes_panoptic_{split}.json"


def panoptic_png_dir(root: Path, split: str) -> Path:
    return root / "gtFine" / f"cityscapes_panoptic_{split}"


def image_dir(root: Path, split: str) -> Path:
    return root / "leftImg8bit" / split


def _instance_files(root: Path, split: str) -> list[Path]:
    """The split's ``*_gtFine_instanceIds.png``; every ``leftImg8bit`` frame must have one.

    cityscapesscripts converts the annotations it finds: a frame without one would vanish
    from the set without a word.
    """
    files = sorted((root / "gtFine" / split).glob(f"*/*{INSTANCE_SUFFIX}"))
    if not files:
        raise FileNotFoundError(
            f"no Cityscapes annotations for split '{split}': nothing matches "
            f"{root / 'gtFine' / split}/<city>/*{INSTANCE_SUFFIX}"
        )
    if not image_dir(root, split).is_dir():
        raise FileNotFoundError(f"no Cityscapes images for split '{split}': {image_dir(root, split)} does not exist")
    for image in sorted(image_dir(root, split).glob(f"*/*{IMAGE_SUFFIX}")):
        expected = root / "gtFine" / split / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + INSTANCE_SUFFIX)
        if not expected.is_file():
            raise FileNotFoundError(f"{image} has no annotation: {expected} is missing")
    for annotation in files:  # and the reverse: an annotation whose frame is not there
        frame = image_dir(root, split) / annotation.parent.name / (annotation.name[: -len(INSTANCE_SUFFIX)] + IMAGE_SUFFIX)
        if not frame.is_file():
            raise FileNotFoundError(f"{annotation} annotates a frame that is not there: {frame} is missing")
    return files


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is removed only after the move succeeded."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
        src.rename(dst)
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        src.rename(dst)


class _ProgressPrints(io.TextIOBase):
    """A stdout for cityscapesscripts: each ``\\rProgress: x %`` it prints (one per converted file) calls
    ``advance(1)``; the text itself goes nowhere."""

    def __init__(self, advance: Callable[[int], object]) -> None:
        super().__init__()
        self.advance = advance

    def write(self, text: str) -> int:
        self.advance(text.count("Progress:"))
        return len(text)


def prepare_cityscapes(root: str | Path, splits: Sequence[str] = ("train", "val"),
                       progress: bool | None = False) -> None:
    """Convert the listed splits to COCO panoptic files (see the module docstring).

    The conversion runs in a temporary folder; files appear in ``gtFine`` only once
    a split is complete, so an interrupted run leaves earlier results intact.
    ``progress``: a bar per split on stderr (True), only when stderr is a terminal (None), or none (False).
    """
    # Imported here: cityscapesscripts pulls in matplotlib, which only this step needs.
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    root = Path(root)
    files = {split: _instance_files(root, split) for split in splits}
    tmp = Path(tempfile.mkdtemp(prefix=".panoptic-", dir=root / "gtFine"))
    try:
        for split in splits:
            # cityscapesscripts prints a percentage per file on stdout: kept off the terminal, it drives our bar.
            with progress_bar(total=len(files[split]), desc=split, progress=progress) as bar:
                with contextlib.redirect_stdout(_ProgressPrints(bar.update)):
                    convert2panoptic(cityscapesPath=str(root / "gtFine"), outputFolder=str(tmp), useTrainId=False,
                                     setNames=[split])
        for split in splits:
            city_of = {p.name[: -len(INSTANCE_SUFFIX)]: p.parent.name for p in files[split]}
            json_name = panoptic_json_path(root, split).name
            data = read_json(tmp / json_name)
            for image in data["images"]:
                image["file_name"] = f"{city_of[image['id']]}/{image['id']}{IMAGE_SUFFIX}"
            write_json(tmp / json_name, data)
            _replace(tmp / panoptic_png_dir(root, split).name, panoptic_png_dir(root, split))
            _replace(tmp / json_name, panoptic_json_path(root, split))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert Cityscapes gtFine to COCO panoptic files.")
    parser.add_argument("--root", type=Path, required=True, help="folder holding gtFine/ and leftImg8bit/")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    args = parser.parse_args(argv)
    prepare_cityscapes(args.root, args.splits, progress=None)  # a bar on a terminal, nothing in a log
    for split in args.splits:
        print(f"{split}: {panoptic_json_path(args.root, split)} + {panoptic_png_dir(args.root, split)}/")


if __name__ == "__main__":
    run_command(main)
