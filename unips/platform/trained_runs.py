"""A trained network found by its MLflow training run: ``--run latest``, a run's name or its id.

Every training logs its final weights as the artifact ``checkpoint/state.pt`` (with the config
and categories, what :func:`~unips.platform.checkpoint.model_from_checkpoint` needs), so the
tracking store alone is enough to evaluate or predict with a run, wherever its Ray folder is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from unips.platform.tracking import require_store

LATEST = "latest"
WEIGHTS = "checkpoint/state.pt"  # the final weights' artifact path on a training run
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
    try:
        return Path(MlflowClient(tracking_uri).download_artifacts(run.info.run_id, WEIGHTS, str(folder)))
    except Exception as error:  # MLflow raises its own types per store for a missing artifact
        raise FileNotFoundError(f"training run {run.info.run_id} ({run.info.run_name}) has no {WEIGHTS}: "
                                f"did it finish? ({error})") from None
