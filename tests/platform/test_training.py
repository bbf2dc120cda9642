"""Training on a real local Ray instance with a real MLflow store (and a real MLflow server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.platform.conftest import tiny_config
from tests.servers import stop_session
from unips.platform.checkpoint import load_state
from unips.platform.launch import launch_training

pytestmark = pytest.mark.slow


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def failing_once_before(step: int, marker: Path) -> Callable[[dict[str, Any]], None]:
    """The standard training loop, whose first attempt raises when it is about to train ``step``."""

    def loop(config: dict[str, Any]) -> None:
        import unips.platform.train_loop as train_loop  # in the Ray worker

        original = train_loop.train_step

        def train_step(*args: Any, step: int, **kwargs: Any) -> Any:
            if step == failing_step and not marker.exists():
                marker.touch()
                raise RuntimeError(f"failure injected at step {step} (fault-tolerance test)")
            return original(*args, step=step, **kwargs)

        train_loop.train_step = train_step
        try:
            train_loop.train_loop_per_worker(config)
        finally:
            train_loop.train_step = original

    failing_step = step
    return loop


class WorkerKiller(threading.Thread):
    """Once the run named ``run_name`` has logged step ``after_step``, SIGKILLs its Ray Train worker process
    (found through Ray's state API), as a crash or the kernel's OOM killer would."""

    def __init__(self, uri: str, run_name: str, after_step: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.run_name, self.after_step = uri, run_name, after_step
        self.killed_at: int | None = None  # the last step logged when the kill came

    def run(self) -> None:
        import ray
        from ray.util.state import list_actors

        from unips.platform.tracking import find_runs

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = find_runs(self.uri, {"unips.run": self.run_name})
            steps = [step for step, _ in _history(self.uri, runs[0].info.run_id, "loss/total")] if runs else []
            if steps and steps[-1] >= self.after_step:
                # This test's Ray instance by address: the accuracy test's training runs its own beside it.
                (worker,) = list_actors(address=ray.get_runtime_context().gcs_address,
                                        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
                os.kill(worker.pid, signal.SIGKILL)
                self.killed_at = steps[-1]
                return
            time.sleep(0.2)


def test_a_killed_worker_restarts_from_the_last_checkpoint_and_repeats_the_uninterrupted_losses(
    local_ray: None, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config(tmp_path, "optim.max_iter=6", "optim.steps=[6]", "optim.checkpoint_period=2",
                      "platform.max_failures=1", "eval.max_images=1", "eval.modes=[amx]", "seed=11")
    # This run also evaluates every 2 steps: evaluation must not change what training draws next.
    evaluating = cfg.model_copy(deep=True)
    evaluating.eval.period = 2
    uninterrupted = launch_training(evaluating, workdir=tmp_path, run_name="uninterrupted", tracking_uri=uri)
    # The worker process is killed from outside once step 3 is logged (after the step-2 checkpoint).
    killer = WorkerKiller(uri, "restarted", after_step=3)
    killer.start()
    restarted = launch_training(cfg, workdir=tmp_path, run_name="restarted", tracking_uri=uri)
    killer.join()
    assert killer.killed_at is not None and killer.killed_at < 6, killer.killed_at
    assert restarted.metrics["step"] == 6 and load_state(restarted.checkpoint)["step"] == 6
    for key in ("loss/total", "loss/semantic", "loss/panoptic", "loss/box_cls", "lr"):
        again = _history(uri, restarted.mlflow_run_id, key)
        assert [step for step, _ in again] == [1, 2, 3, 4, 5, 6], key  # each step logged once
        # One thread, the same seed: the restart restores weights, optimiser, data order and random state
        # exactly, so every step equals that of the run that was never killed (and evaluated on the way).
        assert again == _history(uri, uninterrupted.mlflow_run_id, key), key
    assert [step for step, _ in _history(uri, restarted.mlflow_run_id, "amx/PQ")] == [6]
    assert [step for step, _ in _history(uri, uninterrupted.mlflow_run_id, "amx/PQ")] == [2, 4, 6]
    assert MlflowClient(uri).get_run(restarted.mlflow_run_id).info.status == "FINISHED"


def test_a_stopped_run_resumes_with_its_own_config_past_a_corrupt_checkpoint(local_ray: None, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config(tmp_path, "optim.max_iter=4", "optim.steps=[4]", "optim.checkpoint_period=1",
                      "platform.max_failures=0")
    # Stopped before step 3 (no restarts allowed): the checkpoints of steps 1 and 2 are left.
    with pytest.raises(Exception, match="failure injected at step 3"):
        launch_training(cfg, workdir=tmp_path, tracking_uri=uri, train_loop=failing_once_before(3, tmp_path / "m"))
    (stopped,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name(
        cfg.platform.experiment_name).experiment_id])
    assert stopped.info.status == "FAILED"
    # Another schedule would half-apply (the checkpoint's scheduler, the new length): refused, keys named.
    longer = tiny_config(tmp_path, "optim.max_iter=6", "optim.steps=[6]", "optim.checkpoint_period=2",
                         "platform.max_failures=0")
    with pytest.raises(ValueError, match=r"optim\.max_iter 4 -> 6, optim\.steps \[4\] -> \[6\]"):
        launch_training(longer, workdir=tmp_path, resume=True)
    # The newest checkpoint is then cut short on disk (a full disk, a killed copy).
    newest = max((tmp_path / "ray_results" / stopped.data.tags["unips.run"]).glob("checkpoint_*/state.pt"))
    newest.write_bytes(newest.read_bytes()[:1000])
    second = launch_training(cfg, workdir=tmp_path, resume=True)
    assert second.run_name == stopped.data.tags["unips.run"] and second.mlflow_run_id == stopped.info.run_id
    assert second.metrics["step"] == 4
    # It went on from step 1, naming the file it passed over; steps 2-4 trained again, each logged once.
    run = MlflowClient(uri).get_run(second.mlflow_run_id)
    assert run.data.tags["unips.unreadable_checkpoint"] == str(newest)
    assert [step for step, _ in _history(uri, second.mlflow_run_id, "loss/total")] == [1, 2, 3, 4]
    assert run.info.status == "FINISHED"
    with pytest.raises(FileExistsError, match="pass --resume"):
        launch_training(cfg, workdir=tmp_path, run_name=second.run_name, tracking_uri=uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1, proxying artifacts into ``tmp_path``."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # MLflow's job runner (six consumer processes for GenAI jobs) is not what trainings use.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server on {uri} did not start") from None
                time.sleep(0.5)
        yield uri
    finally:
        stop_session(server)


def test_ddp_training_against_a_tracking_server(local_ray: None, tmp_path: Path, mlflow_server: str) -> None:
    cfg = tiny_config(tmp_path, "platform.num_workers=2", "optim.max_iter=2", "optim.steps=[2]",
                      "optim.checkpoint_period=2")
    outcome = launch_training(cfg, workdir=tmp_path, tracking_uri=mlflow_server)
    # Each rank trains on its own shard; only gradient averaging keeps the weights equal.
    assert outcome.metrics["replica_max_abs_diff"] == 0.0
    assert load_state(outcome.checkpoint)["step"] == 2
    client = MlflowClient(mlflow_server)
    run = client.get_run(outcome.mlflow_run_id)
    assert run.data.params["optim.max_iter"] == "2" and run.data.params["model.backbone.depth"] == "18"
    assert [step for step, _ in _history(mlflow_server, run.info.run_id, "loss/total")] == [1, 2]
    assert "full/PQ" in run.data.metrics and "amx/AP_box" not in run.data.metrics  # AP once, first mode
    files = set()
    for folder in ("", "checkpoint", "per_class"):
        files |= {a.path for a in client.list_artifacts(run.info.run_id, folder) if not a.is_dir}
    assert {"config.yaml", "checkpoint/state.pt", "per_class/per_class_full.csv"} <= files
    assert client.list_artifacts(run.info.run_id, "visualizations/full")
    config_yaml = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    assert "max_iter: 2" in config_yaml.read_text()
    assert (tmp_path / "server-artifacts").is_dir() and not (tmp_path / "mlruns").exists()
    assert run.data.tags["unips.run"] == outcome.run_name == outcome.run_dir.name
