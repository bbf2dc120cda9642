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
The study's MLflow run (found by its tags) says what the study was: preset, tables, seeds
and overrides; Tune's experiment state under the storage path says how far it got.
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
from unips.platform import storage
from unips.platform.launch import TAG_RUN, absolute_paths, launch_training
from unips.platform.studies import (MODE_FREE, PANOPTIC_IOU, TAG_KIND, TAG_MODE, TAG_ROW, TAG_SEED, TAG_STUDY,
                                   TAG_TABLES, TAG_TRAINING, Row, TableSpec, select, trainings)
from unips.platform.study_progress import restore_output, tune_output
from unips.platform.study_report import log_study_report, study_tables
from unips.platform.tracking import (DEFAULT_ARTIFACTS, DESCRIPTION_TAG, create_run, find_runs, require_store,
                                    resolve_tracking_uri, set_status)
from unips.platform.train_loop import TAG_NODE

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


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: train one setting for one seed, then log its rows."""
    study, seed, key = config["study"], int(config["seed"]), config["training"]
    setting = config["plan"][key]
    workdir = Path(config["workdir"])
    cfg = absolute_paths(load_config(config["preset"], [*setting["overrides"], f"seed={seed}"]), workdir)
    run_name = f"{study}-{key}-s{seed}"
    resume = bool(find_runs(config["tracking_uri"], {TAG_RUN: run_name}))  # a trial that had begun
    rows = [Row(**{**row, "overrides": tuple(row["overrides"])}) for row in setting["rows"]]
    tables = select(config["tables"])
    tags = {PARENT: config["parent_run_id"], TAG_KIND: "training", TAG_STUDY: study, TAG_TRAINING: key,
            TAG_SEED: str(seed), TAG_TABLES: ",".join(dict.fromkeys(t for row in rows for t in tables_of(row, tables)))}
    outcome = launch_training(cfg, run_name=run_name, resume=resume, tracking_uri=config["tracking_uri"],
                              workdir=workdir, tags=tags, callbacks=[TuneReportCallback()],
                              title=f"train {rows[0].name} s{seed}", description=describe_training(rows, seed, tables))

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
        found = find_runs(config["tracking_uri"], row_tags, [experiment_id])  # a re-run trial reuses its row runs
        run_id = found[0].info.run_id if found else None
        if run_id is None:
            tags = {**row_tags, PARENT: config["parent_run_id"], TAG_TABLES: ",".join(tables_of(row, tables)),
                    TAG_TRAINING: key, TAG_MODE: str(row.mode),
                    DESCRIPTION_TAG: describe_row(row, seed, trim, tables, outcome.mlflow_run_id)}
            run_id = client.create_run(experiment_id, run_name=f"{row.name} s{seed}", tags=tags).info.run_id
            for name, value in {"mode": row.mode, "trim_stuff": trim, "overrides": " ".join(row.overrides),
                                "training_run_id": outcome.mlflow_run_id, "seed": seed}.items():
                client.log_param(run_id, name, value)
        for name, value in metrics.items():
            client.log_metric(run_id, name, value)
        client.set_terminated(run_id, "FINISHED")
    # Where it trained (the tag rank 0 set): Tune's own record names only the node's IP, which nodes can share.
    node = client.get_run(outcome.mlflow_run_id).data.tags.get(TAG_NODE, "")
    tune.report({"rows_logged": len(rows), "trained_step": outcome.metrics.get("step", 0), "training_node": node})


MODES = {"full": "the argmax of the panoptic logits P (the paper's unified inference)",
         "amx": "the argmax of the dynamic potentials Psi (no affinity)",
         "heu": "the heuristic merge of the semantic head and the detector's masks"}


def _setting(row: Row) -> str:
    return " ".join(row.overrides) or "the preset as it is"


def describe_training(rows: list[Row], seed: int, tables: list[TableSpec]) -> str:
    """A training run's description in the MLflow UI: what it trains and which rows read it out."""
    served = "; ".join(f"'{row.name}' (table {', '.join(tables_of(row, tables))}, {row.mode})" for row in rows)
    return (f"Trains {_setting(rows[0])}, seed {seed}. Its weights are read out for the rows {served}: each is a "
            "row run of the study. Losses and evaluations by step; the pictures of each evaluation under images/.")


def table_titles(tables: list[TableSpec]) -> str:
    return "; ".join(f"Table {table.key}: {table.title}" for table in tables)


def describe_row(row: Row, seed: int, trim: bool, tables: list[TableSpec], training_run_id: str) -> str:
    """A row run's description in the MLflow UI: the row, its table, how it is trained and read out."""
    titles = table_titles([table for table in tables if row in table.rows])
    return (f"Row '{row.name}' of {titles}. Seed {seed}: trained with {_setting(row)} (training run "
            f"{training_run_id}), read out by {MODES[str(row.mode)]}, stuff trimming {'on' if trim else 'off'}.")


def _evaluate_checkpoint(checkpoint: str, trim_stuff: bool) -> dict[str, float]:
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


