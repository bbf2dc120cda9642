"""Studies on a real local Ray (Tune over Ray Train) with a real MLflow store, then the tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from tests.platform.conftest import TINY
from unips.platform.ablation import run_study

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["optim.max_iter=3", "optim.steps=[3]", "optim.checkpoint_period=3"]


def _runs(uri: str, study: str, kind: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`unips.study` = '{study}' and tags.`unips.kind` = '{kind}'")


@pytest.fixture(scope="module")
def trimming_study(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Table I on tiny images: 4 rows (trimming on/off for two models), 2 trainings."""
    workdir = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{workdir}/mlflow.db"
    outcome = run_study("smoke", ["I"], overrides=[*TINY, *SHORT], name="trim", workdir=workdir, tracking_uri=uri)
    assert (outcome.trainings, outcome.rows) == (2, 4)
    return workdir, uri, outcome.name


def test_rows_that_differ_only_at_inference_reuse_the_trained_model(trimming_study: tuple[Path, str, str]) -> None:
    workdir, uri, study = trimming_study
    trainings = _runs(uri, study, "training")
    rows = _runs(uri, study, "row")
    assert len(trainings) == 2 and len(rows) == 4
    by_training = {}
    for run in rows:
        by_training.setdefault(run.data.params["training_run_id"], set()).add(run.data.tags["unips.row"])

    def training_of(flags: str) -> str:
        return next(t.info.run_id for t in trainings if t.data.tags["unips.training"].startswith(f"{flags}-"))

    assert by_training == {training_of("msk1-aff1-e2e1-B-pred"): {"full, trim", "full, no trim"},
                           training_of("msk1-aff0-e2e0-B-pred"): {"heu, trim", "heu, no trim"}}
    # Tune ran one trial per training, each trained once (one Ray Train run folder each).
    keys = sorted(t.data.tags["unips.training"] for t in trainings)
    assert sorted(p.name for p in (workdir / "ray_results").glob(f"{study}-*")) == [f"{study}-{k}-s0" for k in keys]
    parent = _runs(uri, study, "study")[0]
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in [*trainings, *rows])
    assert parent.info.status == "FINISHED"


def test_tables_hold_exactly_the_mlflow_metrics(trimming_study: tuple[Path, str, str]) -> None:
    workdir, uri, study = trimming_study
    out = workdir / "tables"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), "--study", study, "--format",
                           "csv", "--out", str(out), "--tracking-uri", uri],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "### Table I" in done.stdout and "| full, trim" in done.stdout
    table = pd.read_csv(out / "table_I.csv", float_precision="round_trip")  # exact, as written
    metrics = {run.data.tags["unips.row"]: run.data.metrics for run in _runs(uri, study, "row")}
    assert len(table) == 4 * 4  # rows x columns (PQ_st, SQ_st, RQ_st, IoU_st)
    for line in table.itertuples():
        assert line.n == 1 and line.mean == metrics[line.row][line.metric], (line.row, line.metric)
    # The paper comparison is the difference of two of those numbers.
    paper = pd.read_csv(out / "paper_I.csv").set_index(["what", "metric"])
    assert paper.loc[("full, trim - full, no trim", "PQ_st"), "ours"] == pytest.approx(
        metrics["full, trim"]["PQ_st"] - metrics["full, no trim"]["PQ_st"])
    parent = _runs(uri, study, "study")[0].info.run_id
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent, "tables")}
    assert logged == {"tables/table_I.csv", "tables/paper_I.csv"}


def _ablation(workdir: Path, *args: str) -> subprocess.Popen:
    overrides = [*TINY, *SHORT, "platform.cpus_per_worker=2"]  # one training at a time on 2 CPUs
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / "ablation.py"), "--preset", "smoke",
                             "--tables", "H", "--name", "killed", *args, *overrides],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "MLFLOW_TRACKING_URI": ""})


def test_a_killed_study_resumes_without_retraining_finished_trials(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # the scripts' default store in their working folder
    driver = _ablation(tmp_path)
    deadline = time.monotonic() + 600
    # Killed once Tune has recorded the first trial as finished (in its experiment state on disk).
    while not _finished_trials(tmp_path / "ray_results" / "killed"):
        assert driver.poll() is None, driver.stdout.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the first trial did not finish in 10 minutes"
        time.sleep(2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    (first_row,) = _runs(uri, "killed", "row")
    (first_training,) = [run for run in _runs(uri, "killed", "training") if run.info.status == "FINISHED"]
    trial_dir = next((tmp_path / "ray_results" / "killed").glob(f"{first_row.data.tags['unips.training']}-s0"))
    results_before = (trial_dir / "result.json").read_text()

    resumed = _ablation(tmp_path, "--resume")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert output.strip().splitlines()[-1] == f"study=killed tracking_uri={uri}"
    trainings = _runs(uri, "killed", "training")
    assert sorted(run.data.tags["unips.training"].rsplit("-", 1)[0] for run in trainings) == [
        "msk0-aff1-e2e1-B-gt", "msk0-aff1-e2e1-B-pred"]
    assert all(run.info.status == "FINISHED" for run in trainings)
    # The finished trial was not trained again: its training run ended when it did, its Tune results
    # are as they were, and its row run was not rewritten.
    again = MlflowClient(uri).get_run(first_training.info.run_id)
    assert again.info.end_time == first_training.info.end_time
    assert (trial_dir / "result.json").read_text() == results_before
    assert MlflowClient(uri).get_run(first_row.info.run_id).info.end_time == first_row.info.end_time
    assert len(_runs(uri, "killed", "row")) == 2
    info = json.loads((tmp_path / "ray_results" / "killed" / "unips_study.json").read_text())
    assert MlflowClient(uri).get_run(info["parent_run_id"]).info.status == "FINISHED"


def _finished_trials(experiment: Path) -> list[str]:
    try:
        return [trial.trial_id for trial in ExperimentAnalysis(str(experiment)).trials if trial.status == "TERMINATED"]
    except (ValueError, FileNotFoundError, OSError):  # Tune writes its first state a few seconds in
        return []
