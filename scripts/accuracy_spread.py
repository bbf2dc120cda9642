"""How far the smoke preset's accuracy moves when the CPU kernels change, as on another machine.

    python scripts/accuracy_spread.py [--out outputs/accuracy_spread] [--parallel 2]

One thread repeats a training exactly on one machine, but another machine's kernels add
floating-point numbers in another order, and a few hundred steps from scratch amplify that.
This script trains the smoke preset exactly as ``tests/platform/test_accuracy.py`` does,
once as this machine runs it and once under each of three kernel changes that another x86
machine would bring: ATen's generic kernels instead of AVX2 (``ATEN_CPU_CAPABILITY``), MKL's
conditional-numerical-reproducibility path for older CPUs (``MKL_CBWR``), and oneDNN's
convolutions capped at SSE4.1 (``ONEDNN_MAX_CPU_ISA``). It prints every pinned metric per
environment and the largest distance from this machine's run: the tolerance the test needs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {
    "this machine": {},
    "ATen generic kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL compatible path": {"MKL_CBWR": "COMPATIBLE"},
    "oneDNN at SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
}
MODES = ("full", "amx", "heu")
# Panoptic metrics per mode; the semantic head's IoU and the detector's AP once (they do not depend on the mode).
KEYS = (*(f"{mode}/{metric}" for mode in MODES for metric in ("PQ", "PQ_th", "PQ_st")), "full/mIoU", "full/AP_box")


def train(name: str, extra_env: dict[str, str], out: Path) -> dict[str, float]:
    """One smoke training in its own folder; its final metrics from its MLflow store."""
    workdir = out / name.replace(" ", "_")
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    env = {**os.environ, **extra_env, "MLFLOW_TRACKING_URI": uri}
    with open(workdir / "train.log", "w") as log:
        subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--preset", "smoke", "--name", "spread"],
                       cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    return dict(run.data.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/accuracy_spread"))
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once (one thread each)")
    args = parser.parse_args()
    out = args.out.resolve()
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {name: pool.submit(train, name, env, out) for name, env in ENVIRONMENTS.items()}
        measured = {name: future.result() for name, future in futures.items()}
    reference = measured["this machine"]
    print(f"{'metric':14s}" + "".join(f"{name:>22s}" for name in ENVIRONMENTS) + f"{'max |diff|':>12s}")
    for key in KEYS:
        values = [measured[name][key] for name in ENVIRONMENTS]
        spread = max(abs(v - reference[key]) for v in values)
        print(f"{key:14s}" + "".join(f"{v:22.2f}" for v in values) + f"{spread:12.2f}")


if __name__ == "__main__":
    main()
