"""One Ray Tune trial: train one config, report every epoch to Tune, log it all to MLflow.

:func:`run_trial` is the Tune trainable :mod:`orchestrator.tuning` schedules; it runs in a Ray
worker and gets everything it needs in its *spec* (``config["trial"]``, built by
:func:`trial_specs` in the driver):

========== ==============================================================================
``cfg``    the ``TrainConfig`` as a dict (``fer_models.config.to_dict``)
``hash``   its config hash; ``name``, ``study``, ``tags``: the MLflow run's name and tags
``cache_dir`` the preprocessed cache of ``cfg.data`` the driver built or found (None, or a
           folder this node does not see: the trainer finds or prepares it itself)
``parent_id``, ``experiment_id``, ``uri``: where the MLflow child run goes; ``uri`` is the
           user's, used as given unless the trial runs on another machine than the
           driver (``origin``, the driver's node address), where a loopback URI is mapped
           to the driver's machine (:func:`orchestrator.ray_utils.uri_seen_from`)
``home``   the driver's ``FER_ORCH_HOME``; ``cpus``: torch threads; ``resume``: reuse a
           FINISHED run of the same hash instead of training again
========== ==============================================================================

Methods that train one network (``fer_models.methods.trains_as``: Grad-CAM, Grad-CAM++ and
LayerCAM differ only in their post-hoc map) train it once per config: the first trial to
finish publishes its checkpoint in :func:`shared_training_dir` (under ``home``, per grid
invocation), and a twin that starts later evaluates those weights with its own map instead
of training them again (``train(..., trained_by=publisher)``, ``fer_models.train.evaluate_trained``) (its run gets the tag ``fer_orch.trained_by``, the method that
trained them, and the publisher's per-epoch curves without the validation CAM-COS, which
was measured with the publisher's map). A twin that starts first, or on a node that does
not see the folder, trains; the weights are the same either way (same config and seed:
tests/test_fer_models/test_train.py).

Every epoch the trial reports its metrics, with a Tune checkpoint when the trainer wrote one
(its checkpoint files, ``fer_models.checkpoints``, hard-linked rather than copied, +
:data:`STATE_FILE` holding the MLflow run id), so a
restarted trial resumes its training (``train(resume=True)``) in the same MLflow run;
the run then gets the metric ``resumed_from_epoch`` (step: that epoch), and its tag
``fer_orch.node`` names the Ray node of the latest attempt.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ray import tune

from fer_models.config import TrainConfig, flatten, from_dict, to_dict
from orchestrator import tracking
from orchestrator.config import Trial
from orchestrator.ray_utils import uri_seen_from
from orchestrator.tracking.layout import class_names_param

STATE_FILE = "state.json"


def data_key(cfg: TrainConfig) -> str:
    """Trials whose data configs are equal share one preprocessed cache."""
    return json.dumps(to_dict(cfg.data), sort_keys=True)


def trial_specs(trials: list[Trial], ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec of each trial (module docstring) from the driver's context ``ctx``
    (``ctx["cache_dirs"]`` maps :func:`data_key` to a cache folder)."""
    return [
        {
            "cfg": to_dict(t.cfg),
            "hash": t.hash,
            "name": t.name,
            "study": t.study,
            "tags": {**t.tags(), **ctx["git"]},
            "cache_dir": ctx["cache_dirs"].get(data_key(t.cfg)),
            **{k: ctx[k] for k in ("parent_id", "experiment_id", "uri", "home", "cpus", "resume")},
            "origin": ctx.get("origin"),
            **_parallel_spec(t.cfg, ctx),
        }
        for t in trials
    ]


