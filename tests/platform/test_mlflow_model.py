"""The trained network as an MLflow model: logged into a run the driver made, loaded back in a fresh process,
it answers what the checkpoint answers."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.platform.conftest import tiny_checkpoint
from unips.evaluation.segments import dataset_segments
from unips.models.postprocess import PanopticPostprocessor
from unips.platform.checkpoint import model_from_checkpoint
from unips.platform.mlflow_model import log_panoptic_model
from unips.platform.predict import load_predictor
from unips.platform.tracking import create_run, using_tracking_uri

Answers = dict[str, list[tuple[np.ndarray, list[dict[str, Any]]]]]  # mode -> per picture (ids, segments_info)

# Run in a fresh interpreter: what a user does with the model, nothing of this process carried over.
FRESH = """
import pickle, sys
import mlflow, pandas as pd

uri, model_uris, modes, pictures, out = pickle.load(open(sys.argv[1], "rb"))
mlflow.set_tracking_uri(uri)
frame = pd.DataFrame({"image": pictures})
found = {}
for model_uri in model_uris:
    model = mlflow.pyfunc.load_model(model_uri)
    found[model_uri] = {mode: [(a["panoptic"], a["segments_info"]) for a in model.predict(frame, params={"mode": mode})]
                        for mode in modes}
found["unips imported from"] = sys.modules["unips"].__file__
pickle.dump(found, open(out, "wb"))
"""


def encoded_pictures() -> list[bytes]:
    """Two RGB PNG pictures of different sizes (not multiples of 32), as files' bytes."""
    rng = np.random.default_rng(1)
    pictures = []
    for height, width in ((48, 80), (37, 51)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pictures.append(buffer.getvalue())
    return pictures


def checkpoint_answers(checkpoint: str | Path, pictures: list[bytes], modes: list[str]) -> Answers:
    """The reference: the checkpoint's network and a post-processor, as evaluation runs them."""
    model, cfg, categories, _ = model_from_checkpoint(checkpoint)
    model.eval()
    postprocessor = PanopticPostprocessor(modes, categories.stuff_train_ids, overlap_thresh=cfg.eval.heu_overlap_thresh)
    answers: Answers = {mode: [] for mode in modes}
    for encoded in pictures:
        image = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        (output,) = model([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255])
        for mode, prediction in postprocessor(output).items():
            answers[str(mode)].append((prediction.panoptic.numpy(), dataset_segments(prediction.segments, categories)))
    return answers


def assert_same_answers(found: Answers, expected: Answers, where: str) -> None:
    assert found.keys() == expected.keys(), where
    for mode, pictures in expected.items():
        assert len(found[mode]) == len(pictures), (where, mode)
        for k, ((ids, segments), (want_ids, want_segments)) in enumerate(zip(found[mode], pictures, strict=True)):
            assert ids.dtype == np.int32 and np.array_equal(ids, want_ids), (where, mode, k)
            assert segments == want_segments, (where, mode, k)


def assert_model_predicts_as_checkpoint(uri: str, model_uris: list[str], checkpoint: str | Path, modes: list[str],
                                        folder: Path) -> None:
    """Load each of ``model_uris`` in a fresh Python process and compare its answers on two pictures, in each
    of ``modes``, with the checkpoint's."""
    pictures = encoded_pictures()
    request, out = folder / "request.pkl", folder / "found.pkl"
    request.write_bytes(pickle.dumps((uri, model_uris, modes, pictures, str(out))))
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", FRESH, str(request)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = pickle.loads(out.read_bytes())
    # The model carries the code that matches its weights: a fresh process imports that copy.
    assert Path(found.pop("unips imported from")).parts[-3:] == ("code", "unips", "__init__.py")
    expected = checkpoint_answers(checkpoint, pictures, modes)
    for model_uri in model_uris:
        assert_same_answers(found[model_uri], expected, model_uri)


@pytest.mark.slow
def test_a_logged_model_answers_as_its_checkpoint_in_a_fresh_process(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # A run as the training driver makes one: with MlflowClient, never started by the fluent API.
    run_id = create_run(uri, "unips-model-test", "tiny", {"seed": 0}, artifact_root=tmp_path / "mlruns")
    client = MlflowClient(uri)
    info = log_panoptic_model(uri, run_id, checkpoint, "full", step=1, register_as="unips-tiny")
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # logging the model left the run to the training
    (logged,) = client.search_logged_models([run.info.experiment_id])  # in the run's experiment
    assert logged.name == "model" and logged.source_run_id == run_id and logged.model_id == info.model_id
    assert [output.model_id for output in run.outputs.model_outputs] == [logged.model_id]
    assert info.signature.inputs.input_names() == ["image"] and info.signature.params.params[0].name == "mode"
    with using_tracking_uri(uri):  # MLflow resolves runs:/<id>/model through the process's tracking URI
        requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model/requirements.txt",
                                                                dst_path=str(tmp_path))).read_text()
    assert f"torch=={version('torch')}" in requirements.split() and "unips" not in requirements
    assert_model_predicts_as_checkpoint(uri, [f"runs:/{run_id}/model", "models:/unips-tiny/1"], checkpoint,
                                        ["full", "amx", "heu"], tmp_path)

    # experiments/predict.py's sources: the run (the weights in its model, or where earlier versions logged
    # them, checkpoint/state.pt), or the MLflow model.
    earlier = create_run(uri, "unips-model-test", "earlier", {"seed": 0})
    client.log_artifact(earlier, str(checkpoint), "checkpoint")
    picture = np.asarray(Image.open(io.BytesIO(encoded_pictures()[0])))
    expected = checkpoint_answers(checkpoint, encoded_pictures()[:1], ["heu"])["heu"]
    for source in ({"run": run_id}, {"run": earlier}, {"model_uri": "models:/unips-tiny/1"}):
        answer = load_predictor(**source, tracking_uri=uri)(picture, ["heu"])["heu"]
        assert_same_answers({"heu": [(answer.panoptic, answer.segments_info)]}, {"heu": expected}, str(source))
    bare = create_run(uri, "unips-model-test", "unfinished", {})
    with pytest.raises(FileNotFoundError, match=f"training run {bare} \\(unfinished\\) has no final weights "
                                                r"\(model/artifacts/state\.pt\)"):
        load_predictor(run=bare, tracking_uri=uri)
    with pytest.raises(LookupError, match="MLflow model models:/nothing/1 not found"):
        load_predictor(model_uri="models:/nothing/1", tracking_uri=uri)
