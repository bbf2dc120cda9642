"""A tiny Table I study across two Ray nodes on this machine, by hand (not part of ``make test``).

    .venv/bin/python scripts/multinode_smoke.py [workdir]

Starts moto's S3-compatible server and a real ``mlflow server --serve-artifacts`` on 127.0.0.1, and a
Ray cluster of two nodes with one CPU each (``ray.cluster_utils.Cluster``: separate raylets and object
stores in this machine). Runs ``experiments/ablation.py --address <head>`` with Ray's storage in the
bucket, SIGKILLs the driver once a training has logged step 3, runs it again with ``--resume``, then
``experiments/tables.py`` from another process. Checks that the trainings ran on both nodes (the MLflow
tag ``unips.node``), each step was logged once, the checkpoints are in the bucket and the pictures and
weights are artifacts of the server; prints the trial -> node table. About 2 minutes and 200 s of CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's server helpers and tiny configuration

from tests.platform.conftest import TINY  # noqa: E402
from tests.servers import S3Server, stop_session  # noqa: E402
from unips.platform.ray_instance import free_local_port  # noqa: E402

STUDY = "multinode"


def mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_local_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination", str(folder / "artifacts"),
         "--serve-artifacts", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return process, uri
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start") from None
            time.sleep(0.5)


def trainings(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`unips.study` = '{STUDY}' and tags.`unips.kind` = 'training'")


def logged_steps(client: MlflowClient, run: Any) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss/total"))


def main() -> None:
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="unips-multinode-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    s3 = S3Server()
    server, uri = mlflow_server(workdir)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        nodes = {node.node_id for node in cluster.list_all_nodes()}
        driver = [sys.executable, str(ROOT / "experiments" / "ablation.py"), "--preset", "smoke", "--tables", "I",
                  "--name", STUDY, "--address", cluster.address, "--tracking-uri", uri, *TINY, "optim.max_iter=4",
                  "optim.steps=[4]", "optim.checkpoint_period=1", f"platform.storage_path={s3.uri('ray_results')}",
                  "data.root=data", "data.synthetic.generate=true"]
        client = MlflowClient(uri)
        with open(workdir / "first.log", "w") as log:
            first = subprocess.Popen(driver, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not any(logged_steps(client, run)[-1:] >= [3] for run in trainings(client)):
            assert first.poll() is None, (workdir / "first.log").read_text()[-3000:]
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        print("driver killed once a training had logged step 3; resuming", flush=True)
        with open(workdir / "resumed.log", "w") as log:
            resumed = subprocess.run([*driver, "--resume"], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        assert resumed.returncode == 0, (workdir / "resumed.log").read_text()[-3000:]

        runs = trainings(client)
        print("\n| training | Ray node | steps logged |\n|---|---|---|")
        for run in runs:
            tags = run.data.tags
            print(f"| {tags['unips.training']} | {tags['unips.node']} | {logged_steps(client, run)} |")
        assert {run.data.tags["unips.node"] for run in runs} == nodes, "the trainings did not use both nodes"
        assert all(logged_steps(client, run) == [1, 2, 3, 4] and run.info.status == "FINISHED" for run in runs)
        states = [key for key in s3.keys("ray_results") if key.endswith("state.pt")]
        folders = {f"{STUDY}-{run.data.tags['unips.training']}-s0" for run in runs}
        assert {key.split("/")[1] for key in states} == folders, states
        print(f"\nin the bucket: {len(states)} checkpoints, e.g. {states[0]}")
        for run in runs:
            served = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
            pictures = client.list_artifacts(run.info.run_id, "visualizations")
            assert served == {"checkpoint/state.pt"} and pictures, (served, pictures)
        print(f"on the server: weights and pictures of each training under {workdir / 'artifacts'}")
        tables = subprocess.run([sys.executable, str(ROOT / "experiments" / "tables.py"), "--study", STUDY,
                                 "--tracking-uri", uri, "--format", "md", "--out", str(workdir / "tables")],
                                capture_output=True, text=True)
        assert tables.returncode == 0 and "### Table I" in tables.stdout, tables.stderr[-3000:]
        print(tables.stdout.split("\n\n")[1])
        print(f"multinode_smoke ok nodes={len(nodes)} trainings={len(runs)} workdir={workdir}")
    finally:
        cluster.shutdown()
        stop_session(server)
        s3.stop()


if __name__ == "__main__":
    main()