def recorded_study(tracking_uri: str, preset: str, name: str | None) -> Any:
    """The MLflow run of the study ``name``, else of the latest study of ``preset``."""
    require_store(tracking_uri, " to resume a study from", "the study")
    runs = find_runs(tracking_uri, {TAG_KIND: "study", **({TAG_STUDY: name} if name else {})})
    runs = [run for run in runs if name or run.data.params.get("preset") == preset]
    if not runs:
        what = f"named {name!r}" if name else f"of preset {preset!r}"
        raise FileNotFoundError(f"no study {what} in the MLflow store {tracking_uri} to resume")
    return runs[0]


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
    verbose: bool = False,
) -> StudyOutcome:
    """Run (or with ``resume``, continue: the study ``name``, else the latest of ``preset`` in the tracking
    store) the study of ``table_keys`` on the connected Ray instance.

    It prints a line per finished trial; ``verbose`` brings back Ray Tune's own status table."""
    workdir = Path(workdir or Path.cwd()).resolve()
    base = absolute_paths(load_config(preset, list(overrides or [])), workdir)
    location: str = base.platform.storage_path  # type: ignore[assignment]
    storage.make_dirs(location)
    uri = resolve_tracking_uri(tracking_uri, base.platform.tracking_uri, workdir)
    if resume:
        recorded = recorded_study(uri, preset, name)
        name, parent, params = recorded.data.tags[TAG_STUDY], recorded.info.run_id, recorded.data.params
        tables, seeds = select(params["tables"].split(",")), int(params["seeds"])
        plan = plan_study(params["preset"], json.loads(params["overrides"]), tables)
        set_status(uri, parent, "RUNNING")
        tuner = tune.Tuner.restore(storage.join(location, name), trainable=_trainable(), resume_unfinished=True,
                                   resume_errored=True)
        restore_output(tuner, verbose)
    else:
        name = name or f"{base.name}-study-{datetime.now():%Y%m%d-%H%M%S}"
        if storage.exists(study_dir := storage.join(location, name)):
            raise FileExistsError(f"{study_dir} exists: pass --resume to continue it, or another --name")
        tables = select(table_keys)
        plan = plan_study(preset, list(overrides or []), tables)
        parent = _record_study(uri, base, name, preset, tables, seeds, list(overrides or []), len(plan), workdir)
        storage.make_dirs(study_dir)
        tuner = _new_tuner(base, preset, location, name, plan, seeds, tables, workdir, uri, parent, verbose)
    try:
        results = tuner.fit()
    except BaseException:
        set_status(uri, parent, "FAILED")
        raise
    if results.errors:
        set_status(uri, parent, "FAILED")
        raise RuntimeError(f"study {name}: {len(results.errors)} trial(s) failed, first: {results.errors[0]}")
    # The tables and the figure on the study's own run: the rows compared on one page of the UI.
    log_study_report(*study_tables(name, uri), uri)
    set_status(uri, parent, "FINISHED")
    return StudyOutcome(name, uri, parent, len(plan) * seeds, sum(len(t.rows) for t in tables) * seeds)


def _record_study(uri: str, base: Config, name: str, preset: str, tables: list[TableSpec], seeds: int,
                  overrides: list[str], trainings: int, workdir: Path) -> str:
    """The study's parent run in MLflow: what ``--resume`` needs to know of it is in its parameters."""
    params = {"preset": preset, "dataset": base.data.dataset, "tables": ",".join(table.key for table in tables),
              "seeds": seeds, "overrides": json.dumps(overrides), "trainings": trainings * seeds,
              "rows": sum(len(table.rows) for table in tables) * seeds}
    titles = table_titles(tables)
    description = (f"Study {name}: {titles}. Preset {preset}, {seeds} seed(s), {trainings * seeds} training(s). "
                   "Its trainings and row runs are the children of this run; the figure figures/study.png shows "
                   "each row's PQ with its seed interval and the paper's differences beside ours, tables/ holds "
                   "the tables (Markdown, LaTeX, CSV).")
    return create_run(uri, base.platform.experiment_name, name, params, {TAG_KIND: "study", TAG_STUDY: name},
                      artifact_root=workdir / DEFAULT_ARTIFACTS, description=description)


def _new_tuner(base: Config, preset: str, location: str, name: str, plan: dict[str, Any], seeds: int,
               tables: list[TableSpec], workdir: Path, uri: str, parent: str, verbose: bool = False) -> tune.Tuner:
    """One trial per (training setting, seed), as many at once as the cluster holds."""
    param_space = {
        "training": tune.grid_search(list(plan)), "seed": tune.grid_search(list(range(seeds))),
        "study": name, "preset": preset, "plan": plan,
        "tables": [table.key for table in tables], "workdir": str(workdir), "tracking_uri": uri,
        "parent_run_id": parent,
    }
    return tune.Tuner(
        _trainable(), param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(base),
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=name, storage_path=location, **tune_output(verbose)),
    )


def _trial_name(trial: Any) -> str:
    return f"{trial.config['training']}-s{trial.config['seed']}"


def _trainable() -> Any:
    # The trial drives Ray Train and then reads the model out: it holds no CPU, so the training
    # workers get them all (a 2-CPU machine trains the smoke preset on 2), only the memory of one
    # model; max_concurrent_trials keeps idle drivers from piling up.
    return tune.with_resources(run_trial, {"cpu": 0, "memory": TRIAL_MEMORY})
