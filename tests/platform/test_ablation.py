"""A study as a user runs it on a cluster (``experiments/ablation.py --address``: two Ray nodes, storage in a
bucket, a tracking server), killed and resumed (``killed_study.py``, in the background from the suite's
start), then the tables (``experiments/tables.py``) from a third process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.platform.conftest import KILLED_STUDY, ROOT
from tests.platform.killed_study import SEEDS, STUDY, ResumedStudy, driver_output, logged_steps, study_runs
from unips.platform.checkpoint import load_state

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def resumed_study(pytestconfig: pytest.Config) -> ResumedStudy:
    """The study that has run since the suite started (``conftest.py``), once it has ended."""
    return pytestconfig.stash[KILLED_STUDY].result()


def _trial_results(study: ResumedStudy) -> dict[str, list[dict]]:
    """Tune's record of each trial in the bucket: its folder name -> its results, oldest first."""
    keys = [key for key in study.s3.keys(f"ray_results/{study.name}/") if key.endswith("/result.json")]
    return {key.split("/")[-2]: [json.loads(line) for line in study.s3.read(key).decode().splitlines()]
            for key in keys}


def test_a_killed_study_on_two_nodes_resumes_from_the_bucket_without_retraining_finished_trials(
    resumed_study: ResumedStudy,
) -> None:
    study, uri = resumed_study, resumed_study.uri
    assert study.resume_output.strip().splitlines()[-1] == f"study={STUDY} tracking_uri={uri}"
    # The cluster shares this machine with other Ray instances (the suite's, the accuracy test's): Ray Train's
    # placement-group cleaner, told nothing, once found several and died with this (ray_instance.init_ray).
    for log in ("first", "resumed"):
        output = driver_output(study.workdir, log)
        assert "multiple active Ray instances" not in output, (log, output[-3000:])
    # Two trainings at a time, one per node: every training ran where Tune recorded it, and both nodes trained.
    client = MlflowClient(uri)
    trainings = study_runs(uri, STUDY, "training")
    assert len(trainings) == 2 * SEEDS and all(run.info.status == "FINISHED" for run in trainings)
    results = _trial_results(study)
    recorded = {trial: lines[-1]["training_node"] for trial, lines in results.items()}
    tagged = {run.data.tags["unips.run"].removeprefix(f"{STUDY}-"): run.data.tags["unips.node"] for run in trainings}
    assert recorded == tagged and set(recorded.values()) == study.node_ids, (recorded, tagged, study.node_ids)
    print("\ntrial -> node (Tune's result, the run's unips.node tag)")  # shown by `pytest -m cluster -s`
    for trial, node in sorted(recorded.items()):
        print(f"  {trial:60s} {node}")
    # The kill came while the second wave trained: each interrupted training went on from the one checkpoint
    # left readable in the bucket and finished, each step logged once. Whether it had to pass over a file
    # cut short depends on which checkpoint Ray had registered as the latest when the kill came (the
    # stopped-run test of test_training.py makes that fallback certain); any file passed over is named, and is
    # one we cut or one the kill left unwritten (a checkpoint folder whose upload the kill cut off).
    resumed = driver_output(study.workdir, "resumed")
    assert study.interrupted and all(run.info.status == "RUNNING" for run in study.interrupted)
    started = {name: (verb, int(step)) for name, verb, step in re.findall(r"(\S+): (resuming at|starting) step (\d+)/4",
                                                                         resumed)}
    for name, step in study.resumed_from.items():
        # Each went on from its readable checkpoint, or from the start: if it had none yet, or if the kill came
        # before Ray Train had recorded that checkpoint as the run's (its upload done, its record not).
        assert started.get(name) in {("resuming at", step), ("starting", 0)}, (name, step, started)
    assert any(verb == "resuming at" for name, (verb, _) in started.items() if name in study.resumed_from), started
    passed_over = re.findall(r"warning: checkpoint (\S+) is unreadable", resumed)
    for path in set(passed_over) - set(study.cut_short):
        with pytest.raises((ValueError, FileNotFoundError)):
            load_state(path)
    for run in study.interrupted:
        again = client.get_run(run.info.run_id)
        own = [path for path in passed_over if f"/{run.data.tags['unips.run']}/" in path]
        assert again.data.tags.get("unips.unreadable_checkpoint") == (own[-1] if own else None)
        assert again.info.status == "FINISHED" and logged_steps(uri, again) == [1, 2, 3, 4]
    # The finished trials were not trained again: their training runs ended when they did, Tune's results
    # in the bucket are as they were, and their row runs were not rewritten.
    assert study.first_trainings and len(study.first_results) == len(study.first_trainings)
    assert all(client.get_run(run.info.run_id).info.end_time == run.info.end_time for run in study.first_trainings)
    assert all(study.s3.read(f"ray_results/{STUDY}/{trial}/result.json") == text
               for trial, text in study.first_results.items())
    assert all(client.get_run(row.info.run_id).info.end_time == row.info.end_time for row in study.first_rows)
    assert len(study_runs(uri, STUDY, "row")) == 4 * SEEDS
    (parent,) = study_runs(uri, STUDY, "study")  # the one record of the study, resumed, not made again
    assert parent.info.status == "FINISHED"
    # The finished study put its tables (every format) and its figure on its own run, for the UI.
    logged = {f.path for folder in ("tables", "figures") for f in client.list_artifacts(parent.info.run_id, folder)}
    assert logged == {"tables/table_I.md", "tables/table_I.tex", "tables/table_I.csv", "tables/paper_I.csv",
                      "figures/study.png"}
    figure = Image.open(client.download_artifacts(parent.info.run_id, "figures/study.png", str(study.workdir)))
    assert figure.format == "PNG" and figure.width > 800 and figure.height > 200
    assert json.loads(parent.data.params["overrides"])[-1] == "data.synthetic.generate=true"
    assert not [key for key in study.s3.keys("ray_results/") if "/unips_" in key]  # no side files of our own


