"""Dataset category ids <-> contiguous training ids, built once from a panoptic JSON.

Training ids are the positions of the categories sorted by their dataset id, so
things and stuff share one index space (the semantic head's channels). For
Cityscapes with label ids this reproduces the official train ids (11 stuff, then
8 things); for COCO, the 80 things come first, then the 53 stuff classes.
Exports convert back with :meth:`CategoryMap.dataset_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unips.datasets.panoptic_format import PanopticFormatError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Category:
    """One category as the panoptic JSON declares it."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class CategoryMap:
    """The categories of a dataset and their contiguous training ids."""

    categories: tuple[Category, ...]
    _train_id: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.categories]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise ValueError(f"categories must be sorted by unique id, got {ids}")
        if len(ids) >= IGNORE_INDEX:
            raise ValueError(f"at most {IGNORE_INDEX - 1} categories fit the uint8 semantic maps, got {len(ids)}")
        object.__setattr__(self, "_train_id", {c.id: i for i, c in enumerate(self.categories)})

    @classmethod
    def from_json(cls, categories: list[dict[str, Any]], *, source: Path | str = "<json>") -> CategoryMap:
        """Build from the ``categories`` list of a COCO panoptic JSON."""
        parsed = []
        for index, cat in enumerate(categories):
            for key in ("id", "name", "isthing"):
                if key not in cat:
                    raise PanopticFormatError(f"{source}: categories[{index}] lacks the key '{key}'")
            color = tuple(int(v) for v in cat.get("color", (128, 128, 128)))
            parsed.append(Category(int(cat["id"]), str(cat["name"]), bool(cat["isthing"]), color))  # type: ignore[arg-type]
        ids = [c.id for c in parsed]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise PanopticFormatError(f"{source}: duplicate category id(s) {duplicates}")
        return cls(tuple(sorted(parsed, key=lambda c: c.id)))

    def __len__(self) -> int:
        return len(self.categories)

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._train_id

    def train_id(self, dataset_id: int) -> int:
        """Contiguous training id of a dataset category id."""
        return self._train_id[dataset_id]

    def dataset_id(self, train_id: int) -> int:
        """Dataset category id of a contiguous training id (for export)."""
        return self.categories[train_id].id

    def is_thing(self, train_id: int) -> bool:
        return self.categories[train_id].isthing

    @property
    def thing_train_ids(self) -> list[int]:
        return [i for i, c in enumerate(self.categories) if c.isthing]

    @property
    def stuff_train_ids(self) -> list[int]:
        return [i for i, c in enumerate(self.categories) if not c.isthing]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def to_json(self) -> list[dict[str, Any]]:
        """The ``categories`` list of a COCO panoptic JSON."""
        return [
            {"id": c.id, "name": c.name, "supercategory": c.name, "isthing": int(c.isthing), "color": list(c.color)}
            for c in self.categories
        ]
