"""Training on a real local Ray instance with a real MLflow store (and a real MLflow server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.platform.conftest import ROOT, tiny_config
from tests.platform.test_mlflow_model import assert_model_predicts_as_checkpoint
from tests.servers import MlflowServer, S3Server
from unips.platform import storage
from unips.platform.checkpoint import STATE_FILE, load_state
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


def _wait_until_logged(uri: str, run_name: str, step: int, timeout_s: float = 300) -> int | None:
    """Poll MLflow until the run named ``run_name`` has logged ``loss/total`` at ``step`` or later; the last
    step logged then, or None after ``timeout_s``."""
    from unips.platform.tracking import find_runs

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = find_runs(uri, {"unips.run": run_name})
        steps = [logged for logged, _ in _history(uri, runs[0].info.run_id, "loss/total")] if runs else []
        if steps and steps[-1] >= step:
            return steps[-1]
        time.sleep(0.2)
    return None


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

        step = _wait_until_logged(self.uri, self.run_name, self.after_step)
        if step is None:
            return
        # This test's Ray instance by address: the accuracy test's training runs its own beside it.
        (worker,) = list_actors(address=ray.get_runtime_context().gcs_address,
                                filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        os.kill(worker.pid, signal.SIGKILL)
        self.killed_at = step


def test_a_killed_worker_restarts_from_the_last_checkpoint_and_repeats_the_uninterrupted_losses(
    local_ray: None, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config(tmp_path, "optim.max_iter=6", "optim.steps=[6]", "optim.checkpoint_period=2",
                      "platform.max_failures=1", "eval.max_images=1", "eval.modes=[amx]", "seed=11",
                      "platform.system_metrics_s=2")
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
    # Each evaluation's pictures at its step (MLflow's image view), once: the restart logs no step twice.
    assert _picture_steps(uri, uninterrupted.mlflow_run_id) == {"amx~000001": [2, 4, 6]}
    assert _picture_steps(uri, restarted.mlflow_run_id) == {"amx~000001": [6]}
    # MLflow's system metrics, sampled by rank 0 every 2 s while it trained.
    usage = _history(uri, uninterrupted.mlflow_run_id, "system/cpu_utilization_percentage")
    assert usage and all(0 <= value <= 100 for _, value in usage)
    table = json.loads(Path(MlflowClient(uri).download_artifacts(uninterrupted.mlflow_run_id, "per_class/amx.json",
                                                                  str(tmp_path))).read_text())
    rows = [dict(zip(table["columns"], values)) for values in table["data"]]
    expected = load_state(uninterrupted.checkpoint)["categories"]
    assert [row["name"] for row in rows] == [category["name"] for category in expected]
    assert {"PQ", "SQ", "RQ", "TP", "FP", "FN"} <= set(table["columns"])


def _picture_steps(uri: str, run_id: str) -> dict[str, list[int]]:
    """Image key (``/`` as MLflow files it, ``~``) -> the steps it was logged at, from the run's artifacts."""
    steps = defaultdict(list)
    for artifact in MlflowClient(uri).list_artifacts(run_id, "images"):
        name = artifact.path.removeprefix("images/")
        if name.endswith(".png"):  # beside each, MLflow keeps a compressed .webp for the UI
            key, _, step, *_ = name.split("+")
            steps[key].append(int(step))
    return {key: sorted(found) for key, found in steps.items()}


