"""Typed configuration: paper defaults, presets, overrides, and errors that name the key and file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unips.config import PRESET_DIR, Config, ConfigError, flatten, load_config


def test_defaults_are_the_papers_cityscapes_settings() -> None:
    cfg = Config()
    assert cfg.model.backbone.depth == 50 and cfg.model.backbone.fpn_channels == 256 and cfg.model.backbone.se_on_c5
    assert cfg.model.semantic.loss == "lovasz" and cfg.model.detector.mask_loss == "lovasz"
    assert cfg.model.panoptic.variant == "B" and cfg.model.panoptic.affinity_channels == 128
    o = cfg.optim
    assert (o.images_per_batch, o.max_iter, o.base_lr, o.steps, o.gamma) == (32, 65_000, 0.01, (40_000, 55_000), 0.1)
    assert (o.warmup_iters, o.warmup_factor, o.weight_decay) == (500, pytest.approx(1 / 3), 1e-4)
    assert (o.loss_weights.detection, o.loss_weights.semantic, o.loss_weights.panoptic) == (0.25, 1.0, 1.0)
    a = cfg.data.augment
    assert (a.kind, a.scale_range, a.crop_size, a.hflip_prob) == ("scale_crop", (0.5, 2.0), (512, 1024), 0.5)
    assert cfg.eval.score_thresh == 0.5 and cfg.eval.trim_stuff
    assert cfg.platform.num_workers == 4 and cfg.platform.use_gpu


def test_cityscapes_preset_spells_out_exactly_the_defaults() -> None:
    assert load_config("cityscapes_r50") == Config()


def test_coco_preset_has_the_papers_coco_schedule_and_weights() -> None:
    cfg = load_config("coco_r50")
    o = cfg.optim
    assert (o.max_iter, o.base_lr, o.steps) == (200_000, 0.02, (150_000, 190_000))
    assert (o.loss_weights.detection, o.loss_weights.semantic, o.loss_weights.panoptic) == (1.0, 0.2, 0.1)
    assert cfg.model.panoptic.variant == "C" and cfg.eval.score_thresh == 0.75
    assert (cfg.data.augment.kind, cfg.data.augment.short_side, cfg.data.augment.max_long_side) == (
        "shortest_edge", 800, 1333)


def test_smoke_preset_is_small_enough_for_two_cpu_cores() -> None:
    cfg = load_config("smoke")
    assert cfg.data.dataset == "synthetic" and (cfg.data.synthetic.height, cfg.data.synthetic.width) == (128, 256)
    assert cfg.model.backbone.depth <= 18 and cfg.optim.max_iter <= 500
    assert not cfg.platform.use_gpu and cfg.platform.num_workers * cfg.platform.cpus_per_worker <= 2


def test_overrides_are_typed_from_yaml() -> None:
    cfg = load_config("smoke", ["optim.base_lr=0.02", "optim.steps=[100, 200]", "data.augment.crop_size=[64,128]",
                                "model.detector.with_masks=false", "eval.modes=[full, amx]", "eval.max_images=null"])
    assert cfg.optim.base_lr == 0.02 and cfg.optim.steps == (100, 200)
    assert cfg.data.augment.crop_size == (64, 128) and cfg.model.detector.with_masks is False
    assert cfg.eval.modes == ["full", "amx"] and cfg.eval.max_images is None


def test_preset_can_be_given_as_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\noptim: {max_iter: 10, steps: [5], warmup_iters: 2}\n")
    cfg = load_config(path)
    assert cfg.name == "mine" and cfg.optim.max_iter == 10


def test_unknown_override_key_names_the_key_and_the_preset() -> None:
    with pytest.raises(ConfigError, match=r"smoke\.yaml: unknown key 'model\.backbone\.dpeth' in command-line "
                                          r"override 'model\.backbone\.dpeth=18'"):
        load_config("smoke", ["model.backbone.dpeth=18"])


def test_wrongly_typed_override_names_the_key_and_the_preset() -> None:
    with pytest.raises(ConfigError, match=r"smoke\.yaml with overrides optim\.base_lr=fast: optim\.base_lr: "
                                          r"Input should be a valid number"):
        load_config("smoke", ["optim.base_lr=fast"])


def test_unknown_key_in_a_preset_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("optim:\n  base_lr: 0.01\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: optim\.momentun: unknown key"):
        load_config(path)


def test_wrong_type_in_a_preset_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone:\n    depth: 42\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: model\.backbone\.depth: Input should be 18, 34, 50 or 101"):
        load_config(path)


def test_malformed_override_and_invalid_yaml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="override 'optim.base_lr' is not of the form key.sub=value"):
        load_config("smoke", ["optim.base_lr"])
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        load_config(path)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="no preset named 'citiscapes'.*cityscapes_r50"):
        load_config("citiscapes")


def test_inconsistent_ablation_switches_are_refused() -> None:
    with pytest.raises(ConfigError, match="use_affinity needs model.panoptic.end_to_end"):
        load_config("smoke", ["model.panoptic.end_to_end=false"])
    with pytest.raises(ConfigError, match="'heu'.*with_masks is false"):
        load_config("smoke", ["model.detector.with_masks=false", "eval.modes=[heu]"])
    with pytest.raises(ConfigError, match="'full'.*use_affinity is false"):
        load_config("smoke", ["model.panoptic.use_affinity=false", "model.panoptic.end_to_end=false",
                              "eval.modes=[full]"])
    with pytest.raises(ConfigError, match=r"optim\.steps must increase"):
        load_config("smoke", ["optim.steps=[400]"])


def test_cli_prints_a_yaml_that_loads_back_to_the_same_config(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "unips.config", "--preset", "smoke", "optim.max_iter=40",
                          "optim.warmup_iters=10", "optim.steps=[20]"], check=True, capture_output=True, text=True).stdout
    path = tmp_path / "resolved.yaml"
    path.write_text(out)
    assert load_config(path) == load_config("smoke", ["optim.max_iter=40", "optim.warmup_iters=10", "optim.steps=[20]"])
    assert yaml.safe_load(out)["optim"]["max_iter"] == 40


def test_flatten_gives_one_dotted_key_per_leaf() -> None:
    flat = flatten(Config())
    assert flat["optim.base_lr"] == 0.01 and flat["model.backbone.depth"] == 50
    assert flat["data.augment.crop_size"] == [512, 1024]
    assert not any(isinstance(v, dict) for v in flat.values())


def test_every_preset_loads() -> None:
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    assert {"cityscapes_r50", "coco_r50", "smoke"} <= set(names)
    for name in names:
        load_config(name)


def test_smoke_preset_scales_down_both_augmentation_recipes() -> None:
    coco_style = load_config("smoke", ["data.augment.kind=shortest_edge"]).data.augment
    assert (coco_style.short_side, coco_style.max_long_side) == (128, 256)
    assert load_config("smoke").data.augment.crop_size == (128, 256)
