"""The one actor runner of explain and probe (orchestrator.actors): placement, environment,
error lines, in-process runs."""

from __future__ import annotations

import os

import pytest

from fer_models.errors import ConfigError, DatasetError
from orchestrator.actors import error_message, placement, run_tasks, worker_env


def _task(run_id: str, mode: str) -> dict:
    if mode == "mistake":
        raise DatasetError("the dataset has no AU labels; use the synthetic faces")
    if mode == "crash":
        raise RuntimeError("first line\nboom at the end")
    return {"run_id": run_id, "status": mode}


def test_gpu_actors_where_the_cluster_has_gpus_else_one_per_cpu():
    gpu_cluster = {"CPU": 16.0, "GPU": 2.0}
    assert placement(gpu_cluster, 5, "auto") == (2, 1.0)
    assert placement(gpu_cluster, 5, "cuda") == (2, 1.0)
    assert placement(gpu_cluster, 5, "cpu") == (5, 0.0)  # asked for CPU: CPU actors
    assert placement(gpu_cluster, 1, "auto") == (1, 1.0)  # never more actors than tasks
    assert placement({"CPU": 4.0}, 10, "auto") == (4, 0.0)
    assert placement({"CPU": 4.0}, 10, "auto", num_actors=2) == (2, 0.0)
    assert placement({}, 3, "cpu") == (1, 0.0)


def test_worker_env_carries_code_home_store_and_threads(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    env = worker_env()
    assert env["FER_ORCH_HOME"] == str(tmp_path / "home")
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["MLFLOW_TRACKING_URI"] == "http://head:5000"
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root


def test_error_line_is_the_users_sentence_or_the_crash_type_and_last_line():
    class RayTaskError(Exception):  # what ray.get raises: the task's exception as .cause
        def __init__(self, cause):
            super().__init__(f"traceback ...\n{cause!r}")
            self.cause = cause

    assert error_message(RayTaskError(ConfigError("unknown layer 'x'"))) == "unknown layer 'x'"
    assert error_message(RayTaskError(RuntimeError("a\nb"))) == "RuntimeError: b"
    assert error_message(ValueError()) == "ValueError"


def test_in_process_run_keeps_task_order_and_survives_failures():
    tasks = [("r1", "ok"), ("r2", "mistake"), ("r3", "skipped"), ("r4", "crash")]
    out = run_tasks(_task, tasks, desc="test", num_actors=0, progress=False)
    assert [o.args for o in out] == tasks
    assert [o.status for o in out] == ["ok", "failed", "skipped", "failed"]
    assert out[0].result == {"run_id": "r1", "status": "ok"}
    assert out[1].error == "the dataset has no AU labels; use the synthetic faces"
    assert out[3].error == "RuntimeError: boom at the end"


def test_negative_actor_count_is_a_user_mistake():
    with pytest.raises(ConfigError, match="--num-actors"):
        run_tasks(_task, [("r1", "ok")], desc="test", num_actors=-1, progress=False)


@pytest.mark.slow  # starts Ray actors
@pytest.mark.ray
def test_actors_run_module_level_tasks_and_unwrap_their_errors(ray_local):
    import sys

    from ray import cloudpickle

    # the actors import a task by its module; this test module is not on their path, so ship it
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        tasks = [("r1", "ok"), ("r2", "mistake"), ("r3", "crash")]
        out = run_tasks(_task, tasks, desc="test", num_actors=2, progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert [o.status for o in out] == ["ok", "failed", "failed"]
    assert out[1].error == "the dataset has no AU labels; use the synthetic faces"
    assert out[2].error == "RuntimeError: boom at the end"
