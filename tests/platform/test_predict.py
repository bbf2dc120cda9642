"""experiments/predict.py: a checkpoint and a folder of one's own pictures in, COCO panoptic files and overlays out."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.platform.conftest import tiny_checkpoint
from tests.test_command_errors import assert_one_error_line, run_here
from unips.datasets.panoptic_format import rgb2id
from unips.datasets.pictures import read_picture
from unips.datasets.synthetic import CATEGORIES
from unips.platform.predict import picture_ids

REPO = Path(__file__).resolve().parents[2]
PREDICT = str(REPO / "experiments" / "predict.py")


def mixed_pictures(folder: Path) -> dict[str, tuple[int, int]]:
    """Pictures of several kinds and sizes, a corrupt one and a text file; ``id -> (height, width)`` of the
    readable ones."""
    folder.mkdir()
    rng = np.random.default_rng(0)

    def noise(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, shape, dtype=np.uint8)

    Image.fromarray(noise(64, 96, 3)).save(folder / "street.png")  # after street.jpg in order: id street-2
    Image.fromarray(noise(50, 70, 3)).save(folder / "street.jpg", quality=90)
    Image.fromarray(noise(40, 40)).save(folder / "grey.png")  # mode L
    Image.fromarray(noise(33, 65, 4)).save(folder / "alpha.png")  # RGBA
    Image.fromarray((noise(36, 48).astype(np.uint16) * 257)).save(folder / "deep.png")  # 16-bit greyscale
    (folder / "sub").mkdir()
    Image.fromarray(noise(45, 60, 3)).save(folder / "sub" / "nested.bmp")
    good = io.BytesIO()
    Image.fromarray(noise(48, 64, 3)).save(good, format="JPEG")
    (folder / "bad.jpg").write_bytes(good.getvalue()[:300])  # a JPEG cut short
    (folder / "notes.txt").write_text("not a picture")  # not a picture suffix: not even tried
    return {"street": (50, 70), "street-2": (64, 96), "grey": (40, 40), "alpha": (33, 65), "deep": (36, 48),
            "nested": (45, 60)}


def test_pictures_of_every_kind_are_rgb_and_a_cut_file_is_named(tmp_path: Path) -> None:
    expected = mixed_pictures(tmp_path / "pictures")
    deep = read_picture(tmp_path / "pictures" / "deep.png")
    reference = np.asarray(Image.open(tmp_path / "pictures" / "deep.png"), dtype=np.float64) / 257
    assert deep.dtype == np.uint8 and np.array_equal(deep[..., 1], np.rint(reference).astype(np.uint8))
    assert read_picture(tmp_path / "pictures" / "alpha.png").shape == (*expected["alpha"], 3)
    with pytest.raises(ValueError, match=r"cannot read .*bad\.jpg"):
        read_picture(tmp_path / "pictures" / "bad.jpg")
    names = [Path(f"{stem}.png") for stem in ("a", "a", "a-2", "b")]
    assert picture_ids(names) == ["a", "a-2", "a-2-2", "b"]


@pytest.mark.slow
def test_predict_writes_coco_panoptic_files_the_pq_command_reads(tmp_path: Path) -> None:
    expected = mixed_pictures(tmp_path / "pictures")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, PREDICT, "--checkpoint", str(checkpoint), str(tmp_path / "pictures"),
                           "--mode", "full", "heu", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # The corrupt file: a warning naming it as it is met, and the count at the end.
    assert re.search(rf"warning: cannot read {re.escape(str(tmp_path / 'pictures' / 'bad.jpg'))}: .*\(skipped\)",
                     done.stderr), done.stderr
    assert "predicted 6 of 7 pictures" in done.stdout and "skipped 1 unreadable file(s)" in done.stdout
    for mode in ("full", "heu"):
        data = json.loads((out / mode / "panoptic_pred.json").read_text())
        assert sorted(image["id"] for image in data["images"]) == sorted(expected)
        named = {image["id"]: Path(image["file_name"]).relative_to(tmp_path / "pictures") for image in data["images"]}
        assert named["street-2"] == Path("street.png") and named["nested"] == Path("sub/nested.bmp")
        assert [c["id"] for c in data["categories"]] == [c.id for c in CATEGORIES.categories]  # dataset ids
        by_id = {ann["image_id"]: ann for ann in data["annotations"]}
        for image_id, size in expected.items():
            ids = rgb2id(np.asarray(Image.open(out / mode / "panoptic_pred" / f"{image_id}.png")))
            assert ids.shape == size, image_id
            assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(s["id"] for s in by_id[image_id]["segments_info"])
            overlay = np.asarray(Image.open(out / mode / "overlays" / f"{image_id}_overlay.png"))
            assert overlay.shape == (*size, 3), image_id
        things = {c.id for c in CATEGORIES.categories if c.isthing}
        assert any(s["category_id"] in things for ann in data["annotations"] for s in ann["segments_info"])
        # The PQ command reads the folder as a COCO panoptic set: scored against itself, 100.
        scored = subprocess.run([sys.executable, "-m", "unips.evaluation.pq", "--workers", "1",
                                 "--gt-json", str(out / mode / "panoptic_pred.json"),
                                 "--pred-json", str(out / mode / "panoptic_pred.json")],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert scored.returncode == 0, scored.stderr
        assert "6 images" in scored.stdout
        all_row = next(line for line in scored.stdout.splitlines() if line.startswith("All"))
        assert all_row.split("|")[1].split()[0] == "100.0", scored.stdout


def test_predict_errors_name_the_input_at_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", "model.detector.with_masks=false", "eval.modes=[full]")
    (tmp_path / "pictures").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "pictures" / "a.png")
    missing = run_here([PREDICT, "--checkpoint", str(checkpoint), "nowhere"], tmp_path, monkeypatch, capsys)
    assert_one_error_line(missing, r"no picture or folder nowhere")
    no_masks = run_here([PREDICT, "--checkpoint", str(checkpoint), "pictures", "--modes", "heu"], tmp_path,
                        monkeypatch, capsys)
    assert_one_error_line(no_masks, r"mode 'heu' is not one of this network's modes \(full, amx\): "
                                    r"eval.modes has 'heu'.*with_masks is false")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "state.pt").write_bytes(checkpoint.read_bytes()[:2000])  # a copy cut short
    cut = run_here([PREDICT, "--checkpoint", "cut", "pictures"], tmp_path, monkeypatch, capsys)
    assert_one_error_line(cut, r"cut/state\.pt is not a unips checkpoint")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG broken")
    nothing = run_here([PREDICT, "--checkpoint", str(checkpoint), "broken", "--out", "o"], tmp_path, monkeypatch,
                       capsys)
    assert_one_error_line(nothing, r"none of the 1 files could be read as a picture")
    assert not (tmp_path / "outputs").exists()  # the failed commands wrote nothing where a default --out would be
