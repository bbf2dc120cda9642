"""Launch one training on Ray Train: the driver side of ``experiments/train.py``.

The driver makes every path absolute (Ray workers run in Ray's session folder),
builds the synthetic data once, creates the MLflow run (parameters = the flattened
config, artifact = the resolved YAML), then hands ``train_loop_per_worker`` to a
``TorchTrainer``. A run is identified by its name, which is the name of its Ray Train
folder under the storage path and the ``unips.run`` tag of its MLflow run: resuming finds
the MLflow run by that tag in the same tracking store, and Ray Train its latest checkpoint
in that folder.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from unips.config import Config, config_to_yaml, flatten, load_config, with_override
from unips.datasets.build import check_data, ensure_synthetic, split_files
from unips.platform import storage
from unips.platform.checkpoint import STATE_FILE
from unips.platform.tracking import (DEFAULT_ARTIFACTS, create_run, find_runs, log_dataset, require_store,
                                    resolve_tracking_uri, set_status)
from unips.platform.train_loop import train_loop_per_worker

TAG_RUN = "unips.run"  # the run's name: its Ray Train folder
TAG_PRESET = "unips.preset"


@dataclass
class TrainingOutcome:
    """What a finished training left behind."""

    run_name: str
    run_dir: str  # Ray Train's folder of the run (its checkpoints): a local path or a URI
    tracking_uri: str
    mlflow_run_id: str
    metrics: dict[str, Any]  # rank 0's last report: final losses, evaluation metrics per mode
    checkpoint: str | None  # the final state.pt: a local path or a URI


def absolute_paths(cfg: Config, workdir: Path) -> Config:
    """A copy of ``cfg`` whose data root and local storage path are absolute (relative to ``workdir``); a
    storage URI stays as it is."""
    cfg = cfg.model_copy(deep=True)
    cfg.data.root = (workdir / cfg.data.root).resolve()
    cfg.platform.storage_path = storage.resolve_storage(cfg.platform.storage_path, workdir)
    if cfg.model.backbone.pretrained is not None:
        cfg.model.backbone.pretrained = (workdir / cfg.model.backbone.pretrained).resolve()
    return cfg


# What a resumed run may change: where and how it runs, not what it trains.
CHANGEABLE_ON_RESUME = ("platform.", "data.root", "data.loader_workers", "data.synthetic.generate")


def _run_to_resume(tracking_uri: str, preset: str, run_name: str | None) -> Any:
    """The MLflow run of the training named ``run_name``, else the latest training of ``preset``."""
    runs = find_runs(tracking_uri, {TAG_RUN: run_name} if run_name else {TAG_PRESET: preset})
    if not runs:
        what = f"named {run_name!r}" if run_name else f"of preset {preset!r}"
        raise FileNotFoundError(f"no training run {what} in the MLflow store {tracking_uri} to resume")
    return runs[0]


def config_changes(recorded: dict[str, str], cfg: Config) -> dict[str, tuple[str, str]]:
    """``{key: (the run's value, cfg's value)}`` for each parameter of a run that ``cfg`` would change,
    apart from :data:`CHANGEABLE_ON_RESUME`."""
    return {key: (recorded[key], str(value)) for key, value in flatten(cfg).items()
            if not key.startswith(CHANGEABLE_ON_RESUME) and key in recorded and recorded[key] != str(value)
            and not _reads_as(cfg, key, recorded[key], value)}


def _reads_as(cfg: Config, key: str, text: str, value: Any) -> bool:
    """Whether the logged ``text`` of ``key``, read by today's schema, is ``value``: a run logged before a
    setting changed form (``optim.amp`` was true/false, now off/bf16/fp16) keeps its meaning."""
    try:
        return flatten(with_override(cfg, f"{key}={text}"))[key] == value
    except ValueError:  # not YAML, or not a value today's schema accepts
        return False


def resumed_run(tracking_uri: str, cfg: Config, run_name: str | None) -> tuple[str, str]:
    """``(run name, MLflow run id)`` of the run to resume, refused when ``cfg`` is not the run's own config
    (a resumed run trains as it began: its schedule and parameters in MLflow stay true)."""
    run = _run_to_resume(tracking_uri, cfg.name, run_name)
    name = run.data.tags[TAG_RUN]
    if changes := config_changes(run.data.params, cfg):
        listed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in sorted(changes.items()))
        raise ValueError(f"--resume of run {name!r} would change its configuration: {listed}; resume it "
                         f"without those overrides (it continues with its own config), or start a new run")
    set_status(tracking_uri, run.info.run_id, "RUNNING")
    return name, run.info.run_id


def recorded_config(preset: str, overrides: list[str], run_name: str | None = None,
                    tracking_uri: str | None = None, workdir: str | Path | None = None) -> Config:
    """The config the run to resume began with (its ``config.yaml`` in MLflow), ``overrides`` applied on top:
    what ``experiments/train.py --resume`` trains with, whatever the preset file says today."""
    from mlflow.tracking import MlflowClient

    # The preset only locates the run (its name, the store): the other overrides apply to the run's config,
    # which they may fit where they do not fit today's preset (e.g. optim.max_iter of a shortened run).
    cfg = load_config(preset, [text for text in overrides if text.startswith("platform.")])
    uri = resolve_tracking_uri(tracking_uri, cfg.platform.tracking_uri, Path(workdir or Path.cwd()).resolve())
    require_store(uri, " to resume a run from", "the training")
    run = _run_to_resume(uri, cfg.name, run_name)
    with tempfile.TemporaryDirectory() as folder:
        path = MlflowClient(uri).download_artifacts(run.info.run_id, "config.yaml", folder)
        return load_config(path, overrides)


def new_run(cfg: Config, tracking_uri: str, workdir: Path, run_name: str | None, tags: dict[str, str] | None,
            title: str | None = None, description: str | None = None) -> tuple[str, str]:
    """Create the MLflow run (parameters = the flattened config with dotted keys, artifact = its YAML, the
    splits as dataset inputs; named ``title``, default the run name) and the run's folder."""
    run_name = run_name or f"{cfg.name}_{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = storage.join(cfg.platform.storage_path, run_name)  # type: ignore[arg-type]
    if storage.exists(run_dir):
        raise FileExistsError(f"{run_dir} exists: pass --resume to continue it, or another name")
    run_id = create_run(tracking_uri, cfg.platform.experiment_name, title or run_name, flatten(cfg),
                        {TAG_RUN: run_name, TAG_PRESET: cfg.name, **(tags or {})},
                        artifact_root=workdir / DEFAULT_ARTIFACTS, description=description or describe(cfg))
    storage.make_dirs(run_dir)
    _log_config(tracking_uri, run_id, cfg)
    for split, context in ((cfg.data.train_split, "training"), (cfg.data.val_split, "evaluation")):
        if (annotations := split_files(cfg.data, split).json_path).is_file():  # none: a run made without data
            log_dataset(tracking_uri, run_id, f"{cfg.data.dataset}/{split}", annotations, context)
    return run_name, run_id


