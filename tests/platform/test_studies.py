"""The paper's table specs: rows resolve to valid configs, and inference-only rows share trainings."""

from __future__ import annotations

import pytest

from unips.config import load_config
from unips.platform.ablation import plan_study, row_metrics
from unips.platform.studies import TABLES, Row, row_overrides, select, training_key, trainings


@pytest.mark.parametrize("preset", ["smoke", "cityscapes_r50", "coco_r50"])
def test_every_row_is_a_valid_config_of_every_preset(preset: str) -> None:
    for table in TABLES.values():
        for row in table.rows:
            cfg = load_config(preset, row_overrides(row))
            assert cfg.eval.modes == [row.mode]


def test_rows_that_differ_only_at_inference_share_a_training() -> None:
    smoke = trainings(select(["1", "F", "H", "I", "J"]), lambda extra: load_config("smoke", extra))
    # Table 1: the heuristic baseline and the untrained potential argmax are one model.
    assert len(trainings(select(["1"]), lambda extra: load_config("smoke", extra))) == 4
    # Tables I and J only read trained models out differently; F's B is the full model (B is the default).
    assert len(smoke) == 6
    by_flags = {key.rsplit("-", 1)[0]: rows for key, rows in smoke.items()}
    assert {row.name for row in by_flags["msk1-aff1-e2e1-B-pred"]} == {
        "msk aff e2e", "msk aff e2e heu", "B", "full, no trim", "full, trim"}
    assert {row.name for row in by_flags["msk1-aff0-e2e0-B-pred"]} == {"msk heu", "msk amx", "heu, no trim", "heu, trim"}
    # On COCO the default is C: then C is the full model and B needs its own training.
    coco = trainings(select(["F"]), lambda extra: load_config("coco_r50", extra))
    assert [key.rsplit("-", 1)[0] for key in coco] == ["msk1-aff1-e2e1-B-pred", "msk1-aff1-e2e1-C-pred"]


def test_training_key_reads_the_resolved_config() -> None:
    smoke = training_key(load_config("smoke"))
    assert smoke.startswith("msk1-aff1-e2e1-B-pred-") and len(smoke.rsplit("-", 1)[1]) == 8
    gt = load_config("smoke", ["model.panoptic.train_with_gt_boxes=true", "model.detector.with_masks=false",
                               "eval.modes=[full]"])
    assert training_key(gt).startswith("msk0-aff1-e2e1-B-gt-")
    # What shapes the weights makes another training; how they are read out or where they run does not.
    assert training_key(load_config("smoke", ["model.panoptic.variant=B"])) == smoke
    assert training_key(load_config("smoke", ["eval.modes=[amx]", "eval.trim_stuff=false",
                                              "platform.cpus_per_worker=2"])) == smoke
    assert training_key(load_config("smoke", ["model.panoptic.match_iou_thresh=0.6"])) != smoke
    assert training_key(load_config("smoke", ["optim.base_lr=0.02"])) != smoke


def test_a_training_reads_out_every_mode_its_rows_need() -> None:
    plan = plan_study("smoke", ["optim.max_iter=5", "optim.steps=[4]", "optim.warmup_iters=1"], select(["1"]))
    baseline = next(setting for key, setting in plan.items() if key.startswith("msk1-aff0-e2e0-B-pred-"))
    assert baseline["overrides"][:2] == ["optim.max_iter=5", "optim.steps=[4]"]
    assert baseline["overrides"][-1] == "eval.modes=[heu,amx]"
    assert [row["name"] for row in baseline["rows"]] == ["msk heu", "msk amx"]
    load_config("smoke", baseline["overrides"])  # valid: no 'full' without the affinity head


def test_unknown_tables_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown table\(s\) Z; known: 1, F"):
        select(["1", "Z"])


def test_row_metrics_take_mode_free_metrics_from_the_first_mode() -> None:
    measured = {"heu/PQ": 40.0, "heu/PQ_st": 50.0, "heu/mIoU": 70.0, "heu/AP_box": 9.0, "heu/IoU_st_pan": 60.0,
                "amx/PQ": 30.0, "amx/PQ_st": 45.0, "amx/IoU_st_pan": 55.0}
    amx = Row("msk amx", (), "amx")
    assert row_metrics(amx, measured, {"PQ", "IoU", "AP_box", "IoU_st"}) == {
        "PQ": 30.0, "IoU": 70.0, "AP_box": 9.0, "IoU_st": 55.0}
    # A metric the model does not have (no mask AP without masks) is left out, not invented.
    assert row_metrics(amx, measured, {"AP_mask"}) == {}


def test_the_remedy_table_trains_each_leave_one_out_setting_apart() -> None:
    table = TABLES["R"]
    keys = trainings([table], lambda extra: load_config("smoke", extra))
    assert len(keys) == len(table.rows)  # every row its own training
    everything_off = load_config("smoke", row_overrides(table.rows[-1]))
    assert everything_off.optim.optimizer == "sgd" and everything_off.model.panoptic.logits == "raw"
    assert not everything_off.model.panoptic.affinity_centre and everything_off.optim.clip_grad_norm is None
    full = load_config("smoke", row_overrides(table.rows[1]))
    assert full.model.panoptic.logits == "log" and full.optim.optimizer == "adamw"


def test_every_stated_difference_names_rows_and_a_column_of_its_table() -> None:
    for table in TABLES.values():
        names = {row.name for row in table.rows}
        for delta in table.paper_deltas:
            assert {delta.row, delta.reference} <= names, (table.key, delta)
            assert delta.metric in table.columns, (table.key, delta)
    # Table R weighs every remedy against the full recipe.
    remedies = {d.row for d in TABLES["R"].paper_deltas if d.reference == "msk aff e2e (all remedies)"}
    assert remedies == {row.name for row in TABLES["R"].rows if row.name.startswith("- ")}
