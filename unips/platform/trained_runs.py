"""A trained network found by its MLflow training run: ``--run latest``, a run's name or its id.

Every training logs its network as the MLflow model ``model`` of its run, whose ``artifacts/state.pt``
holds the final weights with the config and categories (what
:func:`~unips.platform.checkpoint.model_from_checkpoint` needs), so the tracking store alone is enough to
evaluate or predict with a run, wherever its Ray folder is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from unips.platform.tracking import require_store, using_tracking_uri

LATEST = "latest"
WEIGHTS = "model/artifacts/state.pt"  # the final weights, inside the run's MLflow model (runs:/<id>/model)
OLD_WEIGHTS = "checkpoint/state.pt"  # where earlier trainings also logged them: their runs still load
_RUN_ID = re.compile(r"[0-9a-f]{32}")


def training_run(tracking_uri: str, which: str) -> Any:
    """The finished training run ``which``: ``latest`` (the newest), a run id, or a run's name (its Ray
    folder name, tag ``unips.run``, or its name in the UI)."""
    require_store(tracking_uri, " to find a training run in", "the training")
    client = MlflowClient(tracking_uri)
    if _RUN_ID.fullmatch(which):
        return client.get_run(which)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    finished = "attributes.status = 'FINISHED' and tags.`unips.run` LIKE '%'"
    name = which.replace("'", "\\'")
    # MLflow's filter has no "or": the name as the Ray folder (tag), else as the UI shows it.
    queries = [finished] if which == LATEST else [f"{finished} and tags.`unips.run` = '{name}'",
                                                   f"{finished} and attributes.run_name = '{name}'"]
    runs = []
    for query in queries if experiments else ():
        if runs := client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=1):
            break
    if not runs:
        what = "no finished training run" + ("" if which == LATEST else f" named {which!r}")
        raise FileNotFoundError(f"{what} in the MLflow store {tracking_uri}: train one first, or pass "
                                "--tracking-uri")
    return runs[0]


def checkpoint_of_run(tracking_uri: str, which: str, folder: str | Path) -> Path:
    """The final ``state.pt`` of the training run ``which`` (see :func:`training_run`), downloaded into
    ``folder``."""
    run = training_run(tracking_uri, which)
    errors = []
    for path in (WEIGHTS, OLD_WEIGHTS):
        try:
            # runs:/<id>/model/... finds the run's logged model through the process-wide tracking URI only.
            with using_tracking_uri(tracking_uri):
                return Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/{path}",
                                                                dst_path=str(folder)))
        except Exception as error:  # MLflow raises its own types per store for a missing artifact
            errors.append(str(error))
    raise FileNotFoundError(f"training run {run.info.run_id} ({run.info.run_name}) has no final weights "
                            f"({WEIGHTS}): did it finish? ({errors[0]})") from None
