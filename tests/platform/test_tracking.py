"""MLflow tracking against a real local store: params, and each step's metrics once across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from unips.platform.tracking import MetricLogger, create_run, resolve_tracking_uri, set_status


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, None, tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri(None, "http://config:5000", tmp_path) == "http://config:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(None, "http://config:5000", tmp_path) == "http://env:5000"
    assert resolve_tracking_uri("http://cli:5000", "http://config:5000", tmp_path) == "http://cli:5000"


def test_a_restarted_logger_does_not_log_a_step_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = create_run(uri, "unit", "run", {"optim.base_lr": 0.01, "a.b": [1, 2]}, artifact_root=tmp_path / "art")
    first = MetricLogger(uri, run_id)
    for step in range(1, 6):
        assert first.log({"loss/total": 10 - step, "lr": 0.1}, step)
    first.log({"full/PQ": 40.0}, 5)
    # A restart from the step-3 checkpoint recomputes steps 4 and 5, then goes on.
    second = MetricLogger(uri, run_id)
    logged = [second.log({"loss/total": 100 + step, "lr": 0.2}, step) for step in range(4, 9)]
    assert logged == [False, False, True, True, True]
    assert not second.log({"full/PQ": 41.0}, 5) and second.log({"full/PQ": 45.0}, 8)
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "loss/total")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 9), (2, 8), (3, 7), (4, 6), (5, 5), (6, 106), (7, 107), (8, 108)]
    assert sorted(m.step for m in client.get_metric_history(run_id, "full/PQ")) == [5, 8]
    run = client.get_run(run_id)
    assert run.data.params == {"optim.base_lr": "0.01", "a.b": "[1, 2]"}
    assert run.info.artifact_uri.startswith((tmp_path / "art").as_uri())
    set_status(uri, run_id, "FINISHED")
    assert client.get_run(run_id).info.status == "FINISHED"


def test_experiments_are_marked_as_model_development_for_the_mlflow_ui(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    create_run(uri, "new", "run", {})
    assert client.get_experiment_by_name("new").tags["mlflow.experimentKind"] == "custom_model_development"
    # An experiment made before experiments were marked gets the tag with its next run.
    client.create_experiment("older")
    assert "mlflow.experimentKind" not in client.get_experiment_by_name("older").tags
    create_run(uri, "older", "run", {})
    assert client.get_experiment_by_name("older").tags["mlflow.experimentKind"] == "custom_model_development"