def _parallel_spec(cfg: TrainConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """A data-parallel trial's workers, each worker's Ray resources (the trial's CPUs and
    custom resources; its GPU share rounded up to whole GPUs) and the storage of its Ray Train
    run (nothing for a one-process trial: its spec stays as it was)."""
    resources = ctx.get("resources")
    workers = resources.workers_for(cfg.method, cfg.data.dataset) if resources is not None else 1
    if workers <= 1:
        return {}
    gpus = resources.gpus_for(cfg.method, cfg.data.dataset)  # a whole GPU per rank (NCCL: one rank per GPU)
    per_worker = {"CPU": float(resources.cpus), "GPU": float(math.ceil(gpus)),
                  **{k: float(v) for k, v in resources.custom.items()}}
    return {"workers": workers, "worker_resources": {k: v for k, v in per_worker.items() if v},
            "storage": ctx["storage"]}


def _cache_info(cache_dir: str | None):
    """The finished cache the driver handed over and this node sees (None: none, not a
    finished cache, or a folder a test fake made; training then says what is wrong)."""
    if not cache_here(cache_dir):
        return None
    from fer_models.data.cache import find_at
    from fer_models.errors import DatasetError

    try:
        return find_at(cache_dir)
    except DatasetError:
        return None


def _restore_checkpoint(work: Path, session: Any = None) -> dict[str, Any]:
    """Copy the checkpoint of a retried trial (``session``'s, default Tune's) into ``work``;
    the state it holds (``run_id``: the MLflow run, ``epoch``: the last epoch it saved),
    ``{}`` without one."""
    ckpt = (session or TuneSession()).get_checkpoint()
    if ckpt is None:
        return {}
    with ckpt.as_directory() as d:
        for f in Path(d).iterdir():
            if f.is_file():
                shutil.copy2(f, work / f.name)
    state = work / STATE_FILE
    return json.loads(state.read_text()) if state.is_file() else {}


def _trial_id() -> str:
    try:
        return tune.get_context().get_trial_id() or "local"
    except Exception:  # outside a Tune session
        return "local"


def fresh_work_dir(config_hash: str, trial_id: str) -> Path:
    """A new temporary folder for this attempt of a trial, after deleting the folders of
    its earlier attempts on this machine: an attempt whose node lost its raylet is killed
    without running its ``finally``, and would leave its checkpoint copies behind."""
    prefix = f"fer-orch-{config_hash}-{trial_id}-"
    for old in Path(tempfile.gettempdir()).glob(prefix + "*"):
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix))


def _node() -> dict[str, str]:
    """Where this attempt runs: this Ray node's id and address (empty outside Ray)."""
    import ray

    if not ray.is_initialized():
        return {}
    return {"fer_orch.node": ray.get_runtime_context().get_node_id(), "fer_orch.node_ip": ray.util.get_node_ip_address()}


def cache_here(cache_dir: str | None) -> str | None:
    """The driver's cache folder if this node sees it (same machine, or a shared
    ``FER_ORCH_HOME``), else None: the trainer then finds or prepares the cache in this
    node's own home (cluster.yaml without a shared filesystem)."""
    return cache_dir if cache_dir and (Path(cache_dir) / "meta.json").is_file() else None


SHARED_DONE = "done.json"


def shared_training_root(home: str | Path, scope: str) -> Path:
    """The shared trainings of one grid invocation (``scope``: its parent run id). Sharing
    never crosses invocations, so ``--no-resume`` retrains twins too; the grid deletes the
    folder once the invocation finished (an interrupted one keeps it for its resume)."""
    return Path(home) / "trained" / scope


def shared_training_dir(cfg: TrainConfig, home: str | Path, scope: str) -> Path | None:
    """The folder where the trials that train ``cfg``'s network share it (module docstring),
    None when no other method trains the same network."""
    import dataclasses

    from fer_models.methods import shares_training, trains_as
    from orchestrator.config import config_hash

    if not shares_training(cfg.method):
        return None
    return shared_training_root(home, scope) / config_hash(dataclasses.replace(cfg, method=trains_as(cfg.method)))


def borrow_training(shared: Path | None, work: Path, epochs: int) -> str | None:
    """Copy a finished shared training of ``epochs`` epochs into ``work``; the method that
    trained it, or None (nothing to borrow)."""
    done = shared / SHARED_DONE if shared is not None else None
    if done is None or not done.is_file():
        return None
    info = json.loads(done.read_text())
    if int(info.get("epochs", -1)) != int(epochs):
        return None
    link_checkpoint(shared, work)
    return str(info["method"])


def publish_training(shared: Path | None, work: Path, cfg: TrainConfig) -> None:
    """Share the finished training in ``work`` (atomically; the first publisher wins)."""
    if shared is None or shared.exists() or not (work / "checkpoint.pt").is_file():
        return
    shared.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{shared.name}-", dir=shared.parent))
    try:
        link_checkpoint(work, tmp)
        (tmp / SHARED_DONE).write_text(json.dumps({"method": cfg.method, "epochs": cfg.epochs}))
        os.replace(tmp, shared)
    except OSError:  # another trial published it meanwhile
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_checkpoint(work: Path, dest: Path) -> None:
    """The trainer's checkpoint files in ``dest`` as hard links (no copy of the weights;
    ``fer_models.checkpoints``), copies where the filesystem has no hard links."""
    from fer_models.checkpoints import checkpoint_files, link_or_copy

    for f in checkpoint_files(work):
        link_or_copy(f, dest / f.name)


