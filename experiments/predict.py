"""Predict panoptic segmentations of your own pictures (no ground truth needed).

    python experiments/predict.py --checkpoint state.pt photos/ --out outputs/predict
    python experiments/predict.py --run latest street.jpg park.png --mode full heu
    python experiments/predict.py --model models:/unips-smoke/1 photos/ --tracking-uri http://127.0.0.1:5000

The network comes from ``--checkpoint`` (a ``state.pt`` or a Ray Train checkpoint folder: a path or a
storage URI), from ``--run`` (a training run's final weights, in its MLflow model: ``latest``, the run's name
or id) or from ``--model`` (an MLflow model URI: ``runs:/<run id>/model``, ``models:/<name>/<version>``).
Folders are searched for pictures (PNG, JPEG, BMP, TIFF, WebP..., subfolders included); greyscale, RGBA
and 16-bit pictures are made RGB. For each mode, ``<out>/<mode>/panoptic_pred/`` + ``panoptic_pred.json``
hold COCO panoptic predictions in the dataset's category ids, ``<out>/<mode>/overlays/`` the segments
drawn over each picture. A file that cannot be read is skipped with a warning naming it; the exit status
is 0 when at least one picture was predicted, else 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unips.commands import add_mode_argument, add_workdir_argument, enter_workdir, run_command
from unips.datasets.pictures import list_pictures
from unips.platform.predict import load_predictor, predict_pictures

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint folder or state.pt: a path or a URI")
    source.add_argument("--run", help="an MLflow training run: 'latest', its name or its id (its final weights)")
    source.add_argument("--model", help="MLflow model URI: runs:/<run id>/model or models:/<name>/<version>")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI of --run / --model (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("pictures", nargs="+", type=Path, help="picture files and folders of pictures")
    add_mode_argument(parser, "inference modes, after the pictures (default: the training's first mode)")
    parser.add_argument("--out", type=Path, default=Path("outputs/predict"))
    parser.add_argument("--no-overlays", dest="overlays", action="store_false", help="only the COCO panoptic files")
    add_workdir_argument(parser)
    args = parser.parse_args()
    enter_workdir(args.workdir)

    files = list_pictures(args.pictures)
    if not files:
        raise FileNotFoundError(f"no pictures in {', '.join(map(str, args.pictures))}")
    predictor = load_predictor(args.checkpoint, args.run, args.model, args.tracking_uri)
    summary = predict_pictures(predictor, files, args.out, args.modes or [predictor.default_mode],
                               overlays=args.overlays, progress=None)
    print(f"predicted {summary.predicted} of {len(files)} pictures on {predictor.device}; "
          f"skipped {len(summary.skipped)} unreadable file(s)"
          + "".join(f"\n  {path}" for path, _ in summary.skipped))
    for mode, folder in summary.out_dirs.items():
        print(f"{mode}: {folder.resolve()}")
    if summary.predicted == 0:
        raise ValueError(f"none of the {len(files)} files could be read as a picture")
    return 0


if __name__ == "__main__":
    run_command(main)
