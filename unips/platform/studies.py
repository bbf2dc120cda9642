"""The paper's studies as data: one table spec per paper table, rows = named settings.

A row is a training setting (config overrides) plus how its model is read out at
inference (mode, stuff trimming). Rows that share a training setting share one trained
model (:func:`trainings`), so the heuristic baseline and the untrained potential argmax of
Table 1 cost one training, and Tables I and J add none. The reference columns are the
paper's Cityscapes figures as its text states them (it gives no other
numbers): absolute values, or differences between two rows.

Torch-free: ``experiments/tables.py`` imports it with pandas and MLflow only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from unips.config import Config, InferenceMode

# MLflow tags of a study's runs: written by ablation.py, searched by tables.py.
TAG_KIND, TAG_STUDY, TAG_ROW, TAG_TABLES, TAG_SEED, TAG_TRAINING, TAG_MODE = (
    f"unips.{name}" for name in ("kind", "study", "row", "tables", "seed", "training", "mode"))

# The ablation's switches as config overrides (names from the paper's Table 1 caption).
MSK = "model.detector.with_masks"
AFF = "model.panoptic.use_affinity"
E2E = "model.panoptic.end_to_end"


@dataclass(frozen=True)
class Row:
    """One named setting: how the model is trained (``overrides``) and read out.

    ``mode``: ``full`` (argmax of P), ``amx`` (argmax of Psi) or ``heu`` (heuristic merge).
    ``trim_stuff``: stuff trimming at inference; None keeps the preset's ``eval.trim_stuff``.
    """

    name: str
    overrides: tuple[str, ...]
    mode: InferenceMode
    trim_stuff: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", InferenceMode(self.mode))  # a plain "full" (from JSON) is accepted


@dataclass(frozen=True)
class PaperDelta:
    """A difference ``row - reference`` in ``metric`` that the tables report with its 95% interval.

    ``value``: the paper's figure for it (Cityscapes unless ``dataset`` says), or None where the
    paper states the ordering in words only or not at all (then it is ours to watch).
    """

    row: str
    reference: str
    metric: str
    value: float | None
    dataset: str = "cityscapes"


@dataclass(frozen=True)
class TableSpec:
    """A paper table: rows, metric columns, and what the paper reports for them."""

    key: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[str, ...]
    # (row name, metric) -> the paper's value, for the named dataset's preset.
    paper_values: dict[tuple[str, str], float] = field(default_factory=dict)
    paper_dataset: str = "cityscapes"
    paper_deltas: tuple[PaperDelta, ...] = ()


def training_key(cfg: Config) -> str:
    """A name for what a config trains, e.g. ``msk1-aff0-e2e0-B-pred-3f9a0c21``: equal keys, one trained model.

    The readable part names the ablation switches; the digest covers everything else that
    shapes the weights (data, model, optimisation, seed), so rows that differ in a recipe
    switch train apart, while rows that differ only in how they are read out (``eval``) or
    where they run (``platform``) share one training. Read from the resolved config, so a row
    that spells out the preset's default (variant B on Cityscapes) shares the training of the
    row that does not.
    """
    panoptic = cfg.model.panoptic
    flags = f"msk{int(cfg.model.detector.with_masks)}-aff{int(panoptic.use_affinity)}-e2e{int(panoptic.end_to_end)}"
    trained = cfg.model_dump(mode="json", include={"seed", "data", "model", "optim"})
    digest = hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:8]
    return f"{flags}-{panoptic.variant}-{'gt' if panoptic.train_with_gt_boxes else 'pred'}-{digest}"


def _setting(msk: bool, aff: bool, e2e: bool, *extra: str) -> tuple[str, ...]:
    return (f"{MSK}={str(msk).lower()}", f"{AFF}={str(aff).lower()}", f"{E2E}={str(e2e).lower()}", *extra)


BASELINE = _setting(True, False, False)           # semantic + detection losses only
E2E_ONLY = _setting(True, False, True)            # + panoptic matching loss, no affinity
FULL = _setting(True, True, True)                 # the full model
FULL_NO_MASKS = _setting(False, True, True)       # boxes as the only localisation cue
VARIANT_C = _setting(True, True, True, "model.panoptic.variant=C")
GT_BOXES = _setting(False, True, True, "model.panoptic.train_with_gt_boxes=true")
VARIANT_B = _setting(True, True, True, "model.panoptic.variant=B")

PQ_ALL = ("PQ", "PQ_th", "PQ_st")

# The recipe switches of issue 11 (docs/design.md): each row of Table R turns one of them back to the
# recipe before it, the last row turns them all back.
WITHOUT_REMEDY = {
    "consistent detections": ("model.panoptic.train_detections=all",),
    "log P": ("model.panoptic.logits=raw",),
    "centred affinity": ("model.panoptic.affinity_centre=false",),
    "mass scaling": ("model.panoptic.affinity_scale=pixels",),
    "affinity gain": ("model.panoptic.affinity_gain=false",),
    "loss warm-up": ("optim.panoptic_loss_start=0", "optim.panoptic_loss_ramp=0"),
    "clipping": ("optim.clip_grad_norm=null",),
    "NMS 0.3": ("model.detector.nms_thresh=0.5",),
    "AdamW": ("optim.optimizer=sgd", "optim.base_lr=0.01"),
}

ALL_REMEDIES = "msk aff e2e (all remedies)"

TABLES: dict[str, TableSpec] = {
    "1": TableSpec(
        key="1",
        title="Ablation: mask head (msk), affinity head (aff), end-to-end training (e2e), "
              "heuristic merge (heu) or argmax of Psi (amx), otherwise argmax of P",
        rows=(
            Row("msk heu", BASELINE, "heu"),
            Row("msk amx", BASELINE, "amx"),
            Row("msk e2e amx", E2E_ONLY, "amx"),
            Row("aff e2e", FULL_NO_MASKS, "full"),
            Row("msk aff e2e", FULL, "full"),
            # The full model read out by the heuristic merge: separates what end-to-end training did
            # to the network from what the inference mode does.
            Row("msk aff e2e heu", FULL, "heu"),
        ),
        columns=(*PQ_ALL, "IoU", "AP_box", "AP_mask"),
        paper_values={("msk aff e2e", "PQ"): 61.4},
        # The paper's claims in words: the unified model beats the heuristic merge, the mask-free
        # model competes with it, end-to-end training does not cost the semantic head.
        paper_deltas=(
            PaperDelta("msk aff e2e", "msk heu", "PQ", None),
            PaperDelta("msk aff e2e", "msk aff e2e heu", "PQ", None),
            PaperDelta("aff e2e", "msk heu", "PQ", None),
            *(PaperDelta(row, "msk heu", "IoU", None) for row in ("msk e2e amx", "aff e2e", "msk aff e2e")),
        ),
    ),
    "F": TableSpec(
        key="F",
        title="Potential variant B against C (with masks)",
        rows=(Row("B", VARIANT_B, "full"), Row("C", VARIANT_C, "full")),
        columns=(*PQ_ALL, "IoU", "AP_box", "AP_mask"),
        paper_deltas=(PaperDelta("B", "C", "PQ", 1.1), PaperDelta("C", "B", "PQ", 0.7, "coco")),
    ),
    "H": TableSpec(
        key="H",
        title="Training with ground-truth boxes against predicted boxes (mask-free model)",
        rows=(Row("GT boxes", GT_BOXES, "full"), Row("predicted boxes", FULL_NO_MASKS, "full")),
        columns=(*PQ_ALL, "SQ", "RQ", "IoU", "AP_box"),
        paper_deltas=(PaperDelta("predicted boxes", "GT boxes", "PQ", 0.4),
                      PaperDelta("predicted boxes", "GT boxes", "AP_box", 1.3)),
    ),
    "I": TableSpec(
        key="I",
        title="Trimming small stuff regions at inference (stuff IoU of the panoptic output)",
        rows=(
            Row("full, no trim", FULL, "full", trim_stuff=False),
            Row("full, trim", FULL, "full", trim_stuff=True),
            Row("heu, no trim", BASELINE, "heu", trim_stuff=False),
            Row("heu, trim", BASELINE, "heu", trim_stuff=True),
        ),
        columns=("PQ_st", "SQ_st", "RQ_st", "IoU_st"),
        paper_deltas=tuple(
            PaperDelta(f"{model}, trim", f"{model}, no trim", metric, value)
            for model in ("full", "heu")
            for metric, value in (("PQ_st", 2.0), ("RQ_st", 2.5), ("IoU_st", -0.15))
        ),
    ),
    "R": TableSpec(
        key="R",
        title="The recipe (not in the paper): the full model without one remedy at a time, and without all",
        rows=(
            Row("msk heu", BASELINE, "heu"),
            Row(ALL_REMEDIES, FULL, "full"),
            *(Row(f"- {name}", (*FULL, *off), "full") for name, off in WITHOUT_REMEDY.items()),
            # The other cure for "lr 0.01 at batch 4": SGD with the linear scaling rule (0.01 x 4 / 32).
            Row("- AdamW, SGD at the scaled lr", (*FULL, *WITHOUT_REMEDY["AdamW"], "optim.lr_reference_batch=32"),
                "full"),
            Row("- all (the recipe before)", (*FULL, *(o for off in WITHOUT_REMEDY.values() for o in off)), "full"),
        ),
        columns=(*PQ_ALL, "IoU", "AP_box"),
        # What each remedy is worth: the full model without it, against the full recipe, per seed.
        paper_deltas=(
            PaperDelta(ALL_REMEDIES, "msk heu", "PQ", None),
            *(PaperDelta(row, ALL_REMEDIES, metric, None)
              for row in (*(f"- {name}" for name in WITHOUT_REMEDY), "- AdamW, SGD at the scaled lr",
                          "- all (the recipe before)")
              for metric in PQ_ALL),
        ),
    ),
    "J": TableSpec(
        key="J",
        title="Full model: PQ, SQ and RQ for things and stuff",
        rows=(Row("msk aff e2e", FULL, "full"),),
        columns=("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"),
        paper_values={("msk aff e2e", "PQ"): 61.4},
    ),
}

# Table columns -> evaluator metrics. Mode-free ones (semantic head, detector) are measured once
# per model; "IoU_st" in Table I is the panoptic output's stuff IoU, which trimming changes.
MODE_FREE = {"IoU": "mIoU", "AP_box": "AP_box", "AP_mask": "AP_mask"}
PANOPTIC_IOU = {"IoU_st": "IoU_st_pan"}


def select(keys: list[str] | None) -> list[TableSpec]:
    """The named tables (default: all), in the paper's order."""
    keys = list(TABLES) if not keys else keys
    unknown = [key for key in keys if key not in TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}")
    return [TABLES[key] for key in keys]


def row_overrides(row: Row) -> list[str]:
    """The config overrides that make the preset into ``row``'s setting, read out in its mode only."""
    trim = [] if row.trim_stuff is None else [f"eval.trim_stuff={str(row.trim_stuff).lower()}"]
    return [*row.overrides, f"eval.modes=[{row.mode}]", *trim]


def trainings(tables: list[TableSpec], resolve: Callable[[list[str]], Config]) -> dict[str, list[Row]]:
    """Distinct training settings of ``tables``: key -> the rows it serves, in first-use order.

    ``resolve`` turns overrides into the full config (the preset with them applied).
    """
    found: dict[str, list[Row]] = {}
    for table in tables:
        for row in table.rows:
            rows = found.setdefault(training_key(resolve(row_overrides(row))), [])
            if row not in rows:
                rows.append(row)
    return found
