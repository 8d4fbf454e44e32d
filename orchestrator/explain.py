"""Explanation jobs (papers 000, 001, 002, 003, 004) on trained runs: Ray actors logging to MLflow.

``explain_runs(run_id, spec)`` expands a grid's parent run to its trial children
(``tracking.resolve_runs``) and runs one task per (run, job) on the shared actor runner
(``orchestrator.actors``). Each task (:func:`explain_one`):

1. loads the run's model (``tracking.load_trained_model``) and the split its job reads (the
   job's ``split`` in ``fer_analysis.registry.JOBS``: ``train`` for ``topn`` / ``filter-au``,
   which rank training images as paper 001 does, ``test`` for ``backtrack`` and
   ``block-maps``), built by ``build_loaders`` on the run's ``DataConfig`` without augmentation;
2. runs the job (``fer_analysis.jobs``) into a temporary folder (PNG + CSV/Markdown/JSON);
3. logs the folder under ``explain/<job>/`` of the explained run, with the job's metrics.

A job that does not apply to a model (backtracking on a CAM ResNet, guided backprop on an
ELU network) ends as ``skipped`` with the reason (also logged as ``explain/<job>/skipped.txt``),
never as a crash; every job checks afterwards that it left no hook on the model.

Every job gets the run's :class:`fer_analysis.run_labels.RunContext`: its ``target``
(``expression`` or ``identity``: an identity run's classes are its identities), class names,
and whether it was trained with the AU loss. A run trained with the AU alignment loss gets a
warning, printed by ``fer-orch explain`` before the jobs start and kept in each job's
``summary.json`` (``warnings``): paper 001 asks whether a network learns AUs without being
told, and the AU loss tells it. ``spec.compare_run`` (``--compare-run``) loads a second run
and its own test split for the ``backtrack`` job, which scores each network on its own test
misclassifications and backtracks the explained run's test images through both, leaving out
those the second run trained or validated on (:func:`split_overlap`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from fer_analysis.jobs import ExplainSpec, canonical_job, run_job
from fer_analysis.run_labels import CompareRun, RunContext, au_loss_used, class_names_for, run_target
from fer_models.errors import ConfigError
from orchestrator import tracking
from orchestrator.actors import resolve_device, run_tasks, trained_runs

__all__ = ["ExplainSpec", "explain_one", "explain_runs", "run_warnings"]

COMPARE_JOBS = ("backtrack",)  # the jobs that read spec.compare_run


def run_warnings(cfg: Any) -> list[str]:
    """What a user must know before reading a run's explanations (one sentence each)."""
    out = []
    if au_loss_used(cfg):
        out.append(
            f"trained with the AU alignment loss (λ={cfg.lam}, layers "
            f"{'+'.join(str(x) for x in cfg.layers)}): its layers were told where the action units "
            "are, so filter<->AU correspondences (paper 001's question: does a network learn AUs without being "
            "told?) are circular for this run; explain a run trained without --au for that question")
    return out


def _load_data(cfg: Any, spec: ExplainSpec, job: str):
    """The loader a job reads (its registered split), never augmented, and the class count."""
    from fer_analysis.registry import JOBS
    from fer_models.data.dataset import build_loaders

    data_cfg = dataclasses.replace(cfg.data, augment=False, options={**cfg.data.options, **spec.data_options})
    loaders = build_loaders(data_cfg, spec.batch_size, cfg.seed, progress=False)
    return getattr(loaders, JOBS.meta(job)["split"]), loaders.num_classes


def _context(run_id: str, cfg: Any, loader: Any, num_classes: int | None, spec: ExplainSpec, job: str,
             load_model: Callable[..., Any], uri: str | None, device: str, model: Any = None) -> RunContext:
    """The run's context for its jobs; loads the ``--compare-run`` model for the jobs that read it."""
    target = run_target(cfg)
    names = class_names_for(target, num_classes, loader) if num_classes else None
    if num_classes and getattr(model, "class_names", None):  # a class subset: the run's own output names
        names = list(model.class_names)
    compare = None
    if spec.compare_run and job in COMPARE_JOBS:
        other, other_cfg = load_model(spec.compare_run, uri, device)
        compare = CompareRun(spec.compare_run, other.eval(), run_target(other_cfg))
        own = _own_test(other_cfg, spec, job)
        if own is not None and getattr(loader, "dataset", None) is not None:
            compare.loader = own
            compare.exclude, compare.overlap = split_overlap(loader.dataset.cache_dir, own.dataset.cache_dir)
    return RunContext(run_id, target, names, au_loss_used(cfg), compare)


def _own_test(other_cfg: Any, spec: ExplainSpec, job: str):
    """The --compare-run run's own test loader (None for configs without data: fakes)."""
    if getattr(other_cfg, "data", None) is None:
        return None
    return _load_data(other_cfg, spec, job)[0]