def test_a_stopped_run_in_a_bucket_resumes_with_its_own_config_past_a_corrupt_checkpoint(
    local_ray: None, tmp_path: Path, s3: S3Server
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Ray Train's storage in an S3-compatible bucket, named by a URI that Ray gets untouched.
    bucket = s3.uri("results")
    # The backbone frozen: no momentum for its weights, checkpoints of ~50 MB instead of 136 through moto.
    frozen = ["model.backbone.freeze_at=5", "platform.max_failures=0", f"platform.storage_path={bucket}"]
    cfg = tiny_config(tmp_path, "optim.max_iter=4", "optim.steps=[4]", "optim.checkpoint_period=1", *frozen)
    # Stopped before step 3 (no restarts allowed): the checkpoints of steps 1 and 2 are left.
    with pytest.raises(Exception, match="failure injected at step 3"):
        launch_training(cfg, workdir=tmp_path, tracking_uri=uri, train_loop=failing_once_before(3, tmp_path / "m"))
    (stopped,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name(
        cfg.platform.experiment_name).experiment_id])
    assert stopped.info.status == "FAILED"
    run_dir = storage.join(bucket, stopped.data.tags["unips.run"])
    assert not (tmp_path / "ray_results").exists()
    states = [key for key in s3.keys(f"results/{stopped.data.tags['unips.run']}") if key.endswith(STATE_FILE)]
    assert len(states) == 2 and all("/checkpoint_" in key for key in states), states
    # Another schedule would half-apply (the checkpoint's scheduler, the new length): refused, keys named.
    longer = tiny_config(tmp_path, "optim.max_iter=6", "optim.steps=[6]", "optim.checkpoint_period=2", *frozen)
    with pytest.raises(ValueError, match=r"optim\.max_iter 4 -> 6, optim\.steps \[4\] -> \[6\]"):
        launch_training(longer, workdir=tmp_path, resume=True)
    # The newest checkpoint is then cut short in the bucket (a killed upload).
    newest = storage.join(storage.subfolders(run_dir, "checkpoint_")[-1], STATE_FILE)
    storage.write_bytes(newest, storage.read_bytes(newest)[:1000])
    second = launch_training(cfg, workdir=tmp_path, resume=True)
    assert second.run_name == stopped.data.tags["unips.run"] and second.mlflow_run_id == stopped.info.run_id
    assert second.metrics["step"] == 4 and second.run_dir == run_dir
    # It went on from step 1, naming the file it passed over; steps 2-4 trained again, each logged once.
    run = MlflowClient(uri).get_run(second.mlflow_run_id)
    assert run.data.tags["unips.unreadable_checkpoint"] == newest
    assert [step for step, _ in _history(uri, second.mlflow_run_id, "loss/total")] == [1, 2, 3, 4]
    assert run.info.status == "FINISHED"
    with pytest.raises(FileExistsError, match="pass --resume"):
        launch_training(cfg, workdir=tmp_path, run_name=second.run_name, tracking_uri=uri)
    # The final checkpoint, in the bucket, evaluates as a user evaluates it.
    assert second.checkpoint is not None and second.checkpoint.startswith("s3://")
    assert load_state(second.checkpoint)["step"] == 4
    out = tmp_path / "eval"
    folder = storage.parent_of(second.checkpoint)
    done = subprocess.run([sys.executable, "experiments/evaluate.py", "--checkpoint", folder, "--mode", "amx",
                           "--max-images", "1", "--num-visualizations", "0", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint at step 4" in done.stdout and "amx/PQ" in (out / "metrics.json").read_text()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


class Outage(threading.Thread):
    """Once the run named ``run_name`` has logged step ``after_step``, crashes the tracking server, waits
    ``seconds`` and starts it again on the same port and store."""

    def __init__(self, server: MlflowServer, run_name: str, after_step: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.server, self.run_name, self.after_step, self.seconds = server, run_name, after_step, seconds
        self.down_at_step: int | None = None  # the last step logged when the server went down
        self.down_at = self.up_at = 0.0  # time.monotonic() when it went down and answered again

    def run(self) -> None:
        step = _wait_until_logged(self.server.uri, self.run_name, self.after_step)
        if step is None:
            return
        self.server.crash()
        self.down_at, self.down_at_step = time.monotonic(), step
        time.sleep(self.seconds)
        self.server.start()
        self.up_at = time.monotonic()


def test_ddp_training_rides_out_a_tracking_server_outage(local_ray: None, tmp_path: Path,
                                                          mlflow_server: MlflowServer) -> None:
    uri = mlflow_server.uri
    cfg = tiny_config(tmp_path, "platform.num_workers=2", "optim.max_iter=4", "optim.steps=[4]",
                      "optim.checkpoint_period=2", "platform.register_model=unips-ddp")
    # The server crashes once step 1 is logged and answers again some 10 s later, after its restart
    # (docs/training.md: rank 0 waits inside MLflow's HTTP retries, the other rank at the next gradient
    # all-reduce). Longer outages only wait for a later retry (at 28, 60, 124 s): wall time, no new path.
    outage = Outage(mlflow_server, "ddp", after_step=1, seconds=2)
    outage.start()
    outcome = launch_training(cfg, workdir=tmp_path, run_name="ddp", tracking_uri=uri)
    ended_at = time.monotonic()
    outage.join()
    assert outage.down_at_step is not None and outage.down_at_step < 4, outage.down_at_step  # mid-training
    assert ended_at > outage.up_at, "the training did not wait for the server"
    print(f"outage: down after step {outage.down_at_step}, answered again {outage.up_at - outage.down_at:.1f} s "
          f"later, training ended {ended_at - outage.up_at:.1f} s after that")
    # Each rank trains on its own shard; only gradient averaging keeps the weights equal.
    assert outcome.metrics["replica_max_abs_diff"] == 0.0
    assert load_state(outcome.checkpoint)["step"] == 4
    client = MlflowClient(uri)
    run = client.get_run(outcome.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.max_iter"] == "4" and run.data.params["model.backbone.depth"] == "18"
    for key in ("loss/total", "lr"):  # no step lost or logged twice across the outage
        assert [step for step, _ in _history(uri, run.info.run_id, key)] == [1, 2, 3, 4], key
    assert "full/PQ" in run.data.metrics and "amx/AP_box" not in run.data.metrics  # AP once, first mode
    files = set()
    for folder in ("", "per_class"):
        files |= {a.path for a in client.list_artifacts(run.info.run_id, folder) if not a.is_dir}
    assert {"config.yaml", "per_class/per_class_full.csv", "per_class/full.json"} <= files
    assert not client.list_artifacts(run.info.run_id, "checkpoint")  # the final weights once: in the model
    # The final network as the run's MLflow model, registered under the configured name, through the server:
    # in a fresh process it answers as the checkpoint does.
    assert_model_predicts_as_checkpoint(uri, [f"runs:/{run.info.run_id}/model", "models:/unips-ddp/1"],
                                        outcome.checkpoint, [str(mode) for mode in cfg.eval.modes], tmp_path)
    assert _picture_steps(uri, run.info.run_id) == {f"{mode}~000001": [4] for mode in ("full", "amx", "heu")}
    config_yaml = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    assert "max_iter: 4" in config_yaml.read_text()
    assert (tmp_path / "server-artifacts").is_dir() and not (tmp_path / "mlruns").exists()
    assert run.data.tags["unips.run"] == outcome.run_name == storage.name_of(outcome.run_dir)
