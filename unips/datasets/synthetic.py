"""Synthetic street-like panoptic scenes, written in the COCO panoptic format.

    python -m unips.datasets.synthetic --out data/synthetic --num-images 200 --height 128 --width 256 --seed 0

Each image has textured stuff regions (sky, wall, road, grass patches) and thing
instances of three shapes (box, disc, triangle) that touch, occlude each other in
depth order, share a colour with a same-class neighbour, sit inside another
instance's box, and are cut by the image border; some images hold a crowd region
(``iscrowd = 1``) and void clutter (segment id 0). Instances left with fewer
visible pixels than ``SceneParams.min_visible_fraction`` of the image become void,
as annotators leave nearly hidden objects unlabelled.

Written under ``OUT`` for ``split`` in ``train``, ``val``::

    images/{split}/{image_id:06d}.png      RGB image
    panoptic_{split}.json                  COCO panoptic annotations
    panoptic_{split}/{image_id:06d}.png    segment ids as R + 256 G + 256^2 B
    semantic_{split}/{image_id:06d}.png    contiguous training ids, 255 = void
    instances_{split}.json                 COCO instances (RLE masks) of the things, for AP
    synthetic.json                         the generation parameters

Segment ids are ``1000 * category_id + k``. The same parameters and seed give
byte-identical files; each image draws from its own ``(seed, split, index)``
random stream. The folder appears atomically: it is built under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unips.commands import run_command
from unips.datasets.categories import IGNORE_INDEX, Category, CategoryMap
from unips.datasets.panoptic_format import id2rgb, mask_bbox_xywh, read_json, write_json, write_png
from unips.datasets.coco_instances import thing_annotations
from unips.progress import progress_bar

BOX, DISC, TRIANGLE = 1, 2, 3
ROAD, WALL, SKY, GRASS = 7, 9, 11, 13
# Non-contiguous ids on purpose, like COCO's: a mapping bug cannot hide.
CATEGORIES = CategoryMap(
    (
        Category(BOX, "box", True, (220, 20, 60)),
        Category(DISC, "disc", True, (0, 0, 142)),
        Category(TRIANGLE, "triangle", True, (250, 170, 30)),
        Category(ROAD, "road", False, (128, 64, 128)),
        Category(WALL, "wall", False, (102, 102, 156)),
        Category(SKY, "sky", False, (70, 130, 180)),
        Category(GRASS, "grass", False, (107, 142, 35)),
    )
)
SPLITS = ("train", "val")
METADATA_FILE = "synthetic.json"
FORMAT_VERSION = 1

# Per-class colour ranges (low, high) for R, G, B: classes overlap a little in colour,
# so shape matters too.
_THING_COLOURS = {
    BOX: ((160, 250), (20, 120), (20, 90)),
    DISC: ((10, 90), (60, 170), (150, 250)),
    TRIANGLE: ((190, 250), (160, 240), (0, 80)),
}


@dataclass(frozen=True)
class SceneParams:
    """How crowded and how hard the scenes are."""

    min_things: int = 3
    max_things: int = 7
    p_touching_pair: float = 0.6  # two same-class, same-colour instances side by side
    p_nested: float = 0.5  # a small instance inside a large instance's box
    p_crowd: float = 0.35  # a crowd region (iscrowd = 1)
    p_void: float = 0.5  # an unlabelled clutter blob
    p_grass: float = 0.6  # grass patches (often small stuff segments)
    p_no_sky: float = 0.15
    min_visible_fraction: float = 5e-4  # of the image area; smaller instances become void


@dataclass
class _Shape:
    kind: int  # BOX, DISC or TRIANGLE: the drawn shape
    x0: float
    y0: float
    w: float
    h: float
    colour: np.ndarray  # (3,) float

    def window_mask(self, height: int, width: int) -> tuple[slice, slice, np.ndarray]:
        """The image window around the shape (one pixel of margin, clipped) and the shape's mask in it.

        Returns ``(rows, cols, mask)`` with ``mask`` of shape ``(h, w)``: pixel centres inside the shape.
        """
        r0, r1 = max(int(np.floor(self.y0)) - 1, 0), min(int(np.ceil(self.y0 + self.h)) + 1, height)
        c0, c1 = max(int(np.floor(self.x0)) - 1, 0), min(int(np.ceil(self.x0 + self.w)) + 1, width)
        r1, c1 = max(r1, r0), max(c1, c0)
        yy = (np.arange(r0, r1) + 0.5)[:, None]
        xx = (np.arange(c0, c1) + 0.5)[None, :]
        inside_box = (yy >= self.y0) & (yy < self.y0 + self.h) & (xx >= self.x0) & (xx < self.x0 + self.w)
        if self.kind == BOX:
            inside = inside_box
        elif self.kind == DISC:
            cx, cy = self.x0 + self.w / 2, self.y0 + self.h / 2
            inside = ((xx - cx) / (self.w / 2)) ** 2 + ((yy - cy) / (self.h / 2)) ** 2 <= 1.0
        else:  # triangle with its apex up
            cx = self.x0 + self.w / 2
            inside = inside_box & (np.abs(xx - cx) <= (self.w / 2) * (yy - self.y0) / self.h)
        return slice(r0, r1), slice(c0, c1), np.broadcast_to(inside, (r1 - r0, c1 - c0)).copy()


@dataclass
class _Item:
    """One thing instance, one crowd region (several shapes, one segment) or one void blob."""

    role: str  # "instance" | "crowd" | "void"
    category_id: int  # 0 for void
    z: float  # painted in increasing z: larger z occludes
    shapes: list[_Shape] = field(default_factory=list)


def _thing_colour(rng: np.random.Generator, category_id: int) -> np.ndarray:
    return np.array([rng.uniform(lo, hi) for lo, hi in _THING_COLOURS[category_id]])


def _instance(rng: np.random.Generator, height: int, width: int, **fixed: Any) -> _Item:
    """A thing standing on the ground: lower in the image = nearer = larger and in front."""
    category_id = fixed.get("category_id", int(rng.choice([BOX, DISC, TRIANGLE])))
    bottom = fixed.get("bottom", rng.uniform(0.45, 1.1) * height)
    size = fixed.get("size", height * np.clip(0.6 * (bottom / height - 0.25), 0.08, 0.55) * rng.uniform(0.75, 1.25))
    aspect = {BOX: rng.uniform(0.8, 1.8), DISC: rng.uniform(0.6, 1.3), TRIANGLE: rng.uniform(0.8, 1.3)}[category_id]
    w, h = size * aspect, size
    x0 = fixed.get("x0", rng.uniform(-0.15, 1.15) * width - w / 2)
    colour = fixed.get("colour", _thing_colour(rng, category_id))
    return _Item("instance", category_id, bottom, [_Shape(category_id, x0, bottom - h, w, h, colour)])


def _touching_pair(rng: np.random.Generator, height: int, width: int) -> list[_Item]:
    """Two instances of one class and one colour side by side (boxes touch, round shapes overlap a bit)."""
    first = _instance(rng, height, width)
    a = first.shapes[0]
    step = {BOX: 1.0, DISC: 0.85, TRIANGLE: 0.75}[first.category_id]
    second = _instance(
        rng,
        height,
        width,
        category_id=first.category_id,
        bottom=first.z,
        size=a.h,
        x0=a.x0 + step * a.w,
        colour=a.colour.copy(),
    )
    second.shapes[0].w = a.w
    second.z = first.z + 1e-3  # drawn after, so it overlaps the first where they meet
    return [first, second]


def _nested_pair(rng: np.random.Generator, height: int, width: int) -> list[_Item]:
    """A large instance and a small one in front of it whose box lies inside the large box."""
    bottom = rng.uniform(0.8, 1.0) * height
    big = _instance(rng, height, width, category_id=int(rng.choice([BOX, DISC])), bottom=bottom,
                    size=rng.uniform(0.45, 0.6) * height)
    b = big.shapes[0]
    small_h = b.h * rng.uniform(0.25, 0.4)
    small = _instance(rng, height, width, size=small_h, bottom=b.y0 + b.h * rng.uniform(0.55, 0.9))
    s = small.shapes[0]
    s.w = min(s.w, 0.45 * b.w)
    s.x0 = b.x0 + rng.uniform(0.05, 0.95 - s.w / b.w) * b.w
    small.z = big.z + 1e-3
    return [big, small]


def _crowd(rng: np.random.Generator, height: int, width: int) -> _Item:
    """A cluster of small same-class shapes annotated as one crowd segment."""
    category_id = int(rng.choice([BOX, DISC, TRIANGLE]))
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.55, 0.85) * height
    rw, rh = rng.uniform(0.15, 0.3) * width, rng.uniform(0.1, 0.2) * height
    shapes = []
    for _ in range(int(rng.integers(6, 13))):
        s = rng.uniform(0.05, 0.1) * height
        shapes.append(
            _Shape(category_id, cx + rng.uniform(-0.5, 0.5) * rw - s / 2, cy + rng.uniform(-0.5, 0.5) * rh - s,
                   s * rng.uniform(0.8, 1.4), s, _thing_colour(rng, category_id))
        )
    return _Item("crowd", category_id, cy + rh / 2, shapes)


def _void_blob(rng: np.random.Generator, height: int, width: int) -> _Item:
    """Unlabelled clutter: a few overlapping ellipses at a random depth."""
    cx, cy = rng.uniform(0.0, 1.0) * width, rng.uniform(0.2, 0.95) * height
    shapes = []
    for _ in range(int(rng.integers(2, 4))):
        w, h = rng.uniform(0.05, 0.15) * width, rng.uniform(0.06, 0.18) * height
        shapes.append(_Shape(DISC, cx + rng.uniform(-0.5, 0.5) * w - w / 2, cy + rng.uniform(-0.5, 0.5) * h - h / 2,
                             w, h, np.zeros(3)))
    return _Item("void", 0, rng.uniform(0.4, 1.2) * height, shapes)


def _layout(rng: np.random.Generator, height: int, width: int, params: SceneParams) -> list[_Item]:
    """All items of a scene, sorted back to front."""
    items = [_instance(rng, height, width) for _ in range(int(rng.integers(params.min_things, params.max_things + 1)))]
    # One instance always straddles the left or right border.
    edge = items[0].shapes[0]
    edge.x0 = -0.4 * edge.w if rng.random() < 0.5 else width - 0.6 * edge.w
    if rng.random() < params.p_touching_pair:
        items += _touching_pair(rng, height, width)
    if rng.random() < params.p_nested:
        items += _nested_pair(rng, height, width)
    if rng.random() < params.p_crowd:
        items.append(_crowd(rng, height, width))
    if rng.random() < params.p_void:
        items.append(_void_blob(rng, height, width))
    return sorted(items, key=lambda item: item.z)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int = 16) -> np.ndarray:
    """``(H, W)`` float32 low-frequency noise in [0, 1] (bilinear upsampling of a coarse grid)."""
    coarse = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))


def _stuff(rng: np.random.Generator, height: int, width: int, params: SceneParams) -> tuple[np.ndarray, np.ndarray]:
    """Stuff category ids ``(H, W)`` and the textured background ``(H, W, 3)`` float32."""
    x = (np.arange(width, dtype=np.float32) + 0.5)[None, :]
    y = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    labels = _stuff_labels(rng, x, y, params)
    return labels, _stuff_texture(rng, labels, x, y)


def _stuff_labels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, params: SceneParams) -> np.ndarray:
    """``(H, W)`` stuff category ids: sky over wall over road along wavy lines, grass patches.

    ``x`` ``(1, W)`` and ``y`` ``(H, 1)`` are the pixel centres.
    """
    height, width = y.shape[0], x.shape[1]

    def wavy(mean: float) -> np.ndarray:
        amp, freq, phase = rng.uniform(0.02, 0.08), rng.uniform(0.5, 2.5), rng.uniform(0, 2 * np.pi)
        return height * (mean + amp * np.sin(2 * np.pi * freq * x / width + phase))

    sky_line = wavy(rng.uniform(0.15, 0.4))
    if rng.random() < params.p_no_sky:
        sky_line = np.full_like(sky_line, -1.0)
    road_line = wavy(rng.uniform(0.55, 0.72))
    labels = np.where(y < sky_line, SKY, np.where(y < road_line, WALL, ROAD)).astype(np.int32)
    if rng.random() < params.p_grass:
        for _ in range(int(rng.integers(1, 4))):
            gw, gh = rng.uniform(0.03, 0.35) * width, rng.uniform(0.03, 0.2) * height
            gx, gy = rng.uniform(0, 1) * width, rng.uniform(0.45, 1.0) * height
            patch = ((x - gx) / (gw / 2)) ** 2 + ((y - gy) / (gh / 2)) ** 2 <= 1.0
            labels[patch & (labels != SKY)] = GRASS
    return labels


def _stuff_texture(rng: np.random.Generator, labels: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 background: each stuff class's texture on its pixels of ``labels``."""
    height, width = labels.shape
    smooth = _smooth_noise(rng, height, width)
    fine = rng.standard_normal((height, width), dtype=np.float32)
    wall_colour = np.array([rng.uniform(110, 170), rng.uniform(85, 130), rng.uniform(75, 120)], dtype=np.float32)
    grey = rng.uniform(80, 115)
    lane_y = rng.uniform(0.8, 0.92) * height
    brick_h = max(3, height // 24)
    brick_w = 2.5 * brick_h
    sky_top = np.array([100, 150, 210], dtype=np.float32)
    sky_bottom = np.array([175, 205, 240], dtype=np.float32)

    def sky(yv: np.ndarray, xv: np.ndarray, sm: np.ndarray, fn: np.ndarray) -> np.ndarray:
        return sky_top + (sky_bottom - sky_top) * (yv / height)[:, None] + 45 * np.clip(sm - 0.5, 0, 1)[:, None]

    def wall(yv: np.ndarray, xv: np.ndarray, sm: np.ndarray, fn: np.ndarray) -> np.ndarray:
        row = np.floor(yv / brick_h)
        mortar = ((yv % brick_h) < 1) | (((xv + (row % 2) * brick_w / 2) % brick_w) < 1)
        return wall_colour * np.where(mortar, 0.65, 1.0)[:, None] + 6 * fn[:, None]

    def road(yv: np.ndarray, xv: np.ndarray, sm: np.ndarray, fn: np.ndarray) -> np.ndarray:
        dashes = (np.abs(yv - lane_y) < max(1.0, height / 100)) & ((xv % (width / 6)) < width / 12)
        return np.where(dashes[:, None], 215.0, (grey + 10 * fn + 15 * sm)[:, None] * np.ones(3, np.float32))

    def grass(yv: np.ndarray, xv: np.ndarray, sm: np.ndarray, fn: np.ndarray) -> np.ndarray:
        return np.stack([55 + 10 * sm, 125 + 25 * fn, 40 + 8 * fn], axis=-1)

    # Textures are evaluated on each class's pixels only: full-image float arrays per class
    # dominated the time at Cityscapes resolution.
    texture = np.empty((height, width, 3), dtype=np.float32)
    ys, xs = np.broadcast_to(y, (height, width)), np.broadcast_to(x, (height, width))
    for category_id, paint in ((SKY, sky), (WALL, wall), (ROAD, road), (GRASS, grass)):
        where = labels == category_id
        texture[where] = paint(ys[where], xs[where], smooth[where], fine[where])
    return texture


def _paint(window: np.ndarray, mask: np.ndarray, shape: _Shape, top: int) -> None:
    """Shaded fill (lighter on top) with a darker one-pixel outline, inside an image window.

    ``window`` is the ``(h, w, 3)`` view of the image holding the shape (its first row is image row
    ``top``) with a one-pixel margin, so the outline is found without looking outside it.
    """
    rows = (np.arange(top, top + window.shape[0], dtype=np.float32) + 0.5)[:, None]
    shade = 1.15 - 0.35 * np.clip((rows - shape.y0) / shape.h, 0, 1)
    fill = (shape.colour[None, None, :] * shade[..., None]).astype(np.float32)
    window[mask] = np.broadcast_to(fill, window.shape)[mask]
    eroded = mask.copy()
    eroded[1:] &= mask[:-1]
    eroded[:-1] &= mask[1:]
    eroded[:, 1:] &= mask[:, :-1]
    eroded[:, :-1] &= mask[:, 1:]
    window[mask & ~eroded] *= 0.55


def _draw_items(rng: np.random.Generator, image: np.ndarray, panoptic: np.ndarray, items: list[_Item]) -> set[int]:
    """Paint the items in order into ``image`` ``(H, W, 3)`` and ``panoptic`` ``(H, W)``; the crowd segment ids."""
    height, width = panoptic.shape
    crowd_ids: set[int] = set()
    count = {BOX: 0, DISC: 0, TRIANGLE: 0}
    for item in items:
        segment_id = 0
        if item.role != "void":
            count[item.category_id] += 1
            segment_id = 1000 * item.category_id + count[item.category_id]
        if item.role == "crowd":
            crowd_ids.add(segment_id)
        for shape in item.shapes:
            rows, cols, mask = shape.window_mask(height, width)
            if item.role == "void":
                clutter = rng.uniform(0, 255, (*mask.shape, 3)).astype(np.float32)
                clutter[..., 1] *= 0.3  # magenta-ish, unlike any class
                image[rows, cols][mask] = clutter[mask]
            else:
                _paint(image[rows, cols], mask, shape, rows.start)
            panoptic[rows, cols][mask] = segment_id
    return crowd_ids


def _annotate(panoptic: np.ndarray, crowd_ids: set[int], min_area: float) -> list[dict[str, Any]]:
    """The segments of ``panoptic``; thing instances under ``min_area`` pixels (too hidden) become void."""
    segments = []
    for segment_id in sorted(pd.unique(panoptic.ravel())):
        if segment_id == 0:
            continue
        mask = panoptic == segment_id
        area = int(mask.sum())
        category_id = int(segment_id) // 1000
        is_thing = category_id in (BOX, DISC, TRIANGLE)
        if is_thing and segment_id not in crowd_ids and area < min_area:
            panoptic[mask] = 0  # too hidden to annotate: void
            continue
        segments.append({"id": int(segment_id), "category_id": category_id, "area": area,
                         "bbox": mask_bbox_xywh(mask), "iscrowd": int(segment_id in crowd_ids)})
    return segments


def render_scene(
    rng: np.random.Generator, height: int, width: int, params: SceneParams = SceneParams()
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Draw one scene.

    Returns ``(image (H, W, 3) uint8, panoptic ids (H, W) int32, segments_info)`` where
    ``segments_info`` lists ``id, category_id, area, bbox, iscrowd`` for every segment in the map.
    """
    labels, image = _stuff(rng, height, width, params)
    panoptic = labels * 1000
    crowd_ids = _draw_items(rng, image, panoptic, _layout(rng, height, width, params))
    segments = _annotate(panoptic, crowd_ids, params.min_visible_fraction * height * width)
    image *= rng.uniform(0.85, 1.15)
    image += 3.0 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), panoptic, segments


def _semantic(panoptic: np.ndarray, segments: list[dict[str, Any]]) -> np.ndarray:
    semantic = np.full(panoptic.shape, IGNORE_INDEX, dtype=np.uint8)
    for seg in segments:
        semantic[panoptic == seg["id"]] = CATEGORIES.train_id(seg["category_id"])
    return semantic


def _scenes(
    num_images: int, height: int, width: int, seed: int, split: str, params: SceneParams
) -> Iterator[tuple[int, np.ndarray, np.ndarray, list[dict[str, Any]]]]:
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        yield (index + 1, *render_scene(rng, height, width, params))


def write_split(
    out: Path, split: str, num_images: int, height: int, width: int, seed: int, params: SceneParams,
    progress: bool | None = False,
) -> None:
    """Write one split (images, panoptic PNG + JSON, semantic PNGs, instances JSON) under ``out``.

    ``progress``: a bar per split on stderr (True), when it is a terminal (None), or none (False).
    """
    for folder in (f"images/{split}", f"panoptic_{split}", f"semantic_{split}"):
        (out / folder).mkdir(parents=True)
    images, panoptic_anns, instance_anns = [], [], []
    scenes = progress_bar(_scenes(num_images, height, width, seed, split, params), total=num_images, desc=split,
                          progress=progress)
    for image_id, image, panoptic, segments in scenes:
        name = f"{image_id:06d}.png"
        write_png(out / "images" / split / name, image)
        write_png(out / f"panoptic_{split}" / name, id2rgb(panoptic))
        write_png(out / f"semantic_{split}" / name, _semantic(panoptic, segments))
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        panoptic_anns.append({"image_id": image_id, "file_name": name, "segments_info": segments})
        instance_anns += thing_annotations(panoptic, segments, CATEGORIES, image_id, len(instance_anns) + 1)
    categories = CATEGORIES.to_json()
    write_json(out / f"panoptic_{split}.json",
               {"images": images, "annotations": panoptic_anns, "categories": categories})
    write_json(out / f"instances_{split}.json",
               {"images": images, "annotations": instance_anns,
                "categories": [c for c in categories if c["isthing"]]})


def _metadata(num_train: int, num_val: int, height: int, width: int, seed: int, params: SceneParams) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "num_images": {"train": num_train, "val": num_val},
        "height": height,
        "width": width,
        "seed": seed,
        "scene": asdict(params),
    }


def generate(
    out: str | Path,
    num_train: int,
    num_val: int,
    height: int = 128,
    width: int = 256,
    seed: int = 0,
    params: SceneParams = SceneParams(),
    overwrite: bool = False,
    progress: bool | None = False,
) -> Path:
    """Generate the train and val splits into ``out`` atomically and return ``out``.

    The data are built in a temporary sibling folder and renamed into place only when
    complete: a failure leaves no partial folder behind, and an existing ``out`` is
    untouched unless ``overwrite`` (then it is replaced only after the new one is done).
    ``progress``: a bar per split on stderr (True), only when stderr is a terminal (None), or none
    (False, the default: training workers generate the set too, and print their own lines).
    """
    out = Path(out)
    if num_train < 1 or num_val < 1 or height < 32 or width < 32:
        raise ValueError(f"need >= 1 image per split and sides >= 32 px, got train={num_train} val={num_val} "
                         f"size={height}x{width}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for split, count in zip(SPLITS, (num_train, num_val), strict=True):
            write_split(tmp, split, count, height, width, seed, params, progress)
        write_json(tmp / METADATA_FILE, _metadata(num_train, num_val, height, width, seed, params))
        if out.exists():
            old = out.rename(out.with_name(f".{out.name}.old-{tmp.name}"))
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_generated(
    root: str | Path, num_train: int, num_val: int, height: int, width: int, seed: int,
    params: SceneParams = SceneParams(),
) -> Path:
    """Generate the synthetic set into ``root`` unless an identical one is already there.

    Safe when several processes race: the loser of the final rename checks that the
    winner wrote the same parameters. A folder made with other parameters is an error,
    never silently replaced.
    """
    root = Path(root)
    wanted = _metadata(num_train, num_val, height, width, seed, params)
    if not root.exists():
        try:
            generate(root, num_train, num_val, height, width, seed, params)
        except (FileExistsError, OSError):
            if not root.exists():
                raise
    meta_path = root / METADATA_FILE
    found = read_json(meta_path) if meta_path.is_file() else None
    if found != wanted:
        raise FileExistsError(
            f"{root} holds a different dataset (its {METADATA_FILE} is {found}, wanted {wanted}); "
            "delete it or point data.root elsewhere"
        )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--num-images", type=int, default=200, help="training images (default 200)")
    parser.add_argument("--num-val", type=int, default=None, help="validation images (default num-images / 4)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out once the new set is done")
    args = parser.parse_args(argv)
    num_val = args.num_val if args.num_val is not None else max(1, args.num_images // 4)
    out = generate(args.out, args.num_images, num_val, args.height, args.width, args.seed, overwrite=args.overwrite,
                   progress=None)  # a bar on a terminal, nothing in a log
    print(f"wrote {args.num_images} train + {num_val} val images ({args.height}x{args.width}, seed {args.seed}) "
          f"to {out}")


if __name__ == "__main__":
    run_command(main)
