"""Servers the tests start on 127.0.0.1, and stopping one with every process it spawned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request


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
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/", timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server on 127.0.0.1:{self.port} did not start") from None
                time.sleep(0.2)
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

    def stop(self) -> None:
        stop_session(self.process)
