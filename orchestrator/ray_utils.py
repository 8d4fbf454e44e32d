"""Starting or joining Ray the same way from every command."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local instance.

    A plain local run always says ``address="local"`` so it never attaches to a stray
    cluster that happens to be running on the machine. Returns the ``ray`` module.
    """
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    opts = {"include_dashboard": False, "log_to_driver": False, **kwargs}
    if address == "local" and num_cpus is not None:
        opts["num_cpus"] = num_cpus
    ray.init(address=address, **opts)
    return ray
