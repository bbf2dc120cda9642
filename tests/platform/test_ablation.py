"""A study as a user runs it (``experiments/ablation.py`` on the local Ray it starts, the default MLflow store),
killed twice and resumed each time (``killed_study.py``, in the background from the suite's start), then the
tables (``experiments/tables.py``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.platform.conftest import KILLED_STUDY, ROOT
from tests.platform.killed_study import STUDY, ResumedStudy, driver_output, study_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def resumed_study(pytestconfig: pytest.Config) -> ResumedStudy:
    """The study that has run since the suite started (``conftest.py``), once it has ended."""
    return pytestconfig.stash[KILLED_STUDY].result()


def test_a_killed_study_resumes_without_retraining_finished_trials(resumed_study: ResumedStudy) -> None:
    study, uri = resumed_study, resumed_study.uri
    assert study.resume_output.strip().splitlines()[-1] == f"study={STUDY} tracking_uri={uri}"
    # Each driver started its own local Ray beside the suite's: Ray Train's placement-group cleaner, told
    # nothing, once found both instances and died with this (ray_instance.init_ray). Other tracebacks are
    # not asserted away: on a loaded machine Ray's own controller logs some it calls "safe to ignore".
    for log in ("first", "second", "resumed"):
        output = driver_output(study.workdir, log)
        assert "multiple active Ray instances" not in output, (log, output[-3000:])
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
    trainings = study_runs(uri, STUDY, "training")
    assert sorted(run.data.tags["unips.training"].rsplit("-", 1)[0] for run in trainings) == [
        "msk1-aff0-e2e0-B-pred", "msk1-aff1-e2e1-B-pred"]
    assert all(run.info.status == "FINISHED" for run in trainings)
    # The finished trial was not trained again: its training run ended when it did, its Tune results
    # are as they were, and its row runs were not rewritten.
    (first_training,) = study.first_trainings
    assert client.get_run(first_training.info.run_id).info.end_time == first_training.info.end_time
    assert all(path.read_text() == text for path, text in study.first_results.items())
    assert all(client.get_run(row.info.run_id).info.end_time == row.info.end_time for row in study.first_rows)
    assert len(study_runs(uri, STUDY, "row")) == 4
    (parent,) = study_runs(uri, STUDY, "study")  # the one record of the study, resumed, not made again
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["overrides"])[-1] == "platform.cpus_per_worker=2"
    assert not list((study.workdir / "ray_results").rglob("unips_*.json"))  # no side files of our own


def test_rows_that_differ_only_at_inference_reuse_the_trained_model(resumed_study: ResumedStudy) -> None:
    workdir, uri, study = resumed_study.workdir, resumed_study.uri, resumed_study.name
    trainings = study_runs(uri, study, "training")
    rows = study_runs(uri, study, "row")
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
    parent = study_runs(uri, study, "study")[0]
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
    metrics = {run.data.tags["unips.row"]: run.data.metrics for run in study_runs(uri, study, "row")}
    assert len(table) == 4 * 4  # rows x columns (PQ_st, SQ_st, RQ_st, IoU_st)
    for line in table.itertuples():
        assert line.n == 1 and line.mean == metrics[line.row][line.metric], (line.row, line.metric)
    # The paper comparison is the difference of two of those numbers.
    paper = pd.read_csv(out / "paper_I.csv").set_index(["what", "metric"])
    assert paper.loc[("full, trim - full, no trim", "PQ_st"), "ours"] == pytest.approx(
        metrics["full, trim"]["PQ_st"] - metrics["full, no trim"]["PQ_st"])
    parent = study_runs(uri, study, "study")[0].info.run_id
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent, "tables")}
    assert logged == {"tables/table_I.csv", "tables/paper_I.csv"}
