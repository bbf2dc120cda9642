"""The killed-and-resumed study of ``test_ablation.py``, run in the background from the start of the suite.

Table I on tiny images, as a user runs it (``experiments/ablation.py`` on the local Ray it starts, the
default MLflow store in its working folder): killed during its first training, resumed, killed again once
that training had finished, and resumed again. Its three drivers wait on Ray, on MLflow and on each other
for much of their three minutes; run beside the rest of the suite, those waits cost the suite nothing.
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
from ray.tune import ExperimentAnalysis

from tests.platform.conftest import ROOT, TINY
from unips.platform.checkpoint import load_state

SHORT = ["optim.max_iter=4", "optim.steps=[4]", "optim.checkpoint_period=1"]
STUDY = "trim"


def study_runs(uri: str, study: str, kind: str) -> list:
    """The MLflow runs of ``study`` of one kind (``study``, ``training`` or ``row``)."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`unips.study` = '{study}' and tags.`unips.kind` = '{kind}'")


@dataclass
class ResumedStudy:
    """What the tests read of the study: its folder and store, and what the kills left behind."""

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
    overrides = [*TINY, *SHORT, "platform.cpus_per_worker=2"]  # one training at a time on 2 CPUs (on one thread)
    with open(workdir / f"{log}.out", "w") as out, open(workdir / f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, str(ROOT / "experiments" / "ablation.py"), "--preset", "smoke",
                                 "--tables", "I", "--name", STUDY, *args, *overrides],
                                cwd=workdir, stdout=out, stderr=err, text=True, start_new_session=True,
                                # Unbuffered: what it printed survives a SIGKILL.
                                env={**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONUNBUFFERED": "1"})


def driver_output(workdir: Path, log: str) -> str:
    """What the driver started as ``log`` printed, stdout then stderr."""
    return (workdir / f"{log}.out").read_text() + (workdir / f"{log}.err").read_text()


def _kill_when(driver: subprocess.Popen, workdir: Path, log: str, ready: Callable[[], Any]) -> Any:
    """SIGKILL the study driver and the local Ray it started once ``ready()`` returns something; that."""
    deadline = time.monotonic() + 600
    while not (found := ready()):
        assert driver.poll() is None, driver_output(workdir, log)
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
    for run in study_runs(uri, STUDY, "training"):
        if max((m.step for m in client.get_metric_history(run.info.run_id, "loss/total")), default=0) >= step:
            return run
    return None


def run_killed_study(workdir: Path) -> ResumedStudy:
    """Table I: 4 rows (trimming on/off for two models) from 2 trainings of 4 steps, one at a time, each
    driver on a local Ray instance of its own beside another (the suite's)."""
    uri = f"sqlite:///{workdir}/mlflow.db"  # the scripts' default store in their working folder
    experiment = workdir / "ray_results" / STUDY
    # First kill: during the first training, once it has logged step 3 of 4 (after its checkpoints of steps 1-2).
    _kill_when(_ablation(workdir, "first"), workdir, "first", lambda: _training_past(uri, 3))
    (interrupted,) = study_runs(uri, STUDY, "training")  # re-read after the kill
    # Its checkpoints but the oldest are then cut short on disk (a full disk, a killed copy).
    states = sorted((workdir / "ray_results" / interrupted.data.tags["unips.run"]).glob("checkpoint_*/state.pt"))
    assert len(states) >= 2, states
    for state in states[1:]:
        state.write_bytes(state.read_bytes()[:1000])
    resumed_from = load_state(states[0])["step"]
    # Second kill: between trainings, once Tune has recorded the first trial as finished.
    finished = _kill_when(_ablation(workdir, "second", "--resume"), workdir, "second",
                          lambda: _finished_trials(experiment))
    first_trainings = [run for run in study_runs(uri, STUDY, "training") if run.info.status == "FINISHED"]
    first_rows = study_runs(uri, STUDY, "row")
    first_results = {path: path.read_text() for path in experiment.glob("*/result.json")
                     if path.parent.name in finished}

    resumed = _ablation(workdir, "resumed", "--resume")
    assert resumed.wait(timeout=600) == 0, driver_output(workdir, "resumed")
    output = (workdir / "resumed.out").read_text()
    return ResumedStudy(workdir, uri, STUDY, interrupted, [str(p) for p in states[1:]], resumed_from,
                        first_trainings, first_rows, first_results, output)


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


class BackgroundStudy:
    """``run_killed_study`` in a thread of its own, started when the suite starts; ``result()`` waits for it."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="unips-study-"))
        self._outcome: ResumedStudy | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="killed-study", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = run_killed_study(self.workdir)
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
        _kill_all_in(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