def _checkpoint_stamp(work: Path) -> tuple[int, int] | None:
    """Identifies the trainer's latest ``checkpoint.pt`` (inode, mtime); None without one."""
    try:
        st = (work / "checkpoint.pt").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class TuneSession:
    """Where an attempt of a one-process trial reads its checkpoint and reports: Ray Tune.
    (``orchestrator.ddp.TrainSession``: rank r of a data-parallel trial, through Ray Train.)"""

    main = True

    def get_checkpoint(self) -> Any:
        return tune.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=ckpt)

    def trial_id(self) -> str:
        return _trial_id()


def run_trial(config: dict[str, Any], train_fn: Callable | None = None) -> None:
    """The Tune trainable. ``train_fn`` replaces ``fer_models.train.train`` (tests inject a
    fake honouring its contract). A trial with several workers (``spec["workers"]``) runs as a
    Ray Train ``TorchTrainer`` (:mod:`orchestrator.ddp`)."""
    spec = config["trial"]
    train_fn = prepare_worker(spec, train_fn)
    node = _node()
    uri = uri_seen_from(spec["uri"], spec.get("origin"), node.get("fer_orch.node_ip"))
    # Finished in MLflow but not yet in Tune's state when the driver died: do not train again.
    if spec.get("resume", True) and tracking.finished_run_id(spec["experiment_id"], spec["hash"], uri):
        tune.report({"done_ok": 1.0, "reused": 1.0})
        return
    if int(spec.get("workers", 1)) > 1:
        from orchestrator.ddp import fit_workers

        fit_workers(spec, train_fn, run_worker)
        return
    run_attempt(spec, train_fn, TuneSession(), node, uri)


def run_worker(spec: dict[str, Any], train_fn: Callable | None, session: Any) -> None:
    """One Ray Train worker of a data-parallel trial (``orchestrator.ddp``): rank 0 logs
    (:func:`run_attempt`), the others train their share and report what rank 0 reports."""
    import torch

    train_fn = prepare_worker(spec, train_fn)
    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    if not session.main:
        return _follow(spec, train_fn, session)
    node = {**_node(), "fer_orch.workers": str(session.world_size)}
    run_attempt(spec, train_fn, session, node, uri_seen_from(spec["uri"], spec.get("origin"), node.get("fer_orch.node_ip")))


def _follow(spec: dict[str, Any], train_fn: Callable, session: Any) -> None:
    """A rank > 0: restore the checkpoint, train, report each epoch and once at the end."""
    cfg = from_dict(TrainConfig, spec["cfg"])
    work = fresh_work_dir(spec["hash"], session.trial_id())
    try:
        _restore_checkpoint(work, session)
        train_fn(cfg, work, on_epoch=lambda epoch, m: session.report({**m, "epoch": epoch}), resume=True,
                 progress=False, cache_dir=cache_here(spec.get("cache_dir")))
        session.report({})  # rank 0's final report (its test metrics) closes the run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare_worker(spec: dict[str, Any], train_fn: Callable | None) -> Callable:
    """This process's home and torch threads for the trial; the training function."""
    os.environ["FER_ORCH_HOME"] = spec["home"]  # workers do not share the driver's cwd
    import torch

    torch.set_num_threads(max(1, int(spec["cpus"])))
    if train_fn is None:
        from fer_models.train import train as train_fn
    return train_fn


