"""Servers the tests start on 127.0.0.1 (an S3-compatible store, ``mlflow server``, a Ray cluster of
several nodes), and stopping one with every process it spawned.

``python -m tests.servers ray-cluster INFO NODES CPUS`` is the Ray cluster's own process (see ``RayCluster``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def stop_session(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop ``process`` (started with ``start_new_session=True``) and everything in its process group.

    ``mlflow server`` and ``mlflow ui`` start helpers (uvicorn, MLflow's job consumers) that outlive a
    plain ``terminate()`` of the command; the group takes them along.
    """
    group = os.getpgid(process.pid) if process.poll() is None else process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout_s)
    finally:
        try:
            os.killpg(group, signal.SIGKILL)  # helpers still shutting down
        except ProcessLookupError:
            pass



def wait_until_answered(process: subprocess.Popen, url: str, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers with a success status; fail naming ``what`` if ``process`` exits or
    ``timeout_s`` passes first (an error status raises ``HTTPError``, an ``OSError``, and is polled again)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} at {url} did not start") from None
            time.sleep(0.3)

class S3Server:
    """moto's standalone S3-compatible server on 127.0.0.1 (``moto[server]``), with one bucket.

    ``uri(path)`` names a location in the bucket the way a user names one on an S3-compatible store: the
    credentials as the URI's user info, the endpoint in its query (pyarrow's ``FileSystem.from_uri``
    reads both, in every process, Ray's workers included).
    """

    KEY, SECRET, BUCKET = "testing", "testing", "unips"

    def __init__(self) -> None:
        from unips.platform.ray_instance import free_local_port

        self.port = free_local_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until_answered(self.process, f"http://127.0.0.1:{self.port}/moto-api/", "moto server", 60)
        from pyarrow import fs

        self.filesystem = fs.S3FileSystem(access_key=self.KEY, secret_key=self.SECRET, region="us-east-1",
                                          scheme="http", endpoint_override=f"127.0.0.1:{self.port}",
                                          allow_bucket_creation=True)
        self.filesystem.create_dir(self.BUCKET)

    def uri(self, path: str) -> str:
        return (f"s3://{self.KEY}:{self.SECRET}@{self.BUCKET}/{path}"
                f"?endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        """Every object in the bucket under ``prefix``, as bucket-relative paths."""
        from pyarrow import fs

        infos = self.filesystem.get_file_info(fs.FileSelector(f"{self.BUCKET}/{prefix}", recursive=True,
                                                              allow_not_found=True))
        return sorted(info.path.removeprefix(f"{self.BUCKET}/") for info in infos if info.type == fs.FileType.File)

    def read(self, key: str) -> bytes:
        """The object at ``key`` (bucket-relative)."""
        with self.filesystem.open_input_file(f"{self.BUCKET}/{key}") as file:
            return file.read()

    def stop(self) -> None:
        stop_session(self.process)


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with its store and its proxied artifacts in ``folder`` (as
    ``cluster.yaml`` runs it); it can crash and start again on the same port and store, as a tracking
    server restarted by its host would."""

    def __init__(self, folder: Path) -> None:
        from unips.platform.ray_instance import free_local_port

        self.folder, self.port = folder, free_local_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = folder / "server-artifacts"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder}/server.db", "--serve-artifacts",
             "--artifacts-destination", str(self.artifacts), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            # MLflow's job runner (six consumer processes for GenAI jobs) is not what trainings use.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        wait_until_answered(self.process, f"{self.uri}/health", "mlflow server", 120)
        return self

    def crash(self) -> None:
        """SIGKILL the server and every process it started: no request is answered from here on."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_session(self.process)


class RayCluster:
    """A Ray cluster of ``nodes`` nodes with ``cpus`` CPUs each on this machine: a head and further nodes,
    each with its own raylet and object store (``ray.cluster_utils.Cluster``), in a process of their own.

    That process has a Ray temp folder of its own (``RAY_TMPDIR``): the cluster records its address
    there, so a plain ``ray.init()`` elsewhere on the machine (another test's training) starts its own
    instance instead of joining this one. Its processes are told where its dashboard is
    (``RAY_API_SERVER_ADDRESS``), as ``init_ray`` tells a local instance's, since the machine runs other
    Ray instances beside it. ``address`` is what a driver passes to join; ``node_ids`` its nodes.

    Its processes and its drivers must agree on Ray's token authentication (``ENV``, set for both): a driver
    joining by address turns it on only when ``RAY_AUTH_MODE=token`` is in its environment, which a process
    inherits from any process that started a local Ray instance (ray.init sets it); with it on and the
    cluster's off, the cluster's GCS could not reach the driver and dropped its new actors at once.
    """

    ENV = {"RAY_AUTH_MODE": "disabled"}

    def __init__(self, nodes: int = 2, cpus: int = 1) -> None:
        from unips.platform.ray_instance import free_local_port

        # Short: Ray's socket paths under it must stay within the 107 characters of a Unix socket name.
        self.folder = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        dashboard = free_local_port()
        env = {**os.environ, **self.ENV, "RAY_TMPDIR": str(self.folder),
               "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard}"}
        env.pop("RAY_ADDRESS", None)
        info = self.folder / "cluster.json"
        root = Path(__file__).resolve().parents[1]
        with open(self.folder / "cluster.log", "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.servers", "ray-cluster", str(info), str(nodes), str(cpus), str(dashboard)],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 180
        while not info.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Ray cluster did not start: {(self.folder / 'cluster.log').read_text()[-3000:]}")
            time.sleep(0.2)
        started = json.loads(info.read_text())
        self.address: str = started["address"]
        self.node_ids: set[str] = set(started["node_ids"])
        self.dashboard = f"http://127.0.0.1:{dashboard}"

    def stop(self) -> None:
        stop_session(self.process, timeout_s=60)
        shutil.rmtree(self.folder, ignore_errors=True)  # its logs and Ray's session files


def _serve_ray_cluster(info: Path, nodes: int, cpus: int, dashboard: int) -> None:
    """Start the cluster, write its address and node ids to ``info``, shut it down at SIGTERM."""
    from ray.cluster_utils import Cluster

    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": cpus, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus)
        cluster.wait_for_nodes()
        started = {"address": cluster.address, "node_ids": [node.node_id for node in cluster.list_all_nodes()]}
        info.with_suffix(".tmp").write_text(json.dumps(started))
        info.with_suffix(".tmp").rename(info)
        while not stopped:
            time.sleep(0.2)
    finally:
        cluster.shutdown()


if __name__ == "__main__" and sys.argv[1:2] == ["ray-cluster"]:
    _serve_ray_cluster(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
