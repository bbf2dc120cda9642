"""Joining a Ray cluster, or starting a local Ray instance that can share the machine with another."""

from __future__ import annotations

import os
import socket


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init_ray(address: str | None = None) -> None:
    """``ray.init(address)``: join the cluster at ``address`` (or ``RAY_ADDRESS``, or one started with
    ``ray start`` on this machine), else start a local instance with its dashboard on 127.0.0.1.

    A local instance tells its own processes where its dashboard is (``RAY_API_SERVER_ADDRESS``,
    inherited by every Ray worker it starts): Ray Train's placement-group cleaner asks Ray's state
    API about the training's controller, and, told nothing, looks for *the* Ray instance on the
    machine; with a second training's instance running beside it, it found two and died with a
    ``ConnectionError`` traceback.
    """
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    if address or canonicalize_bootstrap_address(None) is not None:  # a cluster: its own settings hold
        ray.init(address=address)
        return
    port = free_local_port()
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ray.init(dashboard_host="127.0.0.1", dashboard_port=port)
