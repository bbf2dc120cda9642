"""Run the paper's ablation studies as one Ray Tune experiment, recorded in MLflow.

    python experiments/ablation.py --preset smoke --tables H            # local Ray, synthetic data
    python experiments/ablation.py --preset bench --tables 1,F,H,I --seeds 3   # docs/results_synthetic.md
    python experiments/ablation.py --preset smoke --resume              # continue the latest smoke study
    ray submit cluster.yaml experiments/ablation.py -- --preset cityscapes_r50 --tables 1

Tables: 1 (msk/aff/e2e/heu/amx ablation), F (variant B vs C), H (GT vs predicted boxes),
I (stuff trimming), J (SQ/RQ of the full model), and R (not in the paper: the full
model without each remedy of the training recipe in turn, docs/design.md). Rows that
differ only at inference share one training. On a cluster (``ray submit``, or ``--address``) trials run as far
apart as its resources allow. The last line is ``study=<name> tracking_uri=<uri>``:
``python experiments/tables.py --study <name>`` writes the tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unips.commands import add_workdir_argument, enter_workdir, run_command
from unips.config import load_config
from unips.platform.studies import select


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", help="preset name in experiments/configs/ or a YAML path")
    parser.add_argument("--tables", default="1,F,H,I,J",
                        help="comma-separated table keys (default: the paper's, 1,F,H,I,J; R on request)")
    parser.add_argument("--seeds", type=int, default=1, help="trainings per setting, seeds 0..N-1")
    parser.add_argument("--name", default=None, help="study name (default: <preset>-study-<date-time>)")
    parser.add_argument("--resume", action="store_true", help="continue the study --name (default: the latest)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: the one this machine belongs to, else a local one)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray Tune's own output too: its trial status table every 30 s (default: a line per "
                             "finished trial, and the trainings' step lines)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every training, key.sub=value")
    add_workdir_argument(parser)
    args = parser.parse_args()
    enter_workdir(args.workdir)

    table_keys = [key.strip() for key in args.tables.split(",") if key.strip()]
    select(table_keys)  # table and config mistakes show before Ray and torch load (seconds)
    cfg = load_config(args.preset, args.overrides)
    import ray

    from unips.platform.ablation import recorded_study, run_study
    from unips.platform.ray_instance import init_ray
    from unips.platform.tracking import is_local_store, resolve_tracking_uri

    if args.resume:  # a study to resume must be there before Ray starts
        recorded_study(resolve_tracking_uri(args.tracking_uri, cfg.platform.tracking_uri, Path.cwd()), args.preset,
                       args.name)

    init_ray(args.address)
    outcome = run_study(args.preset, table_keys,
                        seeds=args.seeds, overrides=args.overrides, name=args.name, resume=args.resume,
                        tracking_uri=args.tracking_uri, verbose=args.verbose)
    ray.shutdown()  # before the summary: Ray prints its workers' late log lines until then
    print(f"\n{outcome.trainings} training(s) for {outcome.rows} row(s); tables with:\n"
          f"  python experiments/tables.py --study {outcome.name} --tracking-uri {outcome.tracking_uri}")
    ui = (f"mlflow ui --backend-store-uri {outcome.tracking_uri} --host 127.0.0.1"
          if is_local_store(outcome.tracking_uri) else f"open {outcome.tracking_uri} in a browser")
    print(f"the study's run and its children in the MLflow UI: {ui}")
    print(f"study={outcome.name} tracking_uri={outcome.tracking_uri}")


if __name__ == "__main__":
    run_command(main)
