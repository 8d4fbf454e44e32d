"""The main job: paper 002's studies as Ray Tune trials, tracked in MLflow.

:func:`run_grid` runs, in order:

1. checks before any long work: the MLflow store answers (:func:`tracking.resolve_uri`),
   methods/datasets exist;
2. preprocessing of every dataset through the cached Ray Data pipeline
   (:func:`orchestrator.preprocess.preprocess`; a cache hit costs nothing);
3. phase 1, when asked: the λ ablation (Fig. 5); then λ for the other studies is chosen
   on *validation* (:func:`choose_lambda`);
4. phase 2: the Table-1 grid and/or the layer ablation (Table 3) in one Tuner.

Each trial is :func:`orchestrator.trial.run_trial`, handed the cache folder step 2 returned.

Fault tolerance. Every trial reports a Tune checkpoint each epoch (the trainer's
``checkpoint.pt`` + ``best.pt`` + the MLflow run id); ``FailureConfig(max_failures)``
restarts a trial whose worker died from that checkpoint with ``train(resume=True)``, and
the trial keeps logging into the same MLflow run. After the driver is killed, running the
same command again restores the Tune experiment (``Tuner.restore(resume_errored=True)``):
finished trials are not re-run. A fresh invocation (another grid, ``--no-resume`` aside)
also skips every trial whose config hash already has a FINISHED run in the experiment
(the vanilla CAM model, for instance, is shared by the grid and both ablations).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray import tune

from fer_models import paths
from fer_models.config import TrainConfig
from fer_models.errors import ConfigError, FerOrchError
from orchestrator import tracking
from orchestrator.config import GridConfig, Trial
from orchestrator.lambda_choice import choose_lambda
from orchestrator.progress import TrialProgress
from orchestrator.registry import STUDIES
from orchestrator.studies import expand, run_order
from orchestrator.trial import data_key, run_trial, shared_training_root, trial_specs


@dataclass
class GridOutcome:
    experiment: str
    experiment_id: str
    uri: str
    parent_run_id: str
    studies: tuple[str, ...]
    lam: float
    lam_source: str
    trials: list[dict[str, Any]] = field(default_factory=list)  # every trial of the invocation
    ran: list[str] = field(default_factory=list)  # hashes trained now
    skipped: list[str] = field(default_factory=list)  # hashes already FINISHED before
    failed: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # interrupted
    wall_seconds: float = 0.0
    storage: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unfinished


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def _validate_names(cfgs: list[TrainConfig]) -> None:
    from fer_models.registry import BACKBONES, DATASETS, METHODS

    for c in cfgs:
        METHODS.get(c.method)
        DATASETS.get(c.data.dataset)
        BACKBONES.get(c.backbone)


def _preprocess_all(cfgs: list[TrainConfig], address: str | None, preprocess_fn: Callable | None) -> dict[str, str | None]:
    """Build or find the cache of each distinct data config: ``data_key -> cache folder``.

    ``preprocess_fn`` returns a ``CacheInfo``; a test fake that prepares nothing returns
    None, and its trials find or prepare their cache themselves.
    """
    if preprocess_fn is None:
        from orchestrator.preprocess import preprocess as preprocess_fn
    dirs: dict[str, str | None] = {}
    for c in cfgs:
        key = data_key(c)
        if key not in dirs:
            info = preprocess_fn(c.data, address=address)
            dirs[key] = str(info.dir) if info is not None else None
    return dirs


def _check_remote_nodes(uri: str, ray: Any) -> tuple[str, list[str]]:
    """The driver's node address and the addresses of the live nodes on other machines,
    after checking that the trials there can log.

    The URI is not rewritten here: each trial maps a loopback URI to the driver's machine
    only when it runs on another machine (:func:`orchestrator.ray_utils.uri_seen_from`).
    When some node already is elsewhere, the mapped URI must answer from here too; a server
    bound to 127.0.0.1 does not, which is said now rather than in every trial.
    """
    from orchestrator.ray_utils import driver_host, hosts_elsewhere, uri_seen_from

    origin = driver_host(ray)
    others = hosts_elsewhere(ray, origin)
    mapped = uri_seen_from(uri, origin, others[0]) if others else uri
    if mapped != uri:
        try:
            tracking.resolve_uri(mapped)
        except FerOrchError:
            raise ConfigError(
                f"the Ray nodes on {', '.join(others)} would log to {mapped}, which does not answer: "
                f"start the MLflow server on an address they reach (the head's private address, as cluster.yaml does) "
                f"or pass a --tracking-uri every node can reach"
            ) from None
    return origin, others


def trial_resources(grid_cfg: GridConfig) -> dict[str, float]:
    """What each trial asks Ray for: CPUs, GPUs and the custom resources that pin it to nodes."""
    r = grid_cfg.resources
    return {"cpu": r.cpus, "gpu": r.gpus, **{k: float(v) for k, v in r.custom.items()}}


def resources_per_trial(grid_cfg: GridConfig):
    """:func:`trial_resources`, or, with a ``resources.gpu_share`` or ``workers_per_trial``
    table, the function of a trial's config Tune calls for each trial: its GPUs from the
    table, and nothing for a trial of several workers, whose Ray Train workers ask for their
    own (:mod:`orchestrator.ddp`; it holds a token CPU, and Tune's ``max_concurrent_trials`` still
    caps the trials)."""
    from orchestrator.ddp import COORDINATOR_CPU

    base = trial_resources(grid_cfg)
    r = grid_cfg.resources
    if not r.gpu_share and not r.workers_per_trial:
        return base

    def of(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        cfg = config["trial"]["cfg"]
        if r.workers_for(cfg["method"], cfg["data"]["dataset"]) > 1:
            return tune.PlacementGroupFactory([{"CPU": COORDINATOR_CPU}])
        gpus = r.gpus_for(cfg["method"], cfg["data"]["dataset"])
        bundle = {"CPU": base["cpu"], "GPU": gpus, **{k: v for k, v in base.items() if k not in ("cpu", "gpu")}}
        return tune.PlacementGroupFactory([{k: v for k, v in bundle.items() if v}])

    return of


def _invocation_id(grid_cfg: GridConfig, studies: tuple[str, ...]) -> str:
    d = grid_cfg.to_dict()
    for k in ("address", "tracking_uri", "storage_path", "max_concurrent", "max_failures", "resources"):
        d.pop(k, None)
    d["studies"] = list(studies)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _run_phase(
    name: str,
    desc: str,
    trials: list[Trial],
    grid_cfg: GridConfig,
    ctx: dict[str, Any],
    resume: bool,
    train_fn: Callable | None,
    outcome: GridOutcome,
) -> None:
    trainable = run_trial if train_fn is None else tune.with_parameters(run_trial, train_fn=train_fn)
    trainable = tune.with_resources(trainable, resources_per_trial(grid_cfg))
    done = tracking.finished_trials(ctx["experiment_id"], ctx["uri"]) if resume else {}
    unique: dict[str, Trial] = {}
    for t in trials:
        unique.setdefault(t.hash, t)
    outcome.skipped += [h for h in unique if h in done]
    todo = [t for h, t in unique.items() if h not in done]
    first, twins = split_twins(todo)
    _fit(name, desc, first, grid_cfg, ctx, resume, trainable, outcome)
    _fit(f"{name}-twins", f"{desc} (twins)", twins, grid_cfg, ctx, resume, trainable, outcome)


def split_twins(todo: list[Trial]) -> tuple[list[Trial], list[Trial]]:
    """The trials to run first, and the twins that wait for them.

    A twin (Grad-CAM++, LayerCAM: ``fer_models.methods.trains_as``) evaluates the network its
    publisher (Grad-CAM, same config) trains and shares (:mod:`orchestrator.trial`); started
    beside its publisher it would train that network a second time. So a twin whose
    publisher is among ``todo`` runs in a second Tuner after the first one ended, when the
    publisher's ``done`` marker is there; a twin without one in ``todo`` trains itself now.
    """
    import dataclasses

    from fer_models.methods import trains_as
    from orchestrator.config import config_hash

    hashes = {t.hash for t in todo}
    first, twins = [], []
    for t in todo:
        owner = trains_as(t.cfg.method)
        publisher = config_hash(dataclasses.replace(t.cfg, method=owner)) if owner != t.cfg.method.lower() else None
        (twins if publisher in hashes else first).append(t)
    return first, twins


def _fit(name: str, desc: str, todo: list[Trial], grid_cfg: GridConfig, ctx: dict[str, Any], resume: bool,
         trainable: Any, outcome: GridOutcome) -> None:
    """One Tuner over ``todo`` (or its restored state at ``storage/name``); results into ``outcome``."""
    from orchestrator import storage as st

    path = st.join(ctx["storage"], name)
    restorable = resume and tune.Tuner.can_restore(path)
    if not todo and not restorable:
        return
    progress = TrialProgress(desc)
    try:
        if restorable:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            st.delete_dir(path)  # an unfinished attempt Tune cannot restore from: start over
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(trial_specs(todo, ctx))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=grid_cfg.max_concurrent or None,
                    reuse_actors=True,
                    trial_name_creator=lambda t: t.config["trial"]["name"],
                    trial_dirname_creator=lambda t: t.config["trial"]["hash"],
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=ctx["storage"],
                    failure_config=tune.FailureConfig(max_failures=grid_cfg.max_failures),
                    # two: Tune deletes the older checkpoint as soon as it registers a new one,
                    # but uploads the experiment state that names the new one only afterwards;
                    # with one kept, a driver killed in between restores a deleted checkpoint
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    callbacks=[progress],
                    verbose=0,
                ),
            )
        results = tuner.fit()
    finally:
        progress.on_experiment_end([])
    by_hash: dict[str, Any] = {}
    for r in results:
        h = (r.config or {}).get("trial", {}).get("hash")
        if h:
            by_hash[h] = r
    for h, r in by_hash.items():
        if r.error is not None:
            outcome.failed.append(h)
        elif r.metrics and r.metrics.get("done_ok"):
            if r.metrics.get("reused"):
                outcome.skipped.append(h)
            elif h not in outcome.skipped:
                outcome.ran.append(h)
        else:
            outcome.unfinished.append(h)
        if r.error is None and r.checkpoint is not None:  # finished: weights are in MLflow
            _delete_checkpoints(r.checkpoint)


def _delete_checkpoints(latest: Any) -> None:
    """Delete a finished trial's checkpoints (the latest and the one kept before it)."""
    import pyarrow.fs as pafs

    fs, trial_dir = latest.filesystem, latest.path.rstrip("/").rsplit("/", 1)[0]
    try:
        for info in fs.get_file_info(pafs.FileSelector(trial_dir)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
    except OSError:
        pass


def run_grid(
    grid_cfg: GridConfig,
    studies: tuple[str, ...] = ("lambda", "grid", "layers"),
    *,
    resume: bool = True,
    train_fn: Callable | None = None,
    preprocess_fn: Callable | None = None,
    verbose: bool = True,
) -> GridOutcome:
    """Run ``studies`` of ``grid_cfg`` (see the module docstring); returns a summary.

    ``train_fn`` replaces ``fer_models.train.train`` (same contract; tests inject fakes)
    and ``preprocess_fn`` replaces ``orchestrator.preprocess.preprocess``.
    """
    t_start = time.perf_counter()
    _quiet_tune()
    studies = run_order(studies)  # the λ ablation first (its runs choose λ), then the report's order
    if not studies:
        raise ConfigError(f"nothing to run: pick at least one study of {', '.join(STUDIES.names())}")
    ctx = _prepare(grid_cfg, studies, resume, train_fn, preprocess_fn, verbose)
    outcome = GridOutcome(grid_cfg.experiment, ctx["experiment_id"], ctx["uri"], ctx["parent_id"], studies, 0.0, "",
                          storage=ctx["storage"])
    status = "FAILED"
    try:
        _run_studies(grid_cfg, studies, ctx, resume, train_fn, outcome, verbose)
        status = "FINISHED" if outcome.ok else ("KILLED" if outcome.unfinished and not outcome.failed else "FAILED")
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        outcome.wall_seconds = time.perf_counter() - t_start
        _close(outcome, status, ctx)
    if verbose:
        print_summary(outcome)
    return outcome


def _quiet_tune() -> None:
    # every epoch checkpoints by design; Tune's warning about it is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # MLflow holds every result: no Tune CSV/JSON/TensorBoard loggers, whose writer thread per
    # trial polled in the driver (a fifth of its CPU, taken from the trials on a small machine)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # our tqdm bar replaces Tune's tables (the legacy reporter honours verbose=0)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


def _prepare(grid_cfg: GridConfig, studies: tuple[str, ...], resume: bool, train_fn: Callable | None,
             preprocess_fn: Callable | None, verbose: bool) -> dict[str, Any]:
    """Checks, Ray, preprocessing and the parent MLflow run: the context every trial gets."""
    from orchestrator import storage as st
    from orchestrator.ddp import check_workers_fit
    from orchestrator.ray_utils import check_feasible, init_ray, keep_secrets_out_of_trials

    uri = tracking.resolve_uri(grid_cfg.tracking_uri)  # unreachable server: one sentence, now
    experiment_id = tracking.ensure_experiment(grid_cfg.experiment, uri)
    if train_fn is None:
        grid_cfg.check_data_options()  # reader options and folds: one sentence, now
    all_cfgs = [t.cfg for s in studies for t in expand(grid_cfg, s)]
    if train_fn is None:
        _validate_names(all_cfgs)
    home = str(paths.home())
    storage = st.resolve(grid_cfg.storage_path, home)
    st.check(storage)
    inv = _invocation_id(grid_cfg, studies)
    if not resume:
        inv = f"{inv}-{int(time.time())}"
    state_path = Path(home) / "grids" / f"{grid_cfg.experiment}-{inv}.json"
    state = json.loads(state_path.read_text()) if resume and state_path.is_file() else {}

    ray = init_ray(grid_cfg.address)
    keep_secrets_out_of_trials()
    joined = (grid_cfg.address or os.environ.get("RAY_ADDRESS") or "local") != "local"
    check_feasible(ray, trial_resources(grid_cfg), joined=joined)
    check_workers_fit(ray, grid_cfg, joined)
    origin, others = _check_remote_nodes(uri, ray)
    if others and not st.is_uri(storage) and verbose:
        print(f"fer-orch: nodes on {', '.join(others)} write trial checkpoints to the Tune storage {storage}: "
              "it must be a folder every node mounts (NFS), else pass --storage s3://...", file=sys.stderr)
    cache_dirs = _preprocess_all(all_cfgs, grid_cfg.address, preprocess_fn)

    parent_id = state.get("parent_id")
    if parent_id is None:
        parent_tags = {tracking.STUDY_TAG: ",".join(studies), "fer_orch.invocation": inv, "fer_orch.preset": grid_cfg.preset}
        parent_id = tracking.create_grid_run(experiment_id, f"{'+'.join(studies)}-{inv}", parent_tags, uri)
    else:
        tracking.reopen_run(parent_id, uri)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"parent_id": parent_id}))
    return {"parent_id": parent_id, "experiment_id": experiment_id, "uri": uri, "home": home,
            "cpus": grid_cfg.resources.cpus, "git": tracking.git_info(), "storage": storage, "resume": resume,
            "cache_dirs": cache_dirs, "origin": origin, "inv": inv, "resources": grid_cfg.resources}


