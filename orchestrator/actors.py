"""One Ray actor runner for every analysis job: ``fer-orch explain`` and ``fer-orch probe``.

:func:`run_tasks` calls one task function (``orchestrator.explain.explain_one``,
``orchestrator.probe.probe_one``) once per argument tuple, spread over Ray actors:

- **placement**: where the cluster has GPUs and the job may use one (``device`` is not
  ``cpu``), one actor per GPU holding a whole GPU; otherwise one actor per CPU. Never more
  actors than tasks; ``num_actors`` overrides the count, and ``num_actors=0`` runs the tasks
  one after the other in this process without Ray (debugging, tests, notebooks);
- **worker environment** (:func:`worker_env`): the driver's code (``PYTHONPATH``), data cache
  and outputs (``FER_ORCH_HOME``), MLflow store (``MLFLOW_TRACKING_URI``) and intra-op thread
  count (``OMP_NUM_THREADS``, which each actor also hands to torch);
- **errors**: a failing task does not stop the others; its outcome carries one line
  (:func:`error_message`) instead of a result;
- **progress**: one tqdm bar over finished tasks, with the count of skipped and failed ones.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fer_models.errors import ConfigError, FerOrchError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where torch sees a GPU, else ``cpu``; any other name unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str, address: str | None = None) -> None:
    """Refuse, before any run is loaded or Ray starts, a device name that is none, and
    ``cuda`` on a machine without a visible GPU when the work runs here (no cluster
    ``address``): loading the weights there failed with torch's "Attempting to deserialize
    object on a CUDA device", which read as damaged weights."""
    from fer_models.config import check_device_name

    check_device_name(device)
    if device.startswith("cuda") and address is None and not os.environ.get("RAY_ADDRESS"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} was asked for, but this machine has no CUDA GPU that torch can use "
                              "(the run's weights are fine); pass --device cpu or auto, or --address of a cluster "
                              "with GPUs")


def worker_env() -> dict[str, str]:
    """What an actor needs to see the driver's code, data cache, MLflow store and thread count."""
    from fer_models import paths

    root = str(Path(__file__).resolve().parents[1])
    env = {"FER_ORCH_HOME": str(paths.home()),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    return env


def run_states(runs: Sequence[str], uri: str | None = None) -> dict[str, tuple[str, bool]]:
    """``run id -> (MLflow status, whether it logged weights/best.pt)``, read from the store
    (cheap: no artifact is downloaded)."""
    from orchestrator import tracking

    c = tracking.client(uri)
    out = {}
    for r in runs:
        names = {a.path for a in c.list_artifacts(r, str(Path(tracking.WEIGHTS_ARTIFACT).parent))}
        out[r] = (c.get_run(r).info.status, tracking.WEIGHTS_ARTIFACT in names)
    return out


def trained_runs(run_id: str, uri: str | None = None, warn: Callable[[str], None] | None = None) -> list[str]:
    """The trial runs of ``run_id`` (itself, or a grid parent's children) that have weights to
    load, checked before Ray starts (a run without weights used to start Ray and end
    in "Failed to download artifacts from path 'best.pt'").

    A trial without weights is one sentence; a grid parent's FAILED trials and trials without
    weights are skipped, and ``warn`` is told how many; a parent with none left is one sentence.
    """
    from orchestrator import tracking

    runs = tracking.resolve_runs(run_id, uri)
    if not runs:
        raise FerOrchError(f"run '{run_id}' is a grid parent without trial children; pass a trial run id")
    states = run_states(runs, uri)
    if runs == [run_id]:
        status, weights = states[run_id]
        if not weights:
            raise FerOrchError(
                f"run '{run_id}' has no weights ({tracking.WEIGHTS_ARTIFACT}; its status is {status}): it ended before "
                f"saving a model; pass a FINISHED trial run, or run its grid again to finish it")
        return runs
    failed = [r for r in runs if states[r][0] == "FAILED"]
    no_weights = [r for r in runs if r not in failed and not states[r][1]]
    keep = [r for r in runs if r not in failed and r not in no_weights]
    if failed or no_weights:
        message = (f"skipped {len(failed) + len(no_weights)} of the {len(runs)} trials of grid run '{run_id}' "
                   f"({len(failed)} FAILED, {len(no_weights)} without weights)")
        if not keep:
            raise FerOrchError(f"{message}: none is left to analyse; run the grid again to finish its trials")
        (warn or (lambda m: None))(message)
    return keep


def error_message(err: BaseException) -> str:
    """One line for a failed task: a fer-orch error's own sentence; for anything else, its
    type and the last line of its message. A Ray task error is unwrapped to its cause first."""
    cause = getattr(err, "cause", None)
    err = cause if isinstance(cause, BaseException) else err
    lines = str(err).strip().splitlines()
    last = lines[-1] if lines else ""
    if isinstance(err, FerOrchError):
        return last or type(err).__name__
    return f"{type(err).__name__}: {last}" if last else type(err).__name__


def placement(resources: dict[str, float], n_tasks: int, device: str,
              num_actors: int | None = None) -> tuple[int, float]:
    """(number of actors, GPUs per actor) for ``n_tasks`` tasks on a cluster with ``resources``."""
    gpus = int(resources.get("GPU", 0))
    if gpus and device != "cpu":
        return max(1, min(n_tasks, num_actors or gpus)), 1.0
    return max(1, min(n_tasks, num_actors or max(1, int(resources.get("CPU", 1))))), 0.0


@dataclass
class Outcome:
    """One task's end: its ``result``, or the one-line ``error`` it failed with."""

    args: tuple
    result: Any = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return self.result.get("status", "ok") if isinstance(self.result, dict) else "ok"


def _set_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))


