"""A trial on several workers: Ray Train's ``TorchTrainer`` inside the Tune trial.

Ray Train V2 (the default of Ray 2.60) runs a distributed training from a Tune *function
trainable*: the trial (:func:`orchestrator.trial.run_trial`) builds a ``TorchTrainer`` and
``fit()``s it (:func:`fit_workers`). Its N workers are Ray actors of their own, each asking
for the trial's per-worker resources (``spec["worker_resources"]``: the trial's CPUs, GPUs and
custom resources), outside the Tune trial, which holds only a token CPU
(``orchestrator.grid.resources_per_trial``: a token CPU). Ray Train starts the process group (``nccl``
on CUDA, ``gloo`` on the CPU); every worker runs ``fer_models.train.train``, which trains
data-parallel over it (``fer_models.distributed``: the config's batch is the global batch).

Once, on rank 0 (:func:`orchestrator.trial.run_attempt` with a :class:`TrainSession`): the
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


def workers_for(table: dict[str, int], method: str, dataset: str) -> int:
    """``Resources.workers_per_trial`` of a trial: ``"<method>/<dataset>"``, else ``"<dataset>"``,
    else ``"*"``, else 1; always 1 for a method that borrows another's training (Grad-CAM++,
    LayerCAM: they mostly only evaluate Grad-CAM's network)."""
    from fer_models.methods import trains_as

    if trains_as(method) != method.lower():
        return 1
    return int(table.get(f"{method}/{dataset}", table.get(dataset, table.get("*", 1))))


def check_workers_table(table: dict[str, Any]) -> None:
    """``workers_per_trial``: whole numbers >= 1 under ``"*"``, a dataset or ``method/dataset``
    (names of the registries: a misspelt key would silently leave its trials on one worker)."""
    from fer_models.registry import DATASETS, METHODS

    for key, n in table.items():
        method, _, dataset = key.rpartition("/")
        known = key == "*" or (dataset.lower() in DATASETS.names() and (not method or method.lower() in METHODS.names()))
        if not known or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"--workers-per-trial {key}={n} is not usable: give a whole number >= 1 for '*' (every "
                              f"trial), a dataset or METHOD/DATASET (e.g. affectnet=4 or acol/affectnet=2)")


def parse_workers(text: str | None) -> dict[str, int] | None:
    """``--workers-per-trial``: ``"2"`` (every trial) -> ``{"*": 2}``; ``"affectnet=4,rafdb/acol=2"``
    -> per dataset or ``method/dataset`` (``Resources.workers_per_trial``)."""
    from orchestrator.config import parse_list

    items = parse_list(text)
    if items is None:
        return None
    out: dict[str, int] = {}
    for item in items:
        name, sep, n = item.rpartition("=")
        try:
            out[name.strip() if sep else "*"] = int(n)
        except ValueError:
            raise ConfigError(f"--workers-per-trial takes N or KEY=N[,KEY=N] (KEY: a dataset or method/dataset), "
                              f"got '{item}'") from None
    return out


def train_run_name(spec: dict[str, Any]) -> str:
    return f"{spec['parent_id']}-{spec['hash']}"


def fit_workers(spec: dict[str, Any], train_fn: Callable) -> None:
    """Run the trial of ``spec`` on ``spec["workers"]`` Ray Train workers (module docstring)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    per_worker = dict(spec["worker_resources"])
    gpu = per_worker.get("GPU", 0) > 0
    storage = st.join(spec["storage"], TRAIN_DIR)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"trial": spec, "train_fn": train_fn},
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
    """One Ray Train worker of the trial: rank 0 logs (:func:`orchestrator.trial.run_attempt`),
    the others train their share and report what rank 0 reports, without logging."""
    import ray.train
    import torch

    from orchestrator.ray_utils import uri_seen_from
    from orchestrator.trial import _node, prepare_worker, run_attempt

    spec = config["trial"]
    train_fn = prepare_worker(spec, config.get("train_fn"))
    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    session = TrainSession()
    if session.main:
        node = {**_node(), "fer_orch.workers": str(ray.train.get_context().get_world_size())}
        run_attempt(spec, train_fn, session, node, uri_seen_from(spec["uri"], spec.get("origin"), node.get("fer_orch.node_ip")))
    else:
        _follow(spec, train_fn, session)


def _follow(spec: dict[str, Any], train_fn: Callable, session: TrainSession) -> None:
    """A rank > 0: restore the checkpoint, train, report each epoch and once at the end."""
    import shutil

    from fer_models.config import TrainConfig, from_dict
    from orchestrator.trial import _restore_checkpoint, cache_here, fresh_work_dir

    cfg = from_dict(TrainConfig, spec["cfg"])
    work = fresh_work_dir(spec["hash"], session.trial_id())
    try:
        _restore_checkpoint(work, session)
        train_fn(cfg, work, on_epoch=lambda epoch, m: session.report({**m, "epoch": epoch}), resume=True,
                 progress=False, cache_dir=cache_here(spec.get("cache_dir")))
        session.report({})  # rank 0's final report (its test metrics) closes the run
    finally:
        shutil.rmtree(work, ignore_errors=True)