def _run_studies(grid_cfg: GridConfig, studies: tuple[str, ...], ctx: dict[str, Any], resume: bool,
                 train_fn: Callable | None, outcome: GridOutcome, verbose: bool) -> None:
    """Phase 1, the λ ablation when asked; λ chosen on validation; phase 2, the other studies."""
    listed: list[dict[str, Any]] = []
    uri, inv, name = ctx["uri"], ctx["inv"], grid_cfg.experiment

    def record(trials: list[Trial]) -> None:
        listed.extend({"hash": t.hash, "name": t.name, "study": t.study} for t in trials)
        outcome.trials = listed
        tracking.log_grid_artifacts(ctx["parent_id"], grid_cfg.to_yaml(), listed, uri)

    if "lambda" in studies:
        trials = expand(grid_cfg, "lambda")
        record(trials)
        _run_phase(f"{name}-{inv}-lambda", "λ ablation", trials, grid_cfg, ctx, resume, train_fn, outcome)
    lam, source = choose_lambda(grid_cfg, ctx["experiment_id"], uri)
    outcome.lam, outcome.lam_source = lam, source
    tracking.set_tags(ctx["parent_id"], {"lambda": f"{lam:g}", "lambda_source": source}, uri)
    rest = [t for s in studies if s != "lambda" for t in expand(grid_cfg, s, lam=lam)]
    if rest:
        record(rest)
        others = [s for s in studies if s != "lambda"]
        if verbose:
            print(f"fer-orch: λ = {lam:g} for {', '.join(others)}; source: {source}", file=sys.stderr)
        _run_phase(f"{name}-{inv}-main-l{lam:g}", "+".join(others), rest, grid_cfg, ctx, resume, train_fn, outcome)


