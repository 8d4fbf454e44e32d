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


@pytest.fixture
def log_trial(tmp_path):
    """Log a trial run in the tracking layout (tags, config.yaml, weights/best.pt) -> run id."""
    import torch

    from orchestrator import tracking

    def _log(c, exp_id: str, parent_id: str, cfg, state: dict, name: str) -> str:
        run = c.create_run(
            exp_id,
            tags={tracking.KIND_TAG: "trial", "mlflow.parentRunId": parent_id, "method": cfg.method},
            run_name=name,
        )
        d = tmp_path / "logged-trials" / name
        (d / "weights").mkdir(parents=True)
        (d / "config.yaml").write_text(tracking.dump_config(cfg))
        torch.save(state, d / "weights" / "best.pt")
        c.log_artifact(run.info.run_id, str(d / "config.yaml"))
        c.log_artifacts(run.info.run_id, str(d / "weights"), "weights")
        c.set_terminated(run.info.run_id)
        return run.info.run_id

    return _log


@pytest.fixture
def mlflow_store(tmp_path):
    """A throw-away MLflow store: ``.uri``, ``.client`` and an experiment id ``.exp``."""
    from types import SimpleNamespace

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("test", artifact_location=(tmp_path / "artifacts").as_uri())
    return SimpleNamespace(uri=uri, client=client, exp=exp)