def _actor_class(ray, num_gpus: float):
    @ray.remote(num_cpus=1, num_gpus=num_gpus)
    class JobActor:
        """Runs one task at a time; keeps nothing between tasks."""

        def __init__(self) -> None:
            _set_threads()

        def run(self, fn: Callable[..., Any], args: tuple) -> Any:
            return fn(*args)

    return JobActor


def _in_process(fn: Callable[..., Any], tasks: Sequence[tuple]):
    """The tasks one after the other in this process, as (index, result, error) when each ends."""
    for i, args in enumerate(tasks):
        try:
            yield i, fn(*args), None
        except Exception as e:  # noqa: BLE001 - one failed task must not stop the others
            yield i, None, error_message(e)


def _on_ray(fn: Callable[..., Any], tasks: Sequence[tuple], device: str, address: str | None,
            num_actors: int | None):
    """The tasks on Ray actors (see :func:`placement`), as (index, result, error) when each ends."""
    from orchestrator.ray_utils import init_ray

    ray = init_ray(address)
    n_act, per_gpu = placement(ray.cluster_resources(), len(tasks), device, num_actors)
    Actor = _actor_class(ray, per_gpu)
    actors = [Actor.options(runtime_env={"env_vars": worker_env()}).remote() for _ in range(n_act)]
    pending = {actors[i % n_act].run.remote(fn, args): i for i, args in enumerate(tasks)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    yield i, ray.get(ref), None
                except Exception as e:  # noqa: BLE001 - one failed task must not stop the others
                    yield i, None, error_message(e)
    finally:
        for a in actors:
            ray.kill(a)


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    desc: str,
    unit: str = "job",
    device: str = "auto",
    address: str | None = None,
    num_actors: int | None = None,
    progress: bool = True,
) -> list[Outcome]:
    """``fn(*args)`` for every ``args`` of ``tasks``; returns one :class:`Outcome` per task, in
    task order. ``fn`` must be a module-level function (actors import it by name)."""
    from tqdm.auto import tqdm

    if num_actors is not None and num_actors < 0:
        raise ConfigError(f"--num-actors must be 0 (run in this process) or more, got {num_actors}")
    check_device(device, address)
    outcomes = [Outcome(tuple(args)) for args in tasks]
    args = [o.args for o in outcomes]
    ends = _in_process(fn, args) if num_actors == 0 else _on_ray(fn, args, device, address, num_actors)
    ended: Counter[str] = Counter()
    bar = tqdm(total=len(outcomes), desc=desc, unit=unit, disable=not progress)
    try:
        for i, result, error in ends:
            outcomes[i].result, outcomes[i].error = result, error
            ended[outcomes[i].status] += 1
            bar.update(1)
            bar.set_postfix(skipped=ended["skipped"], failed=ended["failed"])
    finally:
        bar.close()
    return outcomes
