"""The killed-and-resumed study of ``test_ablation.py``: two Ray nodes, a bucket and a tracking server, run in
the background from the start of the suite.

Table I on tiny images for two seeds, as a user runs it on a cluster (docs/cluster.md):
``experiments/ablation.py --address <head>`` on a Ray cluster of two nodes with one CPU each
(``RayCluster``: separate raylets and object stores on this machine), Ray's storage in a bucket of an
S3-compatible server and the runs on a real ``mlflow server`` with proxied artifacts, both on 127.0.0.1.
Two trainings run at a time, one per node. The driver is SIGKILLed once Tune has recorded a trial as
finished and a training of the second wave is under way; that training's newer checkpoints are then cut
short in the bucket, and ``--resume`` finishes the study. Its drivers wait on Ray, on MLflow and on each
other for much of their two minutes; run beside the rest of the suite, those waits cost the suite nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from tests.platform.conftest import ROOT, TINY
from tests.servers import MlflowServer, RayCluster, S3Server
from unips.platform import storage
from unips.platform.checkpoint import STATE_FILE, load_state

SHORT = ["optim.max_iter=4", "optim.steps=[4]", "optim.checkpoint_period=1",
         "model.backbone.freeze_at=5"]  # no momentum for the backbone: checkpoints of ~50 MB, not 136
STUDY = "trim"
SEEDS = 2  # four trainings on two nodes: a second wave to interrupt once the first has finished


def study_runs(uri: str, study: str, kind: str) -> list:
    """The MLflow runs of ``study`` of one kind (``study``, ``training`` or ``row``)."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`unips.study` = '{study}' and tags.`unips.kind` = '{kind}'")


def logged_steps(uri: str, run: Any) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "loss/total"))


@dataclass
class ResumedStudy:
    """What the tests read of the study: where it ran and kept its records, and what the kill left behind."""

    workdir: Path
    uri: str  # the tracking server
    server_artifacts: Path  # where the server keeps the artifacts it proxies
    s3: S3Server
    results: str  # Ray's storage: a location in the bucket
    node_ids: set[str]  # the cluster's nodes
    name: str
    interrupted: list  # the training runs under way at the kill, as they were then
    cut_short: list[str]  # their checkpoints then cut short in the bucket (all but each one's oldest)
    resumed_from: dict[str, int]  # run name -> the step of the checkpoint left readable (0: it had none)
    first_trainings: list  # the training runs finished before the kill, as they were then
    first_rows: list  # their row runs, as they were then
    first_results: dict[str, bytes]  # Tune's result.json in the bucket of each trial it had finished, as it was then
    resume_output: str  # the resumed driver's stdout (Ray prints the workers' logs to stderr, at any time)


