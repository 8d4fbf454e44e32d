"""Shared fixtures: tiny synthetic data, a local Ray, a throw-away MLflow store."""

from __future__ import annotations

import os

import pytest

# One intra-op thread per test process: the suite runs on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(autouse=True)
def _fer_orch_home(tmp_path, monkeypatch):
    """Every test writes under its own temporary FER_ORCH_HOME."""
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "fer-orch-out"))
    yield


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by the session (never joins a stray cluster)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
