"""Pictures of one's own through a trained network: COCO panoptic PNG + JSON and overlays, per mode.

    predictor = load_predictor(checkpoint="state.pt")    # or run="latest", or model_uri="models:/x/1"
    files = list_pictures(["photos/", "street.jpg"])
    summary = predict_pictures(predictor, files, Path("outputs/predict"), ["full", "heu"])

Under ``out/<mode>/``: ``panoptic_pred/<id>.png`` and ``panoptic_pred.json`` (COCO panoptic, the dataset's
category ids, so any panoptic tool reads them; ``images[].file_name`` is the picture's path as given) and
``overlays/<id>_overlay.png`` (the segments' colours over the picture). A picture's id is its file name's
stem; a stem met again (``a.png`` and ``a.jpg``, or two folders) gets ``-2``, ``-3``... A file that cannot
be read as a picture is skipped with a warning naming it and counted in the summary.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unips.datasets.pictures import UnreadablePicture, read_picture
from unips.evaluation.export import PanopticExporter, visualization_pictures, write_visualizations
from unips.platform.inference import PanopticPredictor
from unips.progress import progress_bar


def load_predictor(checkpoint: str | None = None, run: str | None = None, model_uri: str | None = None,
                   tracking_uri: str | None = None) -> PanopticPredictor:
    """The network of a checkpoint (a ``state.pt`` or its folder, a path or storage URI), of an MLflow training
    ``run`` (``latest``, its name or id: the final weights in its MLflow model), or of an MLflow model
    (``runs:/<id>/model``, ``models:/<name>/<version>``), given exactly one of them. ``tracking_uri`` is the
    MLflow store of ``run`` and ``model_uri`` (default: ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``)."""
    if sum(source is not None for source in (checkpoint, run, model_uri)) != 1:
        raise ValueError("give exactly one of a checkpoint, an MLflow run or an MLflow model URI")
    if checkpoint is not None:
        return PanopticPredictor.from_checkpoint(checkpoint)
    from unips.platform.tracking import require_store, resolve_tracking_uri, using_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, None, Path.cwd())
    if run is not None:
        from unips.platform.trained_runs import checkpoint_of_run

        with tempfile.TemporaryDirectory() as folder:
            return PanopticPredictor.from_checkpoint(checkpoint_of_run(uri, run, folder))
    import mlflow
    from mlflow.exceptions import MlflowException

    require_store(uri, " to read the model from", "the training")
    try:
        with using_tracking_uri(uri):  # MLflow looks runs:/ and models:/ up in the process's tracking store
            model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise LookupError(f"MLflow model {model_uri} not found in {uri}: {error.message}") from None
    return model.unwrap_python_model().predictor


def picture_ids(files: Sequence[Path]) -> list[str]:
    """One id per file: its stem, with ``-2``, ``-3``... for one taken before."""
    ids: list[str] = []
    taken: set[str] = set()
    for path in files:
        candidate, n = path.stem, 1
        while candidate in taken:  # a loop, not a count: "a-2.png" may come before the second "a"
            n += 1
            candidate = f"{path.stem}-{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


@dataclass
class PredictionSummary:
    """What :func:`predict_pictures` did: pictures predicted, files skipped (with why), folder per mode."""

    predicted: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    out_dirs: dict[str, Path] = field(default_factory=dict)


def predict_pictures(predictor: PanopticPredictor, files: Sequence[Path], out: Path, modes: Sequence[str],
                     *, overlays: bool = True, progress: bool | None = False) -> PredictionSummary:
    """Predict every picture of ``files`` in each of ``modes`` and write them under ``out/<mode>/``.

    ``progress``: a bar as :func:`unips.progress.progress_bar` shows it. The JSON files are written at the end
    (and hold only the pictures predicted); unreadable files are warned about on stderr as they are met.
    """
    modes = predictor.check_modes(modes)  # before anything is written
    summary = PredictionSummary(out_dirs={mode: out / mode for mode in modes})
    exporters = {mode: PanopticExporter(folder, predictor.categories) for mode, folder in summary.out_dirs.items()}
    bar = progress_bar(list(zip(files, picture_ids(files), strict=True)), desc="predicting", progress=progress)
    for path, image_id in bar:
        try:
            image = read_picture(path)
        except UnreadablePicture as error:
            summary.skipped.append((path, str(error)))
            bar.write(f"warning: {error} (skipped)", file=sys.stderr)
            continue
        for mode, answer in predictor(image, modes).items():
            exporters[mode].add(image_id, answer.panoptic, answer.segments_info, file_name=str(path),
                                png_name=f"{image_id}.png")
            if overlays:
                pictures = visualization_pictures(image_id, predictor.categories,
                                                  (answer.panoptic, answer.segments_info), image=image)
                write_visualizations(summary.out_dirs[mode] / "overlays", image_id, pictures)
        summary.predicted += 1
    for exporter in exporters.values():
        exporter.write_json()
    return summary