def test_checkpoints_are_in_the_bucket_and_artifacts_on_the_tracking_server(resumed_study: ResumedStudy) -> None:
    study, uri = resumed_study, resumed_study.uri
    assert not (study.workdir / "ray_results").exists() and not (study.workdir / "mlruns").exists()
    client = MlflowClient(uri)
    for run in study_runs(uri, STUDY, "training"):
        name = run.data.tags["unips.run"]
        assert any(re.fullmatch(rf"ray_results/{name}/checkpoint_[^/]+/state\.pt", key)
                   for key in study.s3.keys(f"ray_results/{name}/")), name
        # Logged by the worker on either node, kept by the server in its own folder: the final weights once, in
        # the run's MLflow model.
        assert not client.list_artifacts(run.info.run_id, "checkpoint")
        assert client.list_artifacts(run.info.run_id, "images")  # the evaluation's pictures, by step
        (model,) = client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")
        assert list(study.server_artifacts.rglob(f"{model.model_id}/artifacts/artifacts/state.pt"))
    # What is where, for a person reading `pytest -m cluster -s`: files per kind of path.
    bucket = defaultdict(int)
    for key in study.s3.keys("ray_results/"):
        _, top, *rest = key.split("/")
        path = "/".join([STUDY if top == STUDY else "<run>", *rest[:2]])
        for pattern, kind in ((r"checkpoint_[^/]+", "<checkpoint>"), (r"\d{4}-\d\d-\d\d_[\d-]+", "<time>"),
                              (r"[\w-]+-s\d(?=/)", "<trial>"), (r"tfevents\.\S+", "tfevents.<...>")):
            path = re.sub(pattern, kind, path)
        bucket[path] += 1
    print("\nbucket ray_results/:", dict(sorted(bucket.items())))
    served = defaultdict(int)
    for path in study.server_artifacts.rglob("*"):
        if path.is_file():
            top, *rest = path.relative_to(study.server_artifacts).parts[2:]
            kind = "/".join(["<model>" if top.startswith("m-") else top, *rest[:3]])
            served[re.sub(r"\+step\+.*", "+step+<step>+...", kind)] += 1
    print("server <experiment>/<run>/:", dict(sorted(served.items())))


def test_rows_that_differ_only_at_inference_reuse_the_trained_model(resumed_study: ResumedStudy) -> None:
    uri, study = resumed_study.uri, resumed_study.name
    trainings = study_runs(uri, study, "training")
    rows = study_runs(uri, study, "row")
    by_training = defaultdict(set)
    for run in rows:
        by_training[run.data.params["training_run_id"]].add((run.data.tags["unips.row"], run.data.tags["unips.seed"]))
    expected = {}
    for training in trainings:
        tags = training.data.tags
        mode = "full" if tags["unips.training"].startswith("msk1-aff1-e2e1-B-pred") else "heu"
        expected[training.info.run_id] = {(f"{mode}, trim", tags["unips.seed"]), (f"{mode}, no trim", tags["unips.seed"])}
    assert by_training == expected
    # Tune ran one trial per training and seed, each trained once (one Ray Train run folder each, in the bucket).
    keys = sorted(f"{study}-{t.data.tags['unips.training']}-s{t.data.tags['unips.seed']}" for t in trainings)
    folders = {key.split("/")[1] for key in resumed_study.s3.keys("ray_results/") if "/checkpoint_" in key}
    assert sorted(folders) == keys and len(keys) == 2 * SEEDS
    parent = study_runs(uri, study, "study")[0]
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in [*trainings, *rows])


