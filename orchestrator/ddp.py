"""A trial on several workers: Ray Train's ``TorchTrainer`` inside the Tune trial.

Ray Train V2 (the default of Ray 2.60) runs a distributed training from a Tune *function
trainable*: the trial (:func:`orchestrator.trial.run_trial`) builds a ``TorchTrainer`` and
``fit()``s it (:func:`fit_workers`). Its N workers are Ray actors of their own, each asking
for the trial's per-worker resources (``spec["worker_resources"]``: the trial's CPUs, GPUs and
custom resources), outside the Tune trial, which holds only a token CPU
(``orchestrator.tuning.resources_per_trial``: a token CPU). Ray Train starts the process group (``nccl``
on CUDA, ``gloo`` on the CPU); every worker runs ``fer_models.train.train``, which trains
data-parallel over it (``fer_models.distributed``: the config's batch is the global batch).

Once, on rank 0 (:func:`orchestrator.trial.run_worker`, with a :class:`TrainSession`): the
MLflow run, per-epoch metrics, checkpoints (reported to Ray Train with ``ray.train.report``;
the other ranks report the same metrics without one, since every worker must report as often),
the shared training of twins, the test evaluation and artifacts. Ray Train's
``TuneReportCallback`` passes rank 0's reports on to Tune, the last one with ``done_ok``.

Resume: the Train run is named after the grid invocation and the trial's hash under the Tune
storage (``<storage>/train/<parent run>-<hash>``). A retried trial (Tune's ``max_failures``)
builds the same ``TorchTrainer``; Ray Train finds the run's checkpoint list there and
``ray.train.get_checkpoint()`` gives every worker the last checkpoint, which each copies into
its own work folder and resumes from, in the same MLflow run. A finished trial deletes its
Train run (its weights are in MLflow).
"""

from __future__ import annotations

from typing import Any, Callable

from fer_models.errors import ConfigError

from orchestrator import storage as st

TRAIN_DIR = "train"
#: CPUs the Tune trial of a data-parallel trial holds: it only waits for its workers, but a Tune
#: trial must hold something (Ray refuses an empty resource request).
COORDINATOR_CPU = 0.01


def check_workers_fit(ray: Any, grid_cfg: Any, joined: bool) -> None:
    """One sentence before any trial when a Ray this process started (``joined`` false: it
    never grows) cannot hold the workers of the largest data-parallel trial at once; Ray
    Train would otherwise wait for them forever. A joined cluster may still add nodes."""
    r = grid_cfg.resources
    k = max(r.workers_per_trial.values(), default=1)
    if k <= 1 or joined:
        return
    alive = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus, gpus = (sum(n.get(key, 0.0) for n in alive) for key in ("CPU", "GPU"))
    if k * r.cpus + COORDINATOR_CPU > cpus + 1e-9 or k * r.gpus > gpus + 1e-9:
        raise ConfigError(f"a trial of {k} workers needs {k} x ({r.cpus:g} CPU, {r.gpus:g} GPU) at once, but this "
                          f"Ray offers {cpus:g} CPUs and {gpus:g} GPUs: lower --workers-per-trial or "
                          f"--cpus-per-trial / --gpus-per-trial")


def train_run_name(spec: dict[str, Any]) -> str:
    return f"{spec['parent_id']}-{spec['hash']}"


def fit_workers(spec: dict[str, Any], train_fn: Callable, worker: Callable) -> None:
    """Run the trial of ``spec`` on ``spec["workers"]`` Ray Train workers (module docstring);
    each calls ``worker(spec, train_fn, TrainSession())``
    (:func:`orchestrator.trial.run_worker`)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    per_worker = dict(spec["worker_resources"])
    gpu = per_worker.get("GPU", 0) > 0
    storage = st.join(spec["storage"], TRAIN_DIR)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"trial": spec, "train_fn": train_fn, "worker": worker},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=int(spec["workers"]), use_gpu=gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=train_run_name(spec),
            storage_path=storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune's max_failures retries the trial
        ),
    )
    trainer.fit()  # a worker's error raises here and fails this attempt
    st.delete_dir(st.join(storage, train_run_name(spec)))


class TrainSession:
    """Where a worker of a data-parallel trial reads its checkpoint and reports: Ray Train."""

    def __init__(self) -> None:
        import ray.train

        self.rank = ray.train.get_context().get_world_rank()
        self.world_size = ray.train.get_context().get_world_size()
        self.main = self.rank == 0

    def get_checkpoint(self) -> Any:
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir and self.main else None
        ray.train.report(metrics, checkpoint=ckpt)

    def trial_id(self) -> str:
        import ray.train

        return f"{ray.train.get_context().get_experiment_name()}-r{self.rank}"


def _worker_loop(config: dict[str, Any]) -> None:
    config["worker"](config["trial"], config.get("train_fn"), TrainSession())