def run_attempt(spec: dict[str, Any], train_fn: Callable, session: Any, node: dict[str, str], uri: str) -> None:
    """One attempt of a trial that logs (a one-process trial, or rank 0 of a data-parallel
    one): restore, open the MLflow run, train or borrow, log the result, report done."""
    cfg: TrainConfig = from_dict(TrainConfig, spec["cfg"])
    work = fresh_work_dir(spec["hash"], session.trial_id())
    state = _restore_checkpoint(work, session)  # a retry continues from its last epoch, in the same MLflow run
    run = _open_run(spec, uri, state, node)
    status = "FAILED"
    try:
        shared = shared_training_dir(cfg, spec["home"], spec["parent_id"])
        trained_by = None if state.get("epoch") else borrow_training(shared, work, cfg.epochs)
        result = train_fn(cfg, work, on_epoch=_epoch_reporter(run, work, session), resume=True, progress=False,
                          cache_dir=cache_here(spec.get("cache_dir")),
                          **({"trained_by": trained_by} if trained_by else {}))
        if trained_by is None:
            publish_training(shared, work, cfg)
        else:
            run.set_tags({"fer_orch.trained_by": trained_by})
            for h in result.history:  # the publisher's curves, less its validation CAM-COS
                run.log_metrics({k: float(v) for k, v in h.items() if k not in ("epoch", "val_cam_cos")},
                                step=int(h["epoch"]))
        final = _log_result(run, result, cfg)
        status = "FINISHED"
        session.report({k: float(v) for k, v in final.items()} | {"done_ok": 1.0})
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            run.end(status)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            release_gpu_memory()


def _open_run(spec: dict[str, Any], uri: str, state: dict[str, Any], node: dict[str, str]) -> tracking.TrialRun:
    """The trial's MLflow run (the retried attempt's when ``state`` names it), with its
    params, the cache's data statistics, the node and the epoch it resumes from."""
    run = tracking.TrialRun(
        uri, spec["experiment_id"], spec["parent_id"], spec["name"], spec["tags"], run_id=state.get("run_id")
    )
    try:
        run.log_params(flatten(spec["cfg"]))
        info = _cache_info(spec.get("cache_dir"))
        if info is not None:  # landmark failures per class bias the AU-loss sample
            run.log_metrics({f"data_no_face_rate_{k}": v for k, v in info.landmark_failure_rates().items()})
            run.log_metrics(info.au_source_rates())  # images without AU labels, by the AU source's rule
        run.set_tags(node)
        if state.get("epoch"):
            run.log_metrics({"resumed_from_epoch": state["epoch"]}, step=state["epoch"])
    except BaseException:
        run.end("FAILED")
        raise
    return run


def _epoch_reporter(run: tracking.TrialRun, work: Path, session: Any) -> Callable[[int, dict[str, float]], None]:
    """``on_epoch``: the epoch's metrics to MLflow and to the session, with a checkpoint
    (hard links of the trainer's files + :data:`STATE_FILE`) when the trainer wrote a new one."""
    reported: dict[str, Any] = {"stamp": None}

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        nums = {k: float(v) for k, v in metrics.items()}
        run.log_metrics(nums, step=epoch)
        stamp = _checkpoint_stamp(work)
        if stamp is None or stamp == reported["stamp"]:  # no new checkpoint this epoch
            session.report({**nums, "epoch": epoch})
            return
        reported["stamp"] = stamp
        with tempfile.TemporaryDirectory() as d:
            link_checkpoint(work, Path(d))
            (Path(d) / STATE_FILE).write_text(json.dumps({"run_id": run.run_id, "epoch": epoch}))
            session.report({**nums, "epoch": epoch}, checkpoint_dir=d)

    return on_epoch


def _log_result(run: tracking.TrialRun, result: Any, cfg: TrainConfig) -> dict[str, float]:
    """The finished training's test and best-validation metrics and artifacts, logged; the
    final metrics."""
    # what was really built (a transformer method runs on the CNN's counterpart)
    run.log_params({"built.num_classes": getattr(result, "num_classes", None) or "none",
                    "built.backbone": getattr(result, "backbone", None) or "none",
                    "built.weights": getattr(result, "weights", None) or "none",
                    **class_names_param(result)})
    final = {
        **{f"test_{k}": v for k, v in result.test.metrics.items()},
        **{f"best_val_{k}": v for k, v in result.best_val.items()},
        "train_seconds": result.seconds,
        "best_epoch": result.best_epoch,
    }
    confusion = getattr(result.test, "confusion", None)
    if confusion is not None:  # the test split's size: the report's Wilson interval of CL
        final["test_n"] = float(confusion.sum())
    run.log_metrics(final)
    with tempfile.TemporaryDirectory() as d:
        tracking.write_trial_artifacts(result, cfg, Path(d))
        run.log_artifacts(Path(d))
    return final


def release_gpu_memory() -> None:
    """Hand the finished trial's cached GPU blocks back to the driver: Tune reuses this actor
    (``reuse_actors=True``) for the next trial, which may share the GPU with another."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()  # the trial's model and optimiser, if a reference cycle still holds them
        torch.cuda.empty_cache()
