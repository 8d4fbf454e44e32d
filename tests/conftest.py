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
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """One MLflow SQLite store made per session: creating its tables takes seconds."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template_db):
    """A fresh, empty MLflow store of this test (a copy of the session's template)."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template_db, path)
    return f"sqlite:///{path}"


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
def entry_module(tmp_path, monkeypatch):
    """Add a module to a registry's package as if it were one more file there.

    ``entry_module(REGISTRY, "module_name", source) -> module name``: writes ``source`` into a
    temporary folder appended to the package's ``__path__`` and lets the registry rescan, so
    the entry is found exactly as a new file in the package would be, with no other file
    edited. Afterwards the entries it registered and the module are removed again.
    """
    import importlib
    import sys
    import textwrap

    added = []

    def _add(registry, name: str, source: str) -> str:
        before = set(registry.names())  # the real entries, loaded before the package grows
        folder = tmp_path / "entry-modules" / registry.package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        pkg = importlib.import_module(registry.package)
        monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(folder)])
        registry.rescan()
        module = f"{registry.package}.{name}"
        added.append((registry, module, before))
        return module

    yield _add
    for registry, module, before in added:
        for entry in set(registry.names()) - before:
            registry.unregister(entry)
        sys.modules.pop(module, None)