def split_overlap(cache_a: Any, cache_b: Any) -> tuple[frozenset, dict[str, int]]:
    """Which test images of run a (cache ``cache_a``) are training or validation images of run b,
    as rows of a's test split, and the overlap counts both ways (by image file path; paper 003's
    expression and identity splits are drawn independently from the same images)."""
    import numpy as np

    from fer_models.data.cache import load_split

    def paths(cache: Any, split: str) -> np.ndarray:
        return np.asarray(load_split(cache, split).get("path", np.zeros(0, str))).astype(str)

    test_a, test_b = paths(cache_a, "test"), paths(cache_b, "test")
    seen_b = set(paths(cache_b, "train")) | set(paths(cache_b, "val"))
    seen_a = set(paths(cache_a, "train")) | set(paths(cache_a, "val"))
    exclude = frozenset(i for i, p in enumerate(test_a) if p in seen_b)
    return exclude, {"a_test": len(test_a), "a_test_in_b_trainval": len(exclude), "b_test": len(test_b),
                     "b_test_in_a_trainval": int(sum(p in seen_a for p in test_b))}


def explain_one(
    run_id: str,
    job: str,
    spec: ExplainSpec,
    uri: str | None = None,
    *,
    load_model: Callable[..., Any] | None = None,
    load_data: Callable[..., Any] | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """One (run, job) task, inside an actor or in-process. Returns a JSON-able summary with
    ``status`` ok / skipped. ``load_model`` / ``load_data`` default to MLflow + fer_models
    (tests pass small fakes)."""
    from fer_analysis.hooks import NotApplicableError, assert_no_hooks

    t0 = time.perf_counter()
    job = canonical_job(job)
    device = resolve_device(spec.device)
    load_model = load_model or tracking.load_trained_model
    model, cfg = load_model(run_id, uri, device)
    loader, num_classes = (load_data or _load_data)(cfg, spec, job)
    if run_target(cfg) != "expression":
        num_classes = None  # the loader counts expressions; the jobs read the network's classes from its logits
    context = _context(run_id, cfg, loader, num_classes, spec, job, load_model, uri, device, model)
    summary: dict[str, Any] = {"run_id": run_id, "job": job, "method": cfg.method,
                               "target": context.target, "warnings": run_warnings(cfg),
                               "compare_run": context.compare.run_id if context.compare else None,
                               "spec": dataclasses.asdict(spec)}
    with tempfile.TemporaryDirectory(prefix=f"fer-explain-{job}-") as tmp:
        out = Path(tmp)
        try:
            metrics = run_job(job, model, loader, out, spec, num_classes=num_classes, device=device,
                              context=context)
            summary.update(status="ok", reason="", metrics=metrics)
        except NotApplicableError as e:
            (out / "skipped.txt").write_text(str(e) + "\n")
            summary.update(status="skipped", reason=str(e), metrics={})
        finally:
            assert_no_hooks(model)
            if context.compare is not None:
                assert_no_hooks(context.compare.model)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        summary["files"] = sorted([p.name for p in out.iterdir()] + ["summary.json"])
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if log:
            tracking.log_to_run(run_id, out, f"explain/{job}", summary["metrics"], uri)
    return summary


def explain_runs(
    run_id: str,
    spec: ExplainSpec | None = None,
    *,
    uri: str | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec.jobs`` on ``run_id`` (a trial, or every trial of a grid parent) on Ray actors
    (``num_actors=0``: in this process).

    Returns one summary per (run, job), ``status`` ok / skipped / failed. A user mistake
    found before any work (unknown run or job, a ``--compare-run`` that is a grid or reads
    images of another size) raises at once; a failing job does not stop the others.
    ``warn(message)`` is called before any job starts for each :func:`run_warnings` of each run.
    """
    spec = (spec or ExplainSpec()).check()
    uri = tracking.resolve_uri(uri)
    runs = trained_runs(run_id, uri, warn)  # runs without weights: one sentence (or skipped), before Ray
    configs = {r: tracking.load_run_config(r, uri) for r in runs}
    if spec.compare_run:
        other = tracking.resolve_runs(spec.compare_run, uri)
        if other != [spec.compare_run]:
            raise ConfigError(f"--compare-run needs one trial run, but '{spec.compare_run}' is a grid parent; "
                              "pass one of its trials")
        trained_runs(spec.compare_run, uri)
        other_cfg = tracking.load_run_config(spec.compare_run, uri)
        for r, cfg in configs.items():
            if cfg.data.image_size != other_cfg.data.image_size:
                raise ConfigError(f"--compare-run {spec.compare_run[:8]} reads {other_cfg.data.image_size} px images "
                                  f"but run {r[:8]} reads {cfg.data.image_size} px; compare runs trained on the same "
                                  "image size")
    for r, cfg in configs.items():
        for message in run_warnings(cfg):
            (warn or (lambda m: None))(f"run {r[:8]}: {message}")
    tasks = [(r, j, spec, uri) for r in runs for j in spec.jobs]
    outcomes = run_tasks(explain_one, tasks, desc="explain", unit="job", device=spec.device, address=address,
                         num_actors=num_actors, progress=progress)
    return [o.result if o.error is None else
            {"run_id": o.args[0], "job": o.args[1], "status": "failed", "reason": o.error, "metrics": {}}
            for o in outcomes]
