"""Train the unified panoptic network on Ray Train, tracked in MLflow.

    python experiments/train.py --preset smoke                          # local Ray, synthetic data
    python experiments/train.py --preset cityscapes_r50 --address auto  # join a running cluster
    python experiments/train.py --preset smoke --resume                 # continue the latest smoke run
    python experiments/train.py --preset smoke optim.max_iter=100 optim.steps=[75,93] optim.warmup_iters=20

Ends by printing the final PQ table of every inference mode and how to open the
run in the MLflow UI.
"""

from __future__ import annotations

import argparse

from unips.commands import add_workdir_argument, enter_workdir, run_command
from unips.config import Config, load_config
from unips.datasets.build import check_data


def check_local_gpus(cfg: Config) -> None:
    """A local Ray instance has this machine's GPUs only: refuse a config that asks for more."""
    if not cfg.platform.use_gpu:
        return
    import torch

    if torch.cuda.device_count() < cfg.platform.num_workers:
        raise ValueError(f"platform.use_gpu=true with platform.num_workers={cfg.platform.num_workers} needs as many "
                         f"GPUs; this machine has {torch.cuda.device_count()}: run on a GPU machine or cluster "
                         "(--address), or set platform.use_gpu=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", help="preset name in experiments/configs/ or a YAML path")
    parser.add_argument("--address", default=None, help="Ray cluster to join (e.g. 'auto'); default: start a local one")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--name", default=None, help="run name (default: <preset name>_<date-time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run --name (default: the latest one)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    add_workdir_argument(parser)
    args = parser.parse_args()
    enter_workdir(args.workdir)

    # Mistakes in the config, the data or the resources show before Ray starts (seconds, not minutes).
    cfg = load_config(args.preset, args.overrides)
    if args.resume:  # the run continues with the config it began with; overrides must agree with it
        from unips.platform.launch import recorded_config

        cfg = recorded_config(args.preset, args.overrides, args.name, args.tracking_uri)
    check_data(cfg.data)
    if not args.address:
        check_local_gpus(cfg)
    import ray

    from unips.evaluation.pq_stats import pq_table
    from unips.platform.launch import launch_training
    from unips.platform.ray_instance import init_ray

    init_ray(args.address)  # with Ray's dashboard (on 127.0.0.1): Ray Train's cleanup queries its state API
    outcome = launch_training(cfg, run_name=args.name, resume=args.resume, tracking_uri=args.tracking_uri)
    ray.shutdown()  # before the summary: Ray prints its workers' late log lines until then

    metrics = outcome.metrics
    print(f"\nfinal evaluation ({cfg.data.dataset}, {cfg.data.val_split} split, step {metrics.get('step')}):")
    for mode in cfg.eval.modes:
        print(f"mode {mode}\n{pq_table(metrics, f'{mode}/')}")
    first = cfg.eval.modes[0]
    print(f"  mIoU {metrics.get(f'{first}/mIoU', float('nan')):.1f}  AP_box {metrics.get(f'{first}/AP_box', float('nan')):.1f}"
          f"  AP_mask {metrics.get(f'{first}/AP_mask', float('nan')):.1f}")
    print(f"\nrun {outcome.run_name}: checkpoint {outcome.checkpoint}")
    print(f"MLflow run {outcome.mlflow_run_id}; look at it with:\n"
          f"  .venv/bin/mlflow ui --backend-store-uri {outcome.tracking_uri} --host 127.0.0.1")


if __name__ == "__main__":
    run_command(main)