def _close(outcome: GridOutcome, status: str, ctx: dict[str, Any]) -> None:
    """The parent run's totals and status; the twins' shared trainings of a finished grid deleted."""
    uri, parent_id = ctx["uri"], ctx["parent_id"]
    try:  # whole invocation, Ray start and preprocessing included (benchmarks/bench_tune_overhead.py)
        tracking.log_to_run(parent_id, metrics={"wall_seconds": outcome.wall_seconds, "trials_trained": len(outcome.ran),
                                                "trials_skipped": len(set(outcome.skipped))}, uri=uri)
    finally:
        tracking.end_run(parent_id, status, uri)
        if status == "FINISHED":  # the twins' shared trainings served their purpose
            shutil.rmtree(shared_training_root(ctx["home"], parent_id), ignore_errors=True)


def print_summary(o: GridOutcome) -> None:
    n = len({t["hash"] for t in o.trials})
    lines = [
        f"fer-orch: {n} trials ({len(o.ran)} trained now, {len(set(o.skipped) - set(o.ran))} already finished, "
        f"{len(o.failed)} failed, {len(o.unfinished)} unfinished) in {o.wall_seconds / 60:.1f} min",
        f"  MLflow store:  {o.uri}",
        f"  experiment:    {o.experiment} (parent run {o.parent_run_id})",
        f"  Tune storage:  {o.storage}",
        "  open the runs: " + (o.uri if o.uri.startswith("http") else f"fer-orch ui --tracking-uri {o.uri}"),
        f"  tables/figs:   fer-orch report --experiment {o.experiment} --tracking-uri {o.uri}",
    ]
    if not o.ok:
        lines.append("  some trials did not finish: run the same command again to resume them")
    print("\n".join(lines), file=sys.stderr)
