"""Evaluate a trained checkpoint and export its predictions.

    python experiments/evaluate.py --checkpoint ray_results/<run>/checkpoint_<...> --mode full amx heu
    python experiments/evaluate.py --checkpoint state.pt --mode heu --trim-stuff --out outputs/eval
    python experiments/evaluate.py --run latest      # the newest finished training in ./mlflow.db

``--checkpoint`` is a Ray Train checkpoint folder or its ``state.pt`` (``--run`` fetches an MLflow training
run's final ``state.pt``, from the run's MLflow model); a local path or a storage URI
(``s3://bucket/ray_results/<run>/checkpoint_<...>``, any filesystem pyarrow knows). For each mode, predictions are
written to ``<out>/<mode>/panoptic_pred/`` + ``panoptic_pred.json`` (COCO panoptic,
the dataset's category ids: any panoptic tool can score them) with pictures of ground
truth against prediction in ``<out>/<mode>/visualizations/``; ``<out>/metrics.json``
and ``<out>/per_class_<mode>.csv`` hold the scores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from pydantic import ValidationError

from unips.commands import add_mode_argument, run_command
from unips.config import Config
from unips.datasets.build import build_dataset
from unips.platform.checkpoint import model_from_checkpoint
from unips.platform.evaluate import evaluate_as_configured
from unips.platform.tracking import resolve_tracking_uri
from unips.platform.trained_runs import checkpoint_of_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint folder or state.pt: a path or a URI")
    source.add_argument("--run", help="an MLflow training run: 'latest', its name or its id (its final weights)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI for --run (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    add_mode_argument(parser, "inference modes (default: the run's eval.modes)")
    trim = parser.add_mutually_exclusive_group()
    trim.add_argument("--trim-stuff", dest="trim_stuff", action="store_true", default=None,
                      help="small stuff segments to void (paper App. C)")
    trim.add_argument("--no-trim-stuff", dest="trim_stuff", action="store_false")
    parser.add_argument("--split", default=None, help="dataset split (default: the run's validation split)")
    parser.add_argument("--data-root", type=Path, default=None, help="dataset folder, if not where the run had it")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--num-visualizations", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("outputs/eval"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        if args.run is not None:
            uri = resolve_tracking_uri(args.tracking_uri, None, Path.cwd())
            args.checkpoint = str(checkpoint_of_run(uri, args.run, folder))
        model, cfg, categories, step = model_from_checkpoint(args.checkpoint)
    if args.modes:
        cfg.eval.modes = args.modes
    if args.trim_stuff is not None:
        cfg.eval.trim_stuff = args.trim_stuff
    cfg.eval.max_images = args.max_images  # all images unless asked, whatever the training evaluated
    if args.data_root is not None:
        cfg.data.root = args.data_root
        cfg.data.synthetic.generate = False  # a mistyped path is an error, not a new dataset
    try:
        cfg = Config.model_validate(cfg.model_dump())  # do the chosen modes fit the trained network?
    except ValidationError as error:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise ValueError(f"{f'training run {args.run!r}' if args.run else args.checkpoint}: {reasons}") from None
    dataset = build_dataset(cfg.data, args.split or cfg.data.val_split, train=False)
    model.to("cuda" if torch.cuda.is_available() else "cpu")

    result = evaluate_as_configured(model, cfg, dataset, categories, export_dir=args.out,
                                    num_visualizations=args.num_visualizations,
                                    progress=None)  # a bar on a terminal, nothing in a log
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps({"checkpoint_step": step, "trim_stuff": cfg.eval.trim_stuff,
                                                       **result.metrics}, indent=2))
    for mode, table in result.per_class.items():
        table.to_csv(args.out / f"per_class_{mode}.csv", index=False)
    print(f"checkpoint at step {step}, {len(dataset) if args.max_images is None else args.max_images} images, "
          f"stuff trimming {'on' if cfg.eval.trim_stuff else 'off'}")
    print(result.table())
    first = cfg.eval.modes[0]
    print(f"mIoU {result.metrics[f'{first}/mIoU']:.1f}  AP_box {result.metrics[f'{first}/AP_box']:.1f}"
          + (f"  AP_mask {result.metrics[f'{first}/AP_mask']:.1f}" if f"{first}/AP_mask" in result.metrics else ""))
    for mode, folder in result.export_dirs.items():
        print(f"{mode}: predictions in {folder.resolve()}")


if __name__ == "__main__":
    run_command(main)
