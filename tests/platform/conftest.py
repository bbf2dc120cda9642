"""A real local Ray instance shared by the training tests, an S3-compatible server, a small training
configuration, and the two long pieces of work started in the background as soon as their tests are selected: the pinned
smoke training and the killed study."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import S3Server
from tests.test_readme_commands import readme_command
from unips.config import Config, load_config

# Small enough for seconds per step on 2 CPU cores, with every part of the network present.
TINY = [
    "model.backbone.fpn_channels=16", "model.semantic.channels=16", "model.panoptic.affinity_channels=8",
    "model.detector.box_head_dim=32", "model.detector.mask_head_channels=8",
    "data.synthetic.num_train=8", "data.synthetic.num_val=2", "data.loader_workers=0",
    "optim.images_per_batch=2", "optim.warmup_iters=1", "optim.panoptic_loss_start=0", "optim.panoptic_loss_ramp=0",
    "eval.period=0", "eval.max_images=2",
    "eval.num_visualizations=1", "platform.log_period=1", "platform.cpus_per_worker=1",
]


def tiny_config(root: Path, *overrides: str) -> Config:
    """The smoke preset shrunk, with its synthetic data under ``root``."""
    return load_config("smoke", [*TINY, f"data.root={root / 'data'}", "data.synthetic.generate=true", *overrides])


def tiny_checkpoint(folder: Path, *overrides: str) -> Path:
    """A tiny network with random weights (seed 0) saved as a training's final weights, ``folder/state.pt``:
    what the predict command and the MLflow model read, without a training. Every detection is kept
    (``eval.score_thresh=0``), so that random weights still answer with thing segments."""
    import torch

    from unips.datasets.synthetic import CATEGORIES
    from unips.models.build import build_model
    from unips.platform.checkpoint import save_state

    cfg = tiny_config(folder, "eval.score_thresh=0.0", *overrides)
    torch.manual_seed(0)
    model = build_model(cfg, CATEGORIES)
    return save_state(folder, {"model": model.state_dict(), "step": 1, "config": cfg.model_dump(mode="json"),
                               "categories": CATEGORIES.to_json()})


def start_local_ray() -> None:
    """The suite's one real local Ray instance (2 CPUs), started at its first use."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        ray.init(num_cpus=2, log_to_driver=False)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """moto's S3-compatible server on 127.0.0.1 with an empty bucket, for the module's tests."""
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """The suite's local Ray instance, for the training tests."""
    start_local_ray()
    yield
    import ray

    ray.shutdown()


ROOT = Path(__file__).resolve().parents[2]
ACCURACY_TEST = "tests/platform/test_accuracy.py::test_smoke_preset_reaches_its_pinned_metrics"
SMOKE_TRAINING = pytest.StashKey["SmokeTraining"]()
KILLED_STUDY = pytest.StashKey["BackgroundStudy"]()


class SmokeTraining:
    """The README's ``experiments/train.py --preset smoke``, run as a user runs it, in a folder of its own.

    It trains on one thread in its own process and its own local Ray instance, with its own
    MLflow store, while the rest of the suite runs.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="unips-accuracy-"))
        self.uri = f"sqlite:///{self.folder}/mlflow.db"
        self.log = self.folder / "train.log"
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri}
        env.pop("RAY_ADDRESS", None)
        # The README's command as written, from a folder that has the repository's experiments/ as a user's
        # clone has (the rest of the folder is the training's own: data, ray_results, mlflow.db).
        (self.folder / "experiments").symlink_to(ROOT / "experiments")
        command = shlex.split(readme_command(".venv/bin/python experiments/train.py"))
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def wait(self, timeout_s: float = 3600) -> str:
        """Wait for the training to end; its MLflow tracking URI, or a failure with the log's tail."""
        code = self.process.wait(timeout_s)
        if code != 0:
            tail = self.log.read_text()[-4000:]
            pytest.fail(f"experiments/train.py --preset smoke exited with {code}; the end of its log:\n{tail}")
        return self.uri

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the two long pieces of work in the background and move the tests that wait for them last,
    so that the rest of the suite runs while they do: the smoke training (accuracy test) and the killed
    study on two Ray nodes (``test_ablation.py``), each beside the suite's own Ray instance."""
    if config.option.collectonly:  # listing the tests runs none of them
        return
    accuracy = [item for item in items if "smoke_training" in getattr(item, "fixturenames", ())]
    study = [item for item in items if "resumed_study" in getattr(item, "fixturenames", ())]
    if accuracy:
        config.stash[SMOKE_TRAINING] = SmokeTraining()
    if study:
        from tests.platform.killed_study import BackgroundStudy

        config.stash[KILLED_STUDY] = BackgroundStudy()
    items[:] = [item for item in items if item not in accuracy and item not in study] + study + accuracy


def pytest_unconfigure(config: pytest.Config) -> None:
    for key in (SMOKE_TRAINING, KILLED_STUDY):
        work = config.stash.get(key, None)
        if work is not None:
            work.close()


@pytest.fixture
def smoke_training(pytestconfig: pytest.Config) -> SmokeTraining:
    """The background smoke training (started at collection)."""
    return pytestconfig.stash[SMOKE_TRAINING]
