"""A study as a user runs it (``experiments/ablation.py`` on the local Ray it starts, the default MLflow store),
killed twice and resumed each time, then the tables (``experiments/tables.py``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from tests.platform.conftest import TINY
from unips.platform.checkpoint import load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["optim.max_iter=4", "optim.steps=[4]", "optim.checkpoint_period=1"]
STUDY = "trim"


def _runs(uri: str, study: str, kind: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`unips.study` = '{study}' and tags.`unips.kind` = '{kind}'")


@dataclass
class ResumedStudy:
    """Table I on tiny images, run as a user runs it: killed during its first training, resumed, killed again
    once that training had finished, and resumed again."""

    workdir: Path
    uri: str
    name: str
    interrupted: Any  # the training run of the first kill, as it was then
    cut_short: list[str]  # its checkpoints then cut short on disk (all but the oldest)
    resumed_from: int  # the step of the checkpoint left readable
    first_trainings: list  # the training run(s) finished before the kill, as they were then
    first_rows: list  # their row runs, as they were then
    first_results: dict[Path, str]  # Tune's result.json of each finished trial, as it was then
    resume_output: str  # the resumed driver's stdout (Ray prints the workers' logs to stderr, at any time)


def _ablation(workdir: Path, log: str, *args: str) -> subprocess.Popen:
    """Start the study driver; its stdout and stderr go to ``<log>.out`` and ``<log>.err`` in ``workdir``
    (files, not pipes: a pipe nobody reads while the study runs would block the driver once full)."""
    overrides = [*TINY, *SHORT, "platform.cpus_per_worker=2"]  # one training at a time on 2 CPUs
    with open(workdir / f"{log}.out", "w") as out, open(workdir / f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "experiments" / "ablation.py"), "--preset", "smoke",
                                 "--tables", "I", "--name", STUDY, *args, *overrides],
                                cwd=workdir, stdout=out, stderr=err, text=True, start_new_session=True,
                                # Unbuffered: what it printed survives a SIGKILL.
                                env={**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONUNBUFFERED": "1"})


def _logs(workdir: Path, log: str) -> str:
    return (workdir / f"{log}.out").read_text() + (workdir / f"{log}.err").read_text()


def _kill_when(driver: subprocess.Popen, workdir: Path, log: str, ready: Callable[[], Any]) -> Any:
    """SIGKILL the study driver and the local Ray it started once ``ready()`` returns something; that."""
    deadline = time.monotonic() + 600
    while not (found := ready()):
        assert driver.poll() is None, _logs(workdir, log)
        assert time.monotonic() < deadline, f"{log}: not ready to kill in 10 minutes"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    _kill_all_in(workdir)
    driver.wait()
    return found


def _kill_all_in(workdir: Path, timeout_s: float = 60) -> None:
    """SIGKILL every process that works in ``workdir`` until none is left: Ray's worker processes are not
    all in the driver's process group, and one left alive went on to write a checkpoint after the kill."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = []
        for cwd in Path("/proc").glob("[0-9]*/cwd"):
            try:
                if cwd.resolve() == workdir.resolve():
                    left.append(int(cwd.parent.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
        if not left:
            return
        assert time.monotonic() < deadline, f"processes {left} still run in {workdir}"
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _training_past(uri: str, step: int) -> Any:
    """The study's training run that has logged ``loss/total`` at ``step`` or later, if there is one."""
    client = MlflowClient(uri)
    for run in _runs(uri, STUDY, "training"):
        if max((m.step for m in client.get_metric_history(run.info.run_id, "loss/total")), default=0) >= step:
            return run
    return None


@pytest.fixture(scope="module")
def resumed_study(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> ResumedStudy:
    """Table I: 4 rows (trimming on/off for two models) from 2 trainings of 4 steps, one at a time, each
    driver on a local Ray instance of its own beside another (the suite's)."""
    workdir = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{workdir}/mlflow.db"  # the scripts' default store in their working folder
    experiment = workdir / "ray_results" / STUDY
    # First kill: during the first training, once it has logged step 3 of 4 (after its checkpoints of steps 1-2).
    _kill_when(_ablation(workdir, "first"), workdir, "first", lambda: _training_past(uri, 3))
    (interrupted,) = _runs(uri, STUDY, "training")  # re-read after the kill
    # Its checkpoints but the oldest are then cut short on disk (a full disk, a killed copy).
    states = sorted((workdir / "ray_results" / interrupted.data.tags["unips.run"]).glob("checkpoint_*/state.pt"))
    assert len(states) >= 2, states
    for state in states[1:]:
        state.write_bytes(state.read_bytes()[:1000])
    resumed_from = load_state(states[0])["step"]
    # Second kill: between trainings, once Tune has recorded the first trial as finished.
    finished = _kill_when(_ablation(workdir, "second", "--resume"), workdir, "second",
                          lambda: _finished_trials(experiment))
    first_trainings = [run for run in _runs(uri, STUDY, "training") if run.info.status == "FINISHED"]
    first_rows = _runs(uri, STUDY, "row")
    first_results = {path: path.read_text() for path in experiment.glob("*/result.json")
                     if path.parent.name in finished}

    resumed = _ablation(workdir, "resumed", "--resume")
    assert resumed.wait(timeout=600) == 0, _logs(workdir, "resumed")
    output = (workdir / "resumed.out").read_text()
    return ResumedStudy(workdir, uri, STUDY, interrupted, [str(p) for p in states[1:]], resumed_from,
                        first_trainings, first_rows, first_results, output)


def test_a_killed_study_resumes_without_retraining_finished_trials(resumed_study: ResumedStudy) -> None:
    study, uri = resumed_study, resumed_study.uri
    assert study.resume_output.strip().splitlines()[-1] == f"study={STUDY} tracking_uri={uri}"
    # Each driver started its own local Ray beside the suite's and printed no traceback: Ray Train's
    # placement-group cleaner, told nothing, once found both instances and died (ray_instance.init_ray).
    for log in ("first", "second", "resumed"):
        output = _logs(study.workdir, log)
        assert "Traceback" not in output and "multiple active Ray instances" not in output, (log, output[-3000:])
    # The first kill came during a training: the resumed study went on from the one readable checkpoint and
    # finished the training, each step logged once. Whether it had to pass over a file cut short depends on
    # which checkpoint Ray had registered as the latest when the kill came (the stopped-run test of
    # test_training.py makes that fallback certain); any file it passed over is named, in its output and tag.
    assert study.interrupted.info.status == "RUNNING"
    second = (study.workdir / "second.out").read_text()
    assert f"resuming at step {study.resumed_from}/4" in second
    passed_over = re.findall(r"warning: checkpoint (\S+) is unreadable", second)
    assert set(passed_over) <= set(study.cut_short), passed_over
    client = MlflowClient(uri)
    again = client.get_run(study.interrupted.info.run_id)
    assert again.data.tags.get("unips.unreadable_checkpoint") == (passed_over[-1] if passed_over else None)
    assert again.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(again.info.run_id, "loss/total")) == [1, 2, 3, 4]
    # The second came after one training and its two rows, before the other training ended.
    assert len(study.first_trainings) == 1 and len(study.first_results) == 1
    assert len(study.first_rows) == 2
    trainings = _runs(uri, STUDY, "training")
    assert sorted(run.data.tags["unips.training"].rsplit("-", 1)[0] for run in trainings) == [
        "msk1-aff0-e2e0-B-pred", "msk1-aff1-e2e1-B-pred"]
    assert all(run.info.status == "FINISHED" for run in trainings)
    # The finished trial was not trained again: its training run ended when it did, its Tune results
    # are as they were, and its row runs were not rewritten.
    (first_training,) = study.first_trainings
    assert client.get_run(first_training.info.run_id).info.end_time == first_training.info.end_time
    assert all(path.read_text() == text for path, text in study.first_results.items())
    assert all(client.get_run(row.info.run_id).info.end_time == row.info.end_time for row in study.first_rows)
    assert len(_runs(uri, STUDY, "row")) == 4
    (parent,) = _runs(uri, STUDY, "study")  # the one record of the study, resumed, not made again
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["overrides"])[-1] == "platform.cpus_per_worker=2"
    assert not list((study.workdir / "ray_results").rglob("unips_*.json"))  # no side files of our own


def test_rows_that_differ_only_at_inference_reuse_the_trained_model(resumed_study: ResumedStudy) -> None:
    workdir, uri, study = resumed_study.workdir, resumed_study.uri, resumed_study.name
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


def test_tables_hold_exactly_the_mlflow_metrics(resumed_study: ResumedStudy) -> None:
    workdir, uri, study = resumed_study.workdir, resumed_study.uri, resumed_study.name
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


def _finished_trials(experiment: Path) -> list[str]:
    """Folder names of the trials Tune has recorded as finished."""
    # Reading Tune's state costs a second of CPU: only once a trial has made its last report (rows logged).
    if not any('"rows_logged"' in path.read_text() for path in experiment.glob("*/result.json")):
        return []
    try:
        trials = ExperimentAnalysis(str(experiment)).trials
    except (ValueError, FileNotFoundError, OSError):  # Tune writes its first state a few seconds in
        return []
    return [f"{trial.config['training']}-s{trial.config['seed']}" for trial in trials if trial.status == "TERMINATED"]
