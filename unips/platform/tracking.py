"""MLflow tracking: one run per training, created by the driver; metrics from rank 0, each step once.

The default store is MLflow's own default, made absolute so Ray workers (which run
in Ray's session folder) write to the same place: ``sqlite:///<workdir>/mlflow.db``
with artifacts in ``<workdir>/mlruns``. ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``
point at a tracking server instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlruns"
# MLflow 3's record of what an experiment is for. (Its 3.17 UI does not read it to pick a view: that is
# the "GenAI | Model training" switch at its top left, remembered by the browser, or ?workflowType=machine_learning.)
EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # what the UI shows as a run's description


def resolve_tracking_uri(explicit: str | None, configured: str | None, workdir: Path) -> str:
    """``explicit`` (command line), else ``$MLFLOW_TRACKING_URI``, else the config, else a local store."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or configured
    return uri or f"sqlite:///{(workdir / DEFAULT_DB).resolve()}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def require_store(uri: str, purpose: str, source: str) -> None:
    """Refuse a ``sqlite:///`` store whose file is missing, before MLflow would create it for a mere read:
    ``no MLflow store <file><purpose>: run this where <source> ran, or pass --tracking-uri``."""
    if (store := sqlite_file(uri)) is not None and not store.is_file():
        raise FileNotFoundError(f"no MLflow store {store}{purpose}: run this where {source} ran, or pass --tracking-uri")


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def create_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    artifact_root: Path | None = None,
    description: str | None = None,
) -> str:
    """Create an experiment (if needed) and a run with ``params`` (and ``description``); return the run id."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = None
        if artifact_root is not None and is_local_store(tracking_uri):
            location = (artifact_root / experiment_name).resolve().as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT})
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before we marked experiments
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    tags = {**(tags or {}), **({DESCRIPTION_TAG: description} if description else {})}
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    items = [Param(key, str(value)) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def log_dataset(tracking_uri: str, run_id: str, name: str, annotations: Path, context: str) -> None:
    """A split, named by its annotation file, as a dataset input of the run (the run list's Dataset column):
    ``context`` says its use (training, evaluation); the digest is the file's SHA-256, so two runs on the same
    annotations show the same dataset."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    digest = hashlib.sha256(annotations.read_bytes()).hexdigest()[:12]
    dataset = Dataset(name, digest, source_type="local", source=json.dumps({"uri": str(annotations)}))
    MlflowClient(tracking_uri).log_inputs(run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])


RunStatus = Literal["RUNNING", "FINISHED", "FAILED"]


def set_status(tracking_uri: str, run_id: str, status: RunStatus) -> None:
    """Mark a run RUNNING (on resume), FINISHED or FAILED."""
    client = MlflowClient(tracking_uri)
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)


class MetricLogger:
    """Rank 0's metric writer into an existing run, logging every step at most once.

    A run restarted from a checkpoint recomputes the steps between that checkpoint and
    the failure; those steps are already in MLflow and are not logged again. Each group
    of metrics logged together (the training losses, the evaluation metrics) is tracked
    by its first key: its history in the run tells the last step already logged.
    """

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._last_step: dict[str, int] = {}
        self._system: Any = None  # MLflow's SystemMetricsMonitor, while it runs

    def watch_system(self, interval_s: float) -> None:
        """Sample this machine's CPU, memory, disk, network (and GPU) use every ``interval_s`` seconds into
        the run's ``system/...`` metrics (MLflow's system metrics; a restart continues their steps)."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        if interval_s > 0 and self._system is None:
            self._system = SystemMetricsMonitor(self.run_id, sampling_interval=interval_s, resume_logging=True,
                                                tracking_uri=self.tracking_uri)
            self._system.start()

    def close(self) -> None:
        """Stop the system metrics (their last samples flushed)."""
        if self._system is not None:
            self._system.finish()
            self._system = None

    def log(self, metrics: Mapping[str, float], step: int) -> bool:
        """Log ``metrics`` at ``step`` unless this group was already logged there; True if logged."""
        if not metrics:
            return False
        sentinel = sorted(metrics)[0]
        if sentinel not in self._last_step:
            history = self.client.get_metric_history(self.run_id, sentinel)
            self._last_step[sentinel] = max((m.step for m in history), default=-1)
        if step <= self._last_step[sentinel]:
            return False
        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(rows), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=rows[start : start + 1000])
        self._last_step[sentinel] = step
        return True

    def log_pictures(self, pictures: Mapping[str, np.ndarray], step: int) -> None:
        """``key -> (H, W, 3)`` uint8 pictures at ``step``: the UI's image view, one slider over the steps."""
        for key, picture in pictures.items():
            self.client.log_image(self.run_id, picture, key=key, step=step)

    def log_table(self, frame: pd.DataFrame, artifact_file: str) -> None:
        """A table the UI shows as one (a JSON artifact), e.g. per-class metrics."""
        self.client.log_table(self.run_id, frame, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a folder's contents, under ``artifact_path`` in the run."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


def find_runs(tracking_uri: str, tags: Mapping[str, str], experiment_ids: list[str] | None = None) -> list[Any]:
    """The runs (of ``experiment_ids``, default all experiments) that carry all of ``tags``, newest first.

    MLflow's tags are the record of what a run is (a training, a study, a row): resuming finds
    runs here, not in files of our own.
    """
    client = MlflowClient(tracking_uri)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs(experiment_ids, query, order_by=["attributes.start_time DESC"])


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API on ``uri`` for a while: ``Model.log``, and ``runs:/`` and ``models:/`` URIs, read the
    process-wide tracking URI."""
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again