def describe(cfg: Config) -> str:
    """A training's description in the MLflow UI, when nobody gave one."""
    return (f"Training of preset {cfg.name} on {cfg.data.dataset} ({cfg.data.train_split}, evaluated on "
            f"{cfg.data.val_split}): {cfg.optim.max_iter} steps of {cfg.optim.images_per_batch} images on "
            f"{cfg.platform.num_workers} worker(s), seed {cfg.seed}. Every config key is a parameter; the whole "
            "config is the artifact config.yaml.")


def launch_training(
    cfg: Config,
    *,
    run_name: str | None = None,
    resume: bool = False,
    tracking_uri: str | None = None,
    workdir: str | Path | None = None,
    tags: dict[str, str] | None = None,
    title: str | None = None,
    description: str | None = None,
    callbacks: list[Any] | None = None,
    train_loop: Callable[[dict[str, Any]], None] = train_loop_per_worker,
) -> TrainingOutcome:
    """Train ``cfg`` on the Ray instance this process is connected to (or a local one).

    Args:
        run_name: the run's name under ``platform.storage_path`` (default: ``<cfg.name>_<time>``).
        resume: continue the named run (default: the latest run of this preset in the tracking store) from
            its last checkpoint.
        tracking_uri: MLflow tracking URI (default: ``$MLFLOW_TRACKING_URI``, ``platform.tracking_uri``,
            or ``sqlite:///<workdir>/mlflow.db``).
        workdir: what relative paths are relative to (default: the current folder).
        tags: extra MLflow tags of the run.
        title, description: the MLflow run's name (default: ``run_name``) and description, for people.
        callbacks: Ray Train callbacks, e.g. Ray Tune's ``TuneReportCallback`` when a Tune trial trains.
        train_loop: the per-worker function (tests wrap the standard one to inject faults).
    """
    workdir = Path(workdir or Path.cwd()).resolve()
    cfg = _prepare(cfg, workdir)
    uri = resolve_tracking_uri(tracking_uri, cfg.platform.tracking_uri, workdir)
    if resume:
        run_name, run_id = resumed_run(uri, cfg, run_name)
    else:
        run_name, run_id = new_run(cfg, uri, workdir, run_name, tags, title, description)

    # Ray Train routes print() to its logger; that ignores contextlib.redirect_stdout (pycocotools'
    # tables came through) and doubles lines once MLflow wraps stdout. Plain print is what we want.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    loop_config = {"config": cfg.model_dump(mode="json"), "tracking": {"uri": uri, "run_id": run_id}}
    try:
        result = _trainer(cfg, run_name, train_loop, loop_config, callbacks).fit()
    except BaseException:
        set_status(uri, run_id, "FAILED")
        raise
    set_status(uri, run_id, "FINISHED")
    run_dir = storage.join(cfg.platform.storage_path, run_name)  # type: ignore[arg-type]
    # Ray gives the checkpoint's path inside its filesystem (no scheme): named again from the run's location.
    checkpoint = (storage.join(run_dir, storage.name_of(result.checkpoint.path), STATE_FILE)
                  if result.checkpoint is not None else None)
    return TrainingOutcome(run_name, run_dir, uri, run_id, dict(result.metrics or {}), checkpoint)


