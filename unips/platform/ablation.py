"""Run the paper's studies as one Ray Tune experiment, recorded in MLflow.

One Tune trial per (training setting, seed): it trains through :func:`launch_training`
(Ray Train, with ``TuneReportCallback`` passing Train's reports on to Tune), then reads
out every row that setting serves (inference mode, stuff trimming) from the one trained
model. The number of trainings is the number of distinct training settings times the
seeds, not the number of rows.

MLflow layout, all in the preset's experiment:

* a parent run per study (``unips.kind=study``): parameters preset, tables, seeds, overrides;
* a training run per trial (``unips.kind=training``), a child of the study run, written by
  the training itself (losses, evaluations, checkpoint);
* a row run per (row, seed) (``unips.kind=row``), a child of the study run, tagged with
  the row and the tables it belongs to, holding that row's metrics. ``tables.py`` reads these.

Resuming (``Tuner.restore``) re-runs no finished trial; an unfinished one continues its
Ray Train run from the last checkpoint, since run names are fixed by (study, setting, seed).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from unips.config import Config, load_config
from unips.platform.launch import RUN_INFO, absolute_paths, launch_training
from unips.platform.studies import (MODE_FREE, PANOPTIC_IOU, TAG_KIND, TAG_ROW, TAG_SEED, TAG_STUDY, TAG_TABLES,
                                   TAG_TRAINING, Row, TableSpec, select, trainings)
from unips.platform.tracking import DEFAULT_ARTIFACTS, create_run, resolve_tracking_uri, set_status

STUDY_INFO = "unips_study.json"
PARENT = "mlflow.parentRunId"
TRIAL_MEMORY = 1 << 30  # bytes reserved by a trial's driver process (a model and a few images)


@dataclass
class StudyOutcome:
    name: str
    tracking_uri: str
    parent_run_id: str
    trainings: int  # trials run, over all seeds
    rows: int  # row runs, over all seeds


def plan_study(preset: str, overrides: list[str], tables: list[TableSpec]) -> dict[str, dict[str, Any]]:
    """Training key -> ``{"overrides": [...], "rows": [Row as dict, ...]}``, JSON-able for Tune.

    The training reads out every mode its rows need; all else is the first row's setting.
    """
    by_name: dict[str, Row] = {}
    for table in tables:
        for row in table.rows:
            if by_name.setdefault(row.name, row) != row:
                raise ValueError(f"row {row.name!r} of table {table.key} differs from another row of that name")
    plan = {}
    for key, rows in trainings(tables, lambda extra: load_config(preset, [*overrides, *extra])).items():
        modes = list(dict.fromkeys(row.mode for row in rows))
        plan[key] = {"overrides": [*overrides, *rows[0].overrides, f"eval.modes=[{','.join(modes)}]"],
                     "rows": [asdict(row) for row in rows]}
    return plan


def tables_of(row: Row, tables: list[TableSpec]) -> list[str]:
    return [table.key for table in tables if row in table.rows]


def row_metrics(row: Row, measured: dict[str, float], columns: set[str]) -> dict[str, float]:
    """The metrics of ``row`` from a model's measurements (``"<mode>/<metric>"``), by table column name.

    PQ/SQ/RQ come from the row's mode, IoU/AP from the model's first mode (they do not
    depend on the mode), the panoptic stuff IoU from the row's mode.
    """
    first_mode = next(key.split("/", 1)[0] for key in measured if key.endswith("/PQ"))
    out = {}
    for column in columns:
        if column in MODE_FREE:
            key = f"{first_mode}/{MODE_FREE[column]}"
        else:
            key = f"{row.mode}/{PANOPTIC_IOU.get(column, column)}"
        if key in measured:
            out[column] = float(measured[key])
    return out


def _find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: train one setting for one seed, then log its rows."""
    study, seed, key = config["study"], int(config["seed"]), config["training"]
    setting = config["plan"][key]
    workdir = Path(config["workdir"])
    cfg = absolute_paths(load_config(config["preset"], [*setting["overrides"], f"seed={seed}"]), workdir)
    run_name = f"{study}-{key}-s{seed}"
    resume = (Path(cfg.platform.storage_path) / run_name / RUN_INFO).exists()  # type: ignore[arg-type]
    tags = {PARENT: config["parent_run_id"], TAG_KIND: "training", TAG_STUDY: study, TAG_TRAINING: key,
            TAG_SEED: str(seed)}
    outcome = launch_training(cfg, run_name=run_name, resume=resume, tracking_uri=config["tracking_uri"],
                              workdir=workdir, tags=tags, callbacks=[TuneReportCallback()])

    rows = [Row(**{**row, "overrides": tuple(row["overrides"])}) for row in setting["rows"]]
    tables = select(config["tables"])
    measured = {cfg.eval.trim_stuff: {k: v for k, v in outcome.metrics.items() if "/" in k}}
    client = MlflowClient(config["tracking_uri"])
    experiment_id = client.get_run(config["parent_run_id"]).info.experiment_id
    for row in rows:
        trim = cfg.eval.trim_stuff if row.trim_stuff is None else row.trim_stuff
        if trim not in measured:  # another read-out of the same weights, not another training
            measured[trim] = _evaluate_checkpoint(outcome.checkpoint, trim)  # type: ignore[arg-type]
        columns = {column for table in tables if row in table.rows for column in table.columns}
        metrics = row_metrics(row, measured[trim], columns)
        row_tags = {TAG_STUDY: study, TAG_KIND: "row", TAG_ROW: row.name, TAG_SEED: str(seed)}
        run_id = _find_run(client, experiment_id, row_tags)  # a re-run trial reuses its row runs
        if run_id is None:
            tags = {**row_tags, PARENT: config["parent_run_id"], TAG_TABLES: ",".join(tables_of(row, tables)),
                    TAG_TRAINING: key}
            run_id = client.create_run(experiment_id, run_name=f"{row.name} s{seed}", tags=tags).info.run_id
            for name, value in {"mode": row.mode, "trim_stuff": trim, "overrides": " ".join(row.overrides),
                                "training_run_id": outcome.mlflow_run_id, "seed": seed}.items():
                client.log_param(run_id, name, value)
        for name, value in metrics.items():
            client.log_metric(run_id, name, value)
        client.set_terminated(run_id, "FINISHED")
    tune.report({"rows_logged": len(rows), "trained_step": outcome.metrics.get("step", 0)})


