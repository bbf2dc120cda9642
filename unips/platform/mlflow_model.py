"""The trained network as an MLflow model: a pyfunc that answers panoptic id maps for pictures.

    model = mlflow.pyfunc.load_model("runs:/<run_id>/model")  # or "models:/<name>/<version>"
    pictures = pd.DataFrame({"image": [Path("street.jpg").read_bytes(), Path("b.png").read_bytes()]})
    answers = model.predict(pictures, params={"mode": "heu"})
    answers[0]["panoptic"]       # (H, W) int32 segment ids of the first picture, 0 = void
    answers[0]["segments_info"]  # id, category_id (the dataset's id), isthing, score, area, bbox

**Input**: a pandas DataFrame with one column ``image`` holding encoded picture files (the bytes of a PNG,
JPEG, ... of any size; greyscale, RGBA and 16-bit ones are made RGB as ``experiments/predict.py`` makes
them). Why files, not ``(H, W, 3)`` arrays: MLflow's schemas describe a column of binary values natively
(the REST endpoint of ``mlflow models serve`` takes them base64-encoded), whereas a tensor spec fixes one
shape for the whole batch and pictures differ in size. **Params**: ``mode``, one of ``full`` (argmax of
P), ``amx`` (argmax of Psi), ``heu`` (heuristic merge), default the training's first ``eval.modes``.
**Output**: one dict per row, ``{"panoptic", "segments_info"}``, the COCO panoptic answer the exporter
writes (:mod:`unips.platform.inference`).

The model holds the final weights (``artifacts/state.pt``, the checkpoint format without the optimizer)
and a copy of the ``unips`` package (``code/unips``): loading it rebuilds the network with
:func:`~unips.platform.checkpoint.model_from_checkpoint` and needs no network access. Its recorded
requirements are the packages inference imports, pinned to the versions that trained it.
"""

from __future__ import annotations

import io
import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from PIL import Image

import unips
from unips.platform.tracking import using_tracking_uri

MODEL_NAME = "model"  # the model's name in its run: runs:/<run_id>/model
WEIGHTS = "weights"  # its artifact: the state.pt the network is rebuilt from
# What loading and predicting import (the copy of unips aside); not Ray, not the evaluation's numba.
REQUIREMENTS = ("torch", "torchvision", "numpy", "scipy", "pillow", "pandas", "pydantic", "pyyaml", "pyarrow",
                "mlflow")


class PanopticPyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper: ``load_context`` rebuilds the network, ``predict`` answers per picture."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from unips.platform.inference import PanopticPredictor  # torch, on load only

        self.predictor = PanopticPredictor.from_checkpoint(context.artifacts[WEIGHTS])

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``model_input``: column ``image``, one encoded picture file per row; ``params``: ``mode``.
        Returns per row ``{"panoptic": (H, W) int32, "segments_info": [...]}`` (dataset category ids)."""
        from unips.datasets.pictures import read_picture

        mode = (params or {}).get("mode") or self.predictor.default_mode
        answers = []
        for row, encoded in enumerate(model_input["image"]):
            try:
                image = read_picture(bytes(encoded))
            except ValueError as error:
                raise ValueError(f"row {row} of the input: {error}") from None
            answer = self.predictor(image, [mode])[mode]
            answers.append({"panoptic": answer.panoptic, "segments_info": answer.segments_info})
        return answers


def signature(default_mode: str) -> ModelSignature:
    """Pictures in (column ``image``, binary), ``mode`` as a parameter; the output is left undescribed (one dict
    per picture, an array and a list of segments, which MLflow's schemas do not express)."""
    # A ParamSpec has a type and a default, no list of choices: predict names a mode the network lacks.
    return ModelSignature(inputs=Schema([ColSpec(DataType.binary, "image")]),
                          params=ParamSchema([ParamSpec("mode", DataType.string, default_mode)]))


def example_input(size: tuple[int, int] = (64, 64)) -> pd.DataFrame:
    """A one-row input: a mid-grey PNG of ``size`` (height, width), small so that MLflow's check of the example
    (it loads the model and predicts it) costs little."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 128, dtype=np.uint8)).save(buffer, format="PNG")
    return pd.DataFrame({"image": [buffer.getvalue()]})


def pinned_requirements() -> list[str]:
    """:data:`REQUIREMENTS` at this environment's versions (what ``pip install`` would need to serve it)."""
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_panoptic_model(uri: str, run_id: str, weights: str | os.PathLike[str], default_mode: str, step: int = 0,
                       register_as: str | None = None) -> ModelInfo:
    """Log the network whose checkpoint is ``weights`` as the model ``model`` of the run ``run_id`` (a
    LoggedModel, ``runs:/<run_id>/model``), registered as a new version of ``register_as`` if given."""
    started = time.perf_counter()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    with using_tracking_uri(uri):
        # Made here, in the run's experiment: Model.log would put it in the process's current experiment
        # (MLflow's Default one here, which no run of ours is in).
        logged = client.create_logged_model(run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                            params=run.data.params)
        # Model.log, not mlflow.pyfunc.log_model: it takes the run by id. The driver made the run with
        # MlflowClient; mlflow.start_run(run_id) would end it (FINISHED) on leaving, mid-training.
        info = Model.log(
            artifact_path=None, name=MODEL_NAME, flavor=mlflow.pyfunc, run_id=run_id, model_id=logged.model_id,
            step=step,
            python_model=str(Path(__file__).with_name("mlflow_model_code.py")), artifacts={WEIGHTS: str(weights)},
            code_paths=[str(Path(unips.__file__).parent)],  # the code that matches the weights
            signature=signature(default_mode), input_example=(example_input(), {"mode": default_mode}),
            pip_requirements=pinned_requirements(),  # explicit: inferring them imports and runs the model
            registered_model_name=register_as)
    print(f"logged the MLflow model runs:/{run_id}/{MODEL_NAME} in {time.perf_counter() - started:.1f} s"
          + (f", registered as {register_as} version {info.registered_model_version}" if register_as else ""),
          flush=True)
    return info