def _prepare(cfg: Config, workdir: Path) -> Config:
    """``cfg`` with absolute paths, checked against the worker count, its synthetic data and storage made."""
    cfg = absolute_paths(cfg, workdir)
    if cfg.optim.images_per_batch % cfg.platform.num_workers:
        raise ValueError(f"optim.images_per_batch={cfg.optim.images_per_batch} must be a multiple of "
                         f"platform.num_workers={cfg.platform.num_workers}")
    if cfg.data.dataset == "synthetic":
        ensure_synthetic(cfg.data)
    else:
        check_data(cfg.data)
    storage.make_dirs(cfg.platform.storage_path)  # type: ignore[arg-type]
    return cfg


def _trainer(cfg: Config, run_name: str, train_loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any],
             callbacks: list[Any] | None) -> TorchTrainer:
    """Ray Train's trainer: ``platform.num_workers`` DDP workers, restarts, the last two checkpoints kept."""
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.platform.num_workers, use_gpu=cfg.platform.use_gpu,
                                     resources_per_worker={"CPU": cfg.platform.cpus_per_worker}),
        run_config=RunConfig(name=run_name, storage_path=cfg.platform.storage_path,
                             failure_config=FailureConfig(max_failures=cfg.platform.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=callbacks,
                             logging_config=LoggingConfig(log_level="WARNING")),
    )


def _log_config(uri: str, run_id: str, cfg: Config) -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(config_to_yaml(cfg))
        MlflowClient(uri).log_artifact(run_id, str(path))