def _ablation(workdir: Path, log: str, cluster: RayCluster, uri: str, results: str, *args: str) -> subprocess.Popen:
    """Start the study driver; its stdout and stderr go to ``<log>.out`` and ``<log>.err`` in ``workdir``
    (files, not pipes: a pipe nobody reads while the study runs would block the driver once full)."""
    command = [sys.executable, str(ROOT / "experiments" / "ablation.py"), "--preset", "smoke", "--tables", "I",
               "--seeds", str(SEEDS), "--name", STUDY, "--address", cluster.address, "--tracking-uri", uri, *args,
               *TINY, *SHORT, f"platform.storage_path={results}", "data.root=data", "data.synthetic.generate=true"]
    # Unbuffered: what it printed survives a SIGKILL. Ray's log deduplication off: it holds back a worker's line
    # that equals another's up to words with digits (two trainings' step lines) until a later line comes after
    # its 5 s window, so a line the test reads could go missing from the log.
    env = {**os.environ, **cluster.ENV, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    env.pop("RAY_ADDRESS", None)
    with open(workdir / f"{log}.out", "w") as out, open(workdir / f"{log}.err", "w") as err:
        return subprocess.Popen(command, cwd=workdir, stdout=out, stderr=err, text=True, start_new_session=True,
                                env=env)


def driver_output(workdir: Path, log: str) -> str:
    """What the driver started as ``log`` printed, stdout then stderr."""
    return (workdir / f"{log}.out").read_text() + (workdir / f"{log}.err").read_text()


def _kill_when(driver: subprocess.Popen, workdir: Path, log: str, ready: Callable[[], Any]) -> Any:
    """SIGKILL the study driver once ``ready()`` returns something; that."""
    deadline = time.monotonic() + 600
    while not (found := ready()):
        assert driver.poll() is None, driver_output(workdir, log)
        assert time.monotonic() < deadline, f"{log}: not ready to kill in 10 minutes"
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return found


def _wait_until_trainings_end(cluster: RayCluster, timeout_s: float = 120) -> None:
    """Wait until the cluster has cleaned up the killed driver's actors (its trials, Ray Train's controllers
    and workers): one left alive could write a checkpoint after the kill."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout_s
    while alive := [actor.class_name for actor in list_actors(address=cluster.dashboard, filters=[("state", "=", "ALIVE")])
                    if not actor.class_name.startswith("_")]:  # Ray's own (detached) helpers stay
        assert time.monotonic() < deadline, f"still alive after the kill: {alive}"
        time.sleep(0.5)


def _finished_trials(experiment: str) -> list[str]:
    """Folder names of the trials Tune has recorded as finished, in its state in the bucket."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(experiment).trials
    except (ValueError, FileNotFoundError, OSError):  # Tune writes its first state a few seconds in
        return []
    return [f"{trial.config['training']}-s{trial.config['seed']}" for trial in trials if trial.status == "TERMINATED"]


def _first_wave_done(uri: str, experiment: str) -> list[str]:
    """Once a training has finished and Tune has recorded its trial as finished, while another training is
    past its third step (checkpoints of steps 1 and 2 written) and not finished: the finished trials."""
    trainings = study_runs(uri, STUDY, "training")
    if not any(run.info.status == "FINISHED" for run in trainings):
        return []
    if not any(run.info.status == "RUNNING" and logged_steps(uri, run)[-1:] >= [3] for run in trainings):
        return []
    return _finished_trials(experiment)  # about a second of CPU: only when the rest holds


def run_killed_study(workdir: Path, cluster: RayCluster, server: MlflowServer, s3: S3Server) -> ResumedStudy:
    """Table I: 8 rows (trimming on/off for two models, two seeds) from 4 trainings of 4 steps, two at a time."""
    uri, results = server.uri, s3.uri("ray_results")
    experiment = storage.join(results, STUDY)
    first = _ablation(workdir, "first", cluster, uri, results)
    finished = _kill_when(first, workdir, "first", lambda: _first_wave_done(uri, experiment))
    _wait_until_trainings_end(cluster)
    trainings = study_runs(uri, STUDY, "training")  # read again after the kill
    interrupted = [run for run in trainings if run.info.status == "RUNNING"]
    first_trainings = [run for run in trainings if run.info.status == "FINISHED"]
    first_rows = study_runs(uri, STUDY, "row")
    first_results = {trial: s3.read(f"ray_results/{STUDY}/{trial}/result.json") for trial in finished}
    # The checkpoints of the trainings under way, all but each one's oldest, are cut short in the bucket (a
    # killed upload, a full disk). A training that had just begun may have none yet: it starts over.
    cut_short, resumed_from = [], {}
    for run in interrupted:
        name = run.data.tags["unips.run"]
        states = [storage.join(results, key.removeprefix("ray_results/"))
                  for key in s3.keys(f"ray_results/{name}") if key.endswith(f"/{STATE_FILE}")]
        if not states:
            resumed_from[name] = 0
            continue
        for state in states[1:]:
            storage.write_bytes(state, storage.read_bytes(state)[:1000])
        cut_short += states[1:]
        resumed_from[name] = load_state(states[0])["step"]

    resumed = _ablation(workdir, "resumed", cluster, uri, results, "--resume")
    assert resumed.wait(timeout=600) == 0, driver_output(workdir, "resumed")
    return ResumedStudy(workdir, uri, server.artifacts, s3, results, cluster.node_ids, STUDY, interrupted, cut_short,
                        resumed_from, first_trainings, first_rows, first_results,
                        (workdir / "resumed.out").read_text())


class BackgroundStudy:
    """``run_killed_study`` in a thread of its own, started when the suite starts, with its servers and
    cluster; ``result()`` waits for it. ``close()`` stops them."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="unips-study-"))
        self._outcome: ResumedStudy | BaseException | None = None
        self._stoppable: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="killed-study", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            s3 = S3Server()
            self._stoppable.append(s3)
            server = MlflowServer(self.workdir).start()
            self._stoppable.append(server)
            cluster = RayCluster(nodes=2, cpus=1)
            self._stoppable.append(cluster)
            self._outcome = run_killed_study(self.workdir, cluster, server, s3)
        except BaseException as error:  # handed to the tests, which fail with it
            self._outcome = error

    def result(self, timeout_s: float = 1800) -> ResumedStudy:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the study in {self.workdir} did not end within {timeout_s:.0f} s")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome

    def close(self) -> None:
        for running in reversed(self._stoppable):
            running.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
