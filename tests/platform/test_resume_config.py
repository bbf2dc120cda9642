"""``--resume`` trains with the run's own config: the preset file is not read again, and an override
that contradicts the run is refused with its keys named (no Ray needed to decide that)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unips.config import load_config
from unips.platform.launch import absolute_paths, new_run, recorded_config, resumed_run


def test_a_resumed_run_keeps_its_schedule_and_refuses_a_contradicting_override(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    short = ["optim.max_iter=20", "optim.steps=[10,15]", "optim.warmup_iters=5"]
    started = absolute_paths(load_config("smoke", short), tmp_path)
    _, run_id = new_run(started, uri, tmp_path, "short", None)

    # The smoke preset says 300 steps; the run began with 20 and resumes with 20, schedule included.
    cfg = recorded_config("smoke", [], tracking_uri=uri, workdir=tmp_path)
    assert (cfg.optim.max_iter, cfg.optim.steps) == (20, (10, 15))
    assert resumed_run(uri, cfg, None) == ("short", run_id)

    longer = recorded_config("smoke", ["optim.max_iter=300"], tracking_uri=uri, workdir=tmp_path)
    with pytest.raises(ValueError, match=r"run 'short' would change its configuration: optim\.max_iter 20 -> 300;"):
        resumed_run(uri, longer, None)
    # Where and how it runs may change.
    elsewhere = recorded_config("smoke", ["platform.cpus_per_worker=2"], "short", tracking_uri=uri, workdir=tmp_path)
    assert resumed_run(uri, elsewhere, "short") == ("short", run_id)


def test_resume_names_a_run_or_store_that_is_not_there(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(FileNotFoundError, match=r"no MLflow store .*mlflow\.db to resume a run from"):
        recorded_config("smoke", [], "nope", tracking_uri=uri, workdir=tmp_path)
    assert not (tmp_path / "mlflow.db").exists()  # looking made no store
    started = absolute_paths(load_config("smoke", ["optim.max_iter=20", "optim.steps=[10,15]",
                                                   "optim.warmup_iters=5"]), tmp_path)
    new_run(started, uri, tmp_path, "short", None)
    with pytest.raises(FileNotFoundError, match="no training run named 'nope'"):
        recorded_config("smoke", [], "nope", tracking_uri=uri, workdir=tmp_path)


def test_a_setting_logged_in_an_older_form_reads_as_it_did() -> None:
    from unips.platform.launch import config_changes

    cfg = load_config("smoke", ["optim.max_iter=20", "optim.steps=[10,15]", "optim.warmup_iters=5"])
    # optim.amp was a true/false switch: a run logged with False trained in float32, as "off" does.
    assert config_changes({"optim.amp": "False", "optim.max_iter": "20"}, cfg) == {}
    assert config_changes({"optim.amp": "True", "optim.max_iter": "30"}, cfg) == {
        "optim.amp": ("True", "off"), "optim.max_iter": ("30", "20")}
    assert config_changes({"optim.steps": "not a schedule"}, cfg) == {"optim.steps": ("not a schedule", "[10, 15]")}