def _evaluate_checkpoint(checkpoint: Path, trim_stuff: bool) -> dict[str, float]:
    """The trained model read out again with stuff trimming switched."""
    # Imported here: the driver plans studies without building models.
    from unips.datasets.build import build_dataset
    from unips.platform.checkpoint import model_from_checkpoint
    from unips.platform.evaluate import evaluate_as_configured

    model, cfg, categories, _ = model_from_checkpoint(checkpoint)
    cfg.eval.trim_stuff = trim_stuff
    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    return evaluate_as_configured(model, cfg, dataset, categories).metrics


def concurrency(cfg: Config) -> int:
    """How many trainings the cluster can hold at once (its CPUs, or its GPUs when training on GPU)."""
    resources = ray.cluster_resources()
    need_cpu = cfg.platform.num_workers * cfg.platform.cpus_per_worker
    fits = resources.get("CPU", 0) / need_cpu
    if cfg.platform.use_gpu:
        fits = min(fits, resources.get("GPU", 0) / cfg.platform.num_workers)
    return max(1, math.floor(fits))


def latest_study(storage: Path, preset: str) -> str:
    """The most recently started study of ``preset`` under ``storage``."""
    studies = sorted((info.parent for info in storage.glob(f"*/{STUDY_INFO}")
                      if json.loads(info.read_text())["preset"] == preset),
                     key=lambda p: (p / STUDY_INFO).stat().st_mtime)
    if not studies:
        raise FileNotFoundError(f"no study of preset {preset!r} (a folder with a {STUDY_INFO}) under {storage} "
                                "to resume")
    return studies[-1].name


