"""Trials get no secrets from the driver: Tune would copy its AWS keys into every trial's
Ray runtime_env (sent through the GCS, logged in plain text by Ray's runtime_env agent)."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import pytest
from ray import cloudpickle

from tests.test_orchestrator.test_grid import _no_preprocess, fake_train, tiny_grid

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def recording_train(cfg, run_dir, *, out: str, **kw):
    """``fake_train``, after writing down the runtime_env this trial's actor was given."""
    import ray

    Path(out).write_text(json.dumps(ray.get_runtime_context().runtime_env))
    return fake_train(cfg, run_dir, **kw)


@pytest.mark.ray
def test_driver_secrets_do_not_reach_the_trials_runtime_env(ray_local, tmp_path, monkeypatch):
    from orchestrator.tuning import run_grid
    from orchestrator.ray_utils import trial_env_leaks

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-DRIVER-ONLY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "driver-secret-do-not-share")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-password-do-not-share")
    out = tmp_path / "runtime_env.json"
    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), methods=("cam",), au=(False,))
    res = run_grid(g, studies=("grid",), train_fn=partial(recording_train, out=str(out)),
                   preprocess_fn=_no_preprocess, verbose=False)
    assert res.ok, (res.failed, res.unfinished)
    text = out.read_text()
    env = json.loads(text).get("env_vars", {})
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env, env
    assert "do-not-share" not in text and "AKIA-DRIVER-ONLY" not in text
    assert not trial_env_leaks()
