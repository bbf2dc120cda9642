"""experiments/show_data.py on a tiny synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def test_show_data_generates_describes_and_draws(tmp_path: Path) -> None:
    root, out = tmp_path / "syn", tmp_path / "shown"
    result = subprocess.run(
        [sys.executable, str(REPO / "experiments/show_data.py"), "--out", str(out), "--num-images", "3",
         f"data.root={root}", "data.synthetic.generate=true", "data.synthetic.num_train=4", "data.synthetic.num_val=3"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    assert (root / "panoptic_train.json").is_file() and (root / "panoptic_val.json").is_file()
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["train"]["images"] == 4 and stats["val"]["images"] == 3
    with Image.open(out / "val_ground_truth.png") as picture:
        assert picture.size == (3 * 256 + 2 * 4, 3 * 128 + 2 * 4)
    assert (out / "train_augmented.png").is_file()
    assert str(out / "val_ground_truth.png") in result.stdout
