"""Stopping a server a test started in a session of its own, with every process it spawned."""

from __future__ import annotations

import os
import signal
import subprocess


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