def run_study(
    preset: str,
    table_keys: list[str] | None = None,
    *,
    seeds: int = 1,
    overrides: list[str] | None = None,
    name: str | None = None,
    resume: bool = False,
    tracking_uri: str | None = None,
    workdir: str | Path | None = None,
) -> StudyOutcome:
    """Run (or with ``resume``, continue) the study of ``table_keys`` on the connected Ray instance."""
    workdir = Path(workdir or Path.cwd()).resolve()
    overrides = list(overrides or [])
    base = absolute_paths(load_config(preset, overrides), workdir)
    storage = Path(base.platform.storage_path)  # type: ignore[arg-type]
    storage.mkdir(parents=True, exist_ok=True)

    if resume:
        name = name or latest_study(storage, preset)
        info = json.loads((storage / name / STUDY_INFO).read_text())
        tables, uri, parent = select(info["tables"]), tracking_uri or info["tracking_uri"], info["parent_run_id"]
        plan = plan_study(info["preset"], info["overrides"], tables)
        set_status(uri, parent, "RUNNING")
        tuner = tune.Tuner.restore(str(storage / name), trainable=_trainable(), resume_unfinished=True,
                                   resume_errored=True)
        n_seeds = info["seeds"]
    else:
        name = name or f"{base.name}-study-{datetime.now():%Y%m%d-%H%M%S}"
        if (storage / name).exists():
            raise FileExistsError(f"{storage / name} exists: pass --resume to continue it, or another --name")
        tables = select(table_keys)
        plan = plan_study(preset, overrides, tables)
        uri = resolve_tracking_uri(tracking_uri, base.platform.tracking_uri, workdir)
        keys = [table.key for table in tables]
        parent = create_run(uri, base.platform.experiment_name, name,
                            {"preset": preset, "dataset": base.data.dataset, "tables": ",".join(keys), "seeds": seeds,
                             "overrides": " ".join(overrides), "trainings": len(plan) * seeds,
                             "rows": sum(len(table.rows) for table in tables) * seeds},
                            {TAG_KIND: "study", TAG_STUDY: name}, artifact_root=workdir / DEFAULT_ARTIFACTS)
        (storage / name).mkdir()
        (storage / name / STUDY_INFO).write_text(json.dumps(
            {"preset": preset, "overrides": overrides, "tables": keys, "seeds": seeds,
             "tracking_uri": uri, "parent_run_id": parent}))
        param_space = {
            "training": tune.grid_search(list(plan)), "seed": tune.grid_search(list(range(seeds))),
            "study": name, "preset": preset, "plan": plan, "tables": keys, "workdir": str(workdir),
            "tracking_uri": uri, "parent_run_id": parent,
        }
        tuner = tune.Tuner(
            _trainable(), param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(base),
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=1),
        )
        n_seeds = seeds
    try:
        results = tuner.fit()
    except BaseException:
        set_status(uri, parent, "FAILED")
        raise
    if results.errors:
        set_status(uri, parent, "FAILED")
        raise RuntimeError(f"study {name}: {len(results.errors)} trial(s) failed, first: {results.errors[0]}")
    set_status(uri, parent, "FINISHED")
    return StudyOutcome(name, uri, parent, len(plan) * n_seeds, sum(len(t.rows) for t in tables) * n_seeds)


def _trial_name(trial: Any) -> str:
    return f"{trial.config['training']}-s{trial.config['seed']}"


def _trainable() -> Any:
    # The trial drives Ray Train and then reads the model out: it holds no CPU, so the training
    # workers get them all (a 2-CPU machine trains the smoke preset on 2), only the memory of one
    # model; max_concurrent_trials keeps idle drivers from piling up.
    return tune.with_resources(run_trial, {"cpu": 0, "memory": TRIAL_MEMORY})