def test_tables_from_another_process_hold_the_mlflow_metrics(resumed_study: ResumedStudy) -> None:
    workdir, uri, study = resumed_study.workdir, resumed_study.uri, resumed_study.name
    out = workdir / "tables"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), "--study", study, "--format",
                           "csv", "--out", str(out), "--tracking-uri", uri],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "### Table I" in done.stdout and "| full, trim" in done.stdout
    table = pd.read_csv(out / "table_I.csv", float_precision="round_trip")  # exact, as written
    metrics = defaultdict(list)
    for run in study_runs(uri, study, "row"):
        metrics[run.data.tags["unips.row"]].append(run.data.metrics)
    assert len(table) == 4 * 4  # rows x columns (PQ_st, SQ_st, RQ_st, IoU_st)
    for line in table.itertuples():
        values = [seed[line.metric] for seed in metrics[line.row]]
        assert line.n == SEEDS and line.mean == pytest.approx(sum(values) / SEEDS, abs=1e-12), (line.row, line.metric)
    # The paper comparison is the mean over seeds of the difference of two of those numbers.
    paper = pd.read_csv(out / "paper_I.csv").set_index(["what", "metric"])
    by_seed = {(run.data.tags["unips.row"], run.data.tags["unips.seed"]): run.data.metrics["PQ_st"]
               for run in study_runs(uri, study, "row")}
    differences = [by_seed[("full, trim", str(s))] - by_seed[("full, no trim", str(s))] for s in range(SEEDS)]
    assert paper.loc[("full, trim - full, no trim", "PQ_st"), "ours"] == pytest.approx(sum(differences) / SEEDS)
    parent = study_runs(uri, study, "study")[0].info.run_id
    logged = {f.path for f in MlflowClient(uri).list_artifacts(parent, "tables")}
    assert logged == {"tables/table_I.md", "tables/table_I.tex", "tables/table_I.csv", "tables/paper_I.csv"}
    assert Image.open(out / "study.png").format == "PNG"


def test_runs_read_as_what_they_are_in_the_mlflow_ui(resumed_study: ResumedStudy) -> None:
    """Names a person can read (``<row> s<seed>``; a training by the first row it serves), a description on
    every run, tags for table, row, mode and seed, every config key a dotted parameter, the data as inputs."""
    uri, study = resumed_study.uri, resumed_study.name
    client = MlflowClient(uri)
    for run in study_runs(uri, study, "row"):
        tags = run.data.tags
        assert run.info.run_name == f"{tags['unips.row']} s{tags['unips.seed']}"
        assert tags["unips.tables"] == "I" and tags["unips.mode"] == run.data.params["mode"]
        assert tags["mlflow.note.content"].startswith(f"Row '{tags['unips.row']}' of Table I: Trimming")
    names = set()
    for run in study_runs(uri, study, "training"):
        tags = run.data.tags
        names.add(run.info.run_name)
        assert run.info.run_name in {f"train full, no trim s{tags['unips.seed']}",
                                     f"train heu, no trim s{tags['unips.seed']}"}
        assert "Trains model.detector.with_masks=true" in tags["mlflow.note.content"]
        assert run.data.params["model.panoptic.variant"] == "B" and run.data.params["seed"] == tags["unips.seed"]
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert {(i.dataset.name, i.tags[0].value) for i in inputs} == {("synthetic/train", "training"),
                                                                       ("synthetic/val", "evaluation")}
    assert len(names) == 2 * SEEDS
    (parent,) = study_runs(uri, study, "study")
    assert parent.info.run_name == study and "figures/study.png" in parent.data.tags["mlflow.note.content"]


def test_the_drivers_print_a_line_per_finished_trial_and_not_tunes_status_table(resumed_study: ResumedStudy) -> None:
    """Without --verbose: ``trial <name> finished in <time> (<k>/4 done, <r> running, <p> pending)`` as each trial
    ends, in the killed driver and in the resumed one (whose RunConfig ``Tuner.restore`` unpickled), and none of
    Tune's status tables (``Trial status: ...``, ``Current time: ...``, every 30 s)."""
    study = resumed_study
    line = re.compile(r"^trial (\S+) finished in (?:\d+ s|\d+ min \d+ s|\d+ h \d\d min) "
                      r"\((\d)/4 done, (\d) running, (\d) pending\)$", re.M)
    outputs = {log: driver_output(study.workdir, log) for log in ("first", "resumed")}
    for log, output in outputs.items():
        assert "Trial status:" not in output and "Current time:" not in output, (log, output[-3000:])
        assert "failed after" not in output, (log, output[-3000:])
    first, resumed = (line.findall(outputs[log]) for log in ("first", "resumed"))
    assert first, outputs["first"][-3000:]  # the first wave finished before the kill
    trials = {run.data.tags["unips.run"].removeprefix(f"{STUDY}-") for run in study_runs(study.uri, STUDY, "training")}
    assert {name for name, *_ in first + resumed} == trials
    # The resumed driver counts the trials Tune had recorded as finished before the kill as done; its last line
    # says nothing is left.
    assert int(resumed[0][1]) >= len(study.first_results) + 1 and resumed[-1][1:] == ("4", "0", "0")
