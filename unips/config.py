"""Typed experiment configuration: pydantic models, YAML presets, ``key.sub=value`` overrides.

Defaults are the paper's Cityscapes settings (Li, Qi & Torr 2020, section 4 and
Appendix B): ResNet-50-FPN, Lovasz losses, 65k iterations of batch 32 at lr 0.01
(x0.1 at 40k and 55k), 500 warm-up iterations from lr/3, weight decay 1e-4, loss
weights detection 0.25 / semantic 1.0 / panoptic 1.0, random scale 0.5-2 with a
512x1024 crop, flip and colour jitter, detection cut-off 0.5, variant B, and
small stuff regions trimmed at evaluation. Presets live in
``experiments/configs/*.yaml`` and only state what differs from, or documents,
these defaults.

    cfg = load_config("smoke", ["optim.max_iter=50", "model.backbone.depth=34"])

Any unknown key or wrong type raises :class:`ConfigError` naming the key, and
the preset file or command-line override it came from.
"""

from __future__ import annotations

import argparse
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unips.commands import run_command

PRESET_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


class ConfigError(ValueError):
    """A preset or override does not fit the configuration schema."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InferenceMode(StrEnum):
    """How a panoptic answer is read from the network (paper Table 1)."""

    FULL = "full"  # argmax over the channels of P (needs the affinity head)
    AMX = "amx"  # argmax over the channels of Psi
    HEU = "heu"  # the Panoptic-FPN heuristic merge of instance masks and semantic argmax (needs masks)


# ----------------------------------------------------------------------------- data
class SyntheticConfig(_Section):
    """The generated dataset used when ``data.dataset == "synthetic"`` (made on first use)."""

    num_train: int = Field(200, ge=1)
    num_val: int = Field(50, ge=1)
    height: int = Field(128, ge=32)
    width: int = Field(256, ge=32)
    seed: int = 0
    # Make the set at ``data.root`` when that folder does not exist. A ``data.root`` given on the
    # command line turns this off unless ``data.synthetic.generate=true`` comes with it: a mistyped
    # path is then an error naming it, not a new dataset.
    generate: bool = True


class AugmentConfig(_Section):
    """Training augmentation (albumentations), applied jointly to image and panoptic map.

    ``scale_crop`` is the paper's Cityscapes recipe (random scale, random crop, flip,
    colour jitter); ``shortest_edge`` its COCO recipe (shorter side to ``short_side``,
    longer side at most ``max_long_side``, flip); ``none`` leaves images as they are.
    """

    kind: Literal["scale_crop", "shortest_edge", "none"] = "scale_crop"
    scale_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 1024)  # (height, width)
    short_side: int = 800
    max_long_side: int = 1333
    hflip_prob: float = Field(0.5, ge=0.0, le=1.0)
    # "randomly adjusting the brightness, contrast, hue and saturation by a small amount"
    brightness: float = Field(0.1, ge=0.0)
    contrast: float = Field(0.1, ge=0.0)
    saturation: float = Field(0.1, ge=0.0)
    hue: float = Field(0.02, ge=0.0, le=0.5)


class DataConfig(_Section):
    """Which dataset, where it lives, and how images are prepared."""

    dataset: Literal["cityscapes", "coco", "synthetic"] = "cityscapes"
    root: Path = Path("data/cityscapes")
    train_split: str = "train"
    val_split: str = "val"
    loader_workers: int = Field(4, ge=0)  # DataLoader processes per training worker
    pin_memory: bool = True  # page-locked batches for faster copies to the GPU (only when training on one)
    augment: AugmentConfig = AugmentConfig()
    # Test-time resize of the shorter side (None = full resolution, as on Cityscapes).
    test_short_side: int | None = None
    test_max_long_side: int | None = None
    synthetic: SyntheticConfig = SyntheticConfig()


# ---------------------------------------------------------------------------- model
class BackboneConfig(_Section):
    depth: Literal[18, 34, 50, 101] = 50
    fpn_channels: int = Field(256, ge=1)
    se_on_c5: bool = True  # squeeze-and-excitation on the top ResNet stage
    # "The batch normalisation statistics are kept unchanged" (frozen_bn, with ImageNet weights).
    # Trained from scratch (no weights file), frozen BN is the identity: use gn there.
    norm: Literal["frozen_bn", "bn", "gn"] = "frozen_bn"
    freeze_at: int = Field(2, ge=0, le=5)  # freeze the stem (1) and up to 4 ResNet stages (detectron2's FREEZE_AT)
    pretrained: Path | None = None  # local torchvision ResNet state-dict file; never downloaded


class SemanticHeadConfig(_Section):
    channels: int = Field(128, ge=1)
    loss: Literal["ce", "lovasz"] = "lovasz"


class DetectorConfig(_Section):
    """torchvision's Faster / Mask R-CNN parts (defaults are torchvision's FPN settings)."""

    with_masks: bool = True  # the ablation's `msk`
    mask_loss: Literal["bce", "lovasz"] = "lovasz"
    detections_per_image: int = Field(100, ge=1)  # D, the top-k handed to the panoptic head
    nms_thresh: float = Field(0.5, gt=0.0, le=1.0)
    score_thresh: float = Field(0.05, ge=0.0, lt=1.0)  # raw detections kept for AP and the top-k
    anchor_sizes: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)  # P2..P6
    rpn_pre_nms_top_n_train: int = Field(2000, ge=1)
    rpn_post_nms_top_n_train: int = Field(2000, ge=1)
    rpn_pre_nms_top_n_test: int = Field(1000, ge=1)
    rpn_post_nms_top_n_test: int = Field(1000, ge=1)
    box_batch_size_per_image: int = Field(512, ge=1)
    box_head_dim: int = Field(1024, ge=1)
    mask_head_channels: int = Field(256, ge=1)


class PanopticHeadConfig(_Section):
    variant: Literal["A", "B", "C"] = "B"  # B on Cityscapes, C on COCO
    use_affinity: bool = True  # the ablation's `aff`
    end_to_end: bool = True  # the ablation's `e2e`: train with the panoptic matching loss
    affinity_channels: int = Field(128, ge=1)  # C of Q
    # The forms of the affinity correction the paper leaves open (unips/models/affinity.py); the
    # defaults are the measured best on the synthetic set (docs/design.md, "The affinity correction").
    # Scaling of phi1(Q) (phi0(Q)^T Psi): "pixels" = 1/n; "mass" = 1/sum_j Psi_j(k) per channel k; "none".
    affinity_scale: Literal["pixels", "mass", "none"] = "mass"
    affinity_activation: Literal["relu", "identity"] = "relu"  # after phi0 and phi1
    affinity_centre: bool = True  # subtract the pixel mean of phi0(Q): no constant component in A
    affinity_gain: bool = True  # a learnt gain on the correction, initialised at 0 (P = Psi at the start)
    # Where a detection's channel is revised: "box" = inside its box only (stuff channels everywhere),
    # so one instance cannot take pixels of a look-alike elsewhere; "image" = everywhere.
    affinity_support: Literal["image", "box"] = "image"
    # How the matching loss reads P: "log" = log P, P as unnormalised probabilities, so a one-hot Psi
    # already reaches zero loss; "raw" = P as logits (the paper's "panoptic logits", whose loss can
    # only fall by inflating P, which the affinity does by boosting large channels everywhere).
    logits: Literal["raw", "log"] = "log"
    # Detections fed to the panoptic head in training: "inference" = only those inference keeps
    # (score >= eval.score_thresh), as the paper's "unified training and inference" asks; "all" of the
    # detector's top-D (score >= detector.score_thresh), most of them background early in training.
    train_detections: Literal["all", "inference"] = "inference"
    match_iou_thresh: float = Field(0.5, ge=0.0, le=1.0)
    match_same_class: bool = True
    train_with_gt_boxes: bool = False  # paper Table H
    # Where the matching loss sees P: "image" = P bilinearly upsampled to the image size, exactly what
    # inference takes the argmax of (costs a (K, H, W) tensor per image); "frame" = P's own stride-4
    # grid; "both" = the sum. "image" keeps the sub-pixel boundaries the argmax needs: overfitting two
    # synthetic images, argmax-of-P PQ 94.3 with "image" against 90.2 with "frame".
    loss_resolution: Literal["frame", "image", "both"] = "image"


class ModelConfig(_Section):
    backbone: BackboneConfig = BackboneConfig()
    semantic: SemanticHeadConfig = SemanticHeadConfig()
    detector: DetectorConfig = DetectorConfig()
    panoptic: PanopticHeadConfig = PanopticHeadConfig()


# ----------------------------------------------------------------------- optimisation
class LossWeights(_Section):
    detection: float = Field(0.25, ge=0.0)
    semantic: float = Field(1.0, ge=0.0)
    panoptic: float = Field(1.0, ge=0.0)


class OptimConfig(_Section):
    """SGD with momentum (or AdamW), linear warm-up, step decay (detectron2's WarmupMultiStepLR)."""

    optimizer: Literal["sgd", "adamw"] = "sgd"  # the paper: SGD; AdamW for short from-scratch CPU runs

    images_per_batch: int = Field(32, ge=1)  # total over all workers
    max_iter: int = Field(65_000, ge=1)
    base_lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    steps: tuple[int, ...] = (40_000, 55_000)
    gamma: float = Field(0.1, gt=0.0)
    warmup_iters: int = Field(500, ge=0)
    warmup_factor: float = Field(1.0 / 3.0, gt=0.0, le=1.0)
    clip_grad_norm: float | None = None
    # Linear scaling rule (Goyal et al. 2017): lr = base_lr * images_per_batch / lr_reference_batch.
    lr_reference_batch: int | None = Field(None, ge=1)
    # The panoptic loss is off for the first panoptic_loss_start iterations, then its weight ramps
    # linearly from 0 to loss_weights.panoptic over panoptic_loss_ramp iterations.
    panoptic_loss_start: int = Field(0, ge=0)
    panoptic_loss_ramp: int = Field(0, ge=0)
    # Mixed precision: autocast to bfloat16 (no loss scaling needed) or float16 (with a gradient scaler);
    # "off" trains in float32. Both also run on the CPU (slower there: for tests, not for speed).
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False  # NHWC weights and activations (faster convolutions on tensor cores)
    loss_weights: LossWeights = LossWeights()
    checkpoint_period: int = Field(5000, ge=1)

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_was_a_switch(cls, value: Any) -> Any:
        # Configs and checkpoints written before the dtype could be chosen hold true/false (true: float16).
        return {True: "fp16", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _steps_in_schedule(self) -> OptimConfig:
        # The schedule is not scaled behind the user's back: the message says what to set with max_iter.
        m = self.max_iter
        if list(self.steps) != sorted(self.steps) or any(s <= 0 or s > m for s in self.steps):
            example = ",".join(str(max(1, round(m * f))) for f in (0.75, 0.93)[: len(self.steps) or 1])
            raise ValueError(f"optim.steps must increase within (0, optim.max_iter={m}], got {list(self.steps)}: "
                             f"set optim.steps with optim.max_iter (e.g. optim.steps=[{example}])")
        if self.warmup_iters > m:
            raise ValueError(f"optim.warmup_iters={self.warmup_iters} exceeds optim.max_iter={m}: "
                             f"set optim.warmup_iters with optim.max_iter (e.g. optim.warmup_iters={max(1, m // 6)})")
        return self


# ------------------------------------------------------------------------- evaluation
class EvalConfig(_Section):
    period: int = Field(5000, ge=0)  # iterations between evaluations; 0 = only at the end
    modes: list[InferenceMode] = [InferenceMode.FULL]
    score_thresh: float = Field(0.5, ge=0.0, le=1.0)  # detections kept at inference (0.5 Cityscapes, 0.75 COCO)
    heu_overlap_thresh: float = Field(0.5, ge=0.0, le=1.0)  # heuristic merge: max taken share of a mask
    # Stuff segments below this area (pixels at evaluated resolution) become void (paper App. C).
    trim_stuff: bool = True
    stuff_area_limit: int = Field(4096, ge=0)
    max_images: int | None = None  # evaluate only the first N validation images
    num_visualizations: int = Field(4, ge=0)


# --------------------------------------------------------------------------- platform
class PlatformConfig(_Section):
    """Ray Train / Ray Tune / MLflow settings."""

    num_workers: int = Field(4, ge=1)  # the paper's 4 GPUs
    use_gpu: bool = True
    cpus_per_worker: float = Field(1.0, gt=0.0)
    max_failures: int = Field(2, ge=0)
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<working folder>/mlflow.db
    experiment_name: str = "unips"
    # Ray results: a local or shared-filesystem folder, or a URI Ray and pyarrow know (s3://bucket/x);
    # None: ./ray_results. Multi-node runs need one every node reaches (docs/cluster.md).
    storage_path: str | None = None
    log_period: int = Field(20, ge=1)
    # Seconds between samples of CPU, memory, disk, network (and GPU) use, logged by rank 0 as MLflow's
    # system metrics (system/...) of the training run; 0: off.
    system_metrics_s: float = Field(10.0, ge=0.0)
    # The final network is logged as the run's MLflow model (runs:/<run_id>/model); with a name here it is
    # also registered, a new version of the registered model of that name (models:/<name>/<version>).
    register_model: str | None = None


class Config(_Section):
    """One experiment: everything a training or evaluation run needs."""

    name: str = "cityscapes_r50"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    platform: PlatformConfig = PlatformConfig()

    @model_validator(mode="after")
    def _switches_agree(self) -> Config:
        """The one place where the ablation switches are checked against each other."""
        panoptic = self.model.panoptic
        if panoptic.use_affinity and not panoptic.end_to_end:
            raise ValueError(
                "model.panoptic.use_affinity needs model.panoptic.end_to_end: Q learns only through the panoptic loss"
            )
        if InferenceMode.FULL in self.eval.modes and not panoptic.use_affinity:
            raise ValueError("eval.modes has 'full' (argmax of P) but model.panoptic.use_affinity is false")
        if InferenceMode.HEU in self.eval.modes and not self.model.detector.with_masks:
            raise ValueError("eval.modes has 'heu' (heuristic merge of masks) but model.detector.with_masks is false")
        return self


# ----------------------------------------------------------------------------- loading
def preset_path(preset: str | os.PathLike[str]) -> Path:
    """A YAML path as given, or the named preset in ``experiments/configs/``."""
    candidate = Path(preset)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise FileNotFoundError(f"config file not found: {candidate}")
        return candidate
    for folder in (Path.cwd() / "experiments" / "configs", PRESET_DIR):
        path = folder / f"{preset}.yaml"
        if path.is_file():
            return path
    known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"no preset named '{preset}' in {PRESET_DIR} (known: {', '.join(known)})")


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif isinstance(e.get("input"), dict):  # a whole section's check: its message names the keys
            lines.append(f"{key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{key}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.base_lr=0.02"`` -> ``(["optim", "base_lr"], 0.02)``; the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': the value is not valid YAML: {err}") from err
    return key.strip().split("."), parsed


def _set_path(tree: dict[str, Any], path: list[str], value: Any, override: str, source: Path) -> None:
    """Set ``tree[a][b]... = value``, refusing keys the schema does not have."""
    node: dict[str, Any] = tree
    schema: type[BaseModel] | None = Config
    for depth, part in enumerate(path):
        key = ".".join(path[: depth + 1])
        if schema is None or part not in schema.model_fields:
            raise ConfigError(f"{source}: unknown key '{key}' in command-line override '{override}'")
        annotation = schema.model_fields[part].annotation
        schema = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if depth == len(path) - 1:
            node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child


def with_override(cfg: Config, override: str) -> Config:
    """``cfg`` with one ``key.sub=value`` override applied, validated again (ConfigError or ValidationError,
    both ValueErrors, when the key or value does not fit)."""
    tree = cfg.model_dump(mode="json")
    key_path, value = parse_override(override)
    _set_path(tree, key_path, value, override, Path("<config>"))
    return Config.model_validate(tree)


def load_config(preset: str | os.PathLike[str] = "cityscapes_r50", overrides: list[str] | None = None) -> Config:
    """Read a preset (name or YAML path), apply ``key.sub=value`` overrides, validate."""
    path = preset_path(preset)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {_describe(err)}") from None
    keys = set()
    for text in overrides or []:
        key_path, value = parse_override(text)
        _set_path(raw, key_path, value, text, path)
        keys.add(".".join(key_path))
    if "data.root" in keys and "data.synthetic.generate" not in keys:
        _set_path(raw, ["data", "synthetic", "generate"], False, "data.root=...", path)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(
            f"{path} with overrides {' '.join(overrides or [])}: {_describe(err)}"
        ) from None


def config_to_yaml(cfg: Config) -> str:
    """The fully resolved configuration as YAML (what gets logged with a run)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(cfg: Config) -> dict[str, Any]:
    """``{"optim.base_lr": 0.01, ...}``: one entry per leaf (MLflow params)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", cfg.model_dump(mode="json"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a resolved configuration.")
    parser.add_argument("--preset", default="cityscapes_r50", help="preset name or YAML path")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    print(config_to_yaml(load_config(args.preset, args.overrides)), end="")


if __name__ == "__main__":
    run_command(main)
