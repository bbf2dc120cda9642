"""Training state: safe loading, RNG round trip, and the network rebuilt from a checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from unips.config import load_config
from unips.datasets import PanopticDataset
from unips.models.build import build_model
from unips.platform.checkpoint import load_state, model_from_checkpoint, rng_state, save_state, set_rng_state


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_state(tmp_path, {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_state(tmp_path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


def test_the_network_comes_back_from_its_checkpoint(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = PanopticDataset(synthetic_root / "images/val", synthetic_root / "panoptic_val.json",
                              synthetic_root / "panoptic_val")
    cfg = load_config("smoke", ["model.backbone.fpn_channels=16", "model.semantic.channels=16",
                                "model.panoptic.affinity_channels=8", "model.detector.box_head_dim=32",
                                "model.detector.mask_head_channels=8", "eval.score_thresh=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg, dataset.categories).eval()
    save_state(tmp_path, {"model": model.state_dict(), "step": 7, "config": cfg.model_dump(mode="json"),
                          "categories": dataset.categories.to_json()})
    restored, restored_cfg, categories, step = model_from_checkpoint(tmp_path / "state.pt")
    image, target = dataset[0]
    with torch.no_grad():
        a, b = model([image])[0], restored.eval()([image])[0]
    assert step == 7 and restored_cfg == cfg and categories == dataset.categories
    assert torch.equal(a.p, b.p) and torch.equal(a.semantic, b.semantic)
    assert torch.equal(a.detections["scores"], b.detections["scores"]) and a.detections["scores"].numel() > 0


def test_missing_or_foreign_checkpoints_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nothing"):
        load_state(tmp_path / "nothing")
    (tmp_path / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"state\.pt is not a unips checkpoint"):
        load_state(tmp_path)
    save_state(tmp_path / "partial", {"model": {}})
    with pytest.raises(ValueError, match=r"lacks \['categories', 'config', 'step'\]"):
        model_from_checkpoint(tmp_path / "partial")


def test_a_cut_short_checkpoint_is_passed_over_for_the_older_one(tmp_path: Path) -> None:
    from unips.platform.train_loop import newest_readable_state

    run = tmp_path / "run"
    older = save_state(run / "checkpoint_2026-12-03_01-00-00.000000", {"step": 1})
    newest = save_state(run / "checkpoint_2026-12-03_01-00-05.000000", {"step": 2})
    (run / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray Train's own file beside them
    assert newest_readable_state(newest.parent) == ({"step": 2}, [])
    newest.write_bytes(newest.read_bytes()[:20])
    assert newest_readable_state(newest.parent) == ({"step": 1}, [str(newest)])
    older.write_bytes(b"")
    with pytest.raises(ValueError, match=r"no readable checkpoint in .*run: .*01-00-05.*, .*01-00-00.* are all"):
        newest_readable_state(newest.parent)
