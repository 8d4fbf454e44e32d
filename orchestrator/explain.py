"""Explanation jobs (papers 000, 001, 002, 003, 004) on trained runs: Ray actors logging to MLflow.

``explain_runs(run_id, spec)`` expands a grid's parent run to its trial children
(``tracking.resolve_runs``) and runs one task per (run, job) on the shared actor runner
(``orchestrator.jobs``). Each task (:func:`explain_one`):

1. loads the run's model (``tracking.load_trained_model``) and the split its job reads (the
   job's ``split`` in ``fer_analysis.registry.JOBS``: ``train`` for ``topn`` / ``filter-au``,
   which rank training images as paper 001 does, ``test`` for ``backtrack`` and
   ``block-maps``), built by ``build_loaders`` on the run's ``DataConfig`` without augmentation;
2. runs the job (``fer_analysis.jobs``) into a temporary folder (PNG + CSV/Markdown/JSON);
3. logs the folder under ``explain/<job>/`` of the explained run, with the job's metrics.

A job that does not apply to a model (backtracking on a CAM ResNet, guided backprop on an
ELU network) ends as ``skipped`` with the reason (also logged as ``explain/<job>/skipped.txt``),
never as a crash; every job checks afterwards that it left no hook on the model.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from fer_analysis.jobs import ExplainSpec, canonical_job, run_job
from fer_models.errors import FerOrchError
from orchestrator import tracking
from orchestrator.jobs import resolve_device, run_tasks

__all__ = ["ExplainSpec", "explain_one", "explain_runs"]


def _load_data(cfg: Any, spec: ExplainSpec, job: str):
    """The loader a job reads (its registered split), never augmented, and the class count."""
    from fer_analysis.registry import JOBS
    from fer_models.data.dataset import build_loaders

    data_cfg = dataclasses.replace(cfg.data, augment=False)
    loaders = build_loaders(data_cfg, spec.batch_size, cfg.seed, progress=False)
    return getattr(loaders, JOBS.meta(job)["split"]), loaders.num_classes


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
    model, cfg = (load_model or tracking.load_trained_model)(run_id, uri, device)
    loader, num_classes = (load_data or _load_data)(cfg, spec, job)
    summary: dict[str, Any] = {"run_id": run_id, "job": job, "method": getattr(cfg, "method", None),
                               "spec": dataclasses.asdict(spec)}
    with tempfile.TemporaryDirectory(prefix=f"fer-explain-{job}-") as tmp:
        out = Path(tmp)
        try:
            metrics = run_job(job, model, loader, out, spec, num_classes=num_classes, device=device)
            summary.update(status="ok", reason="", metrics=metrics)
        except NotApplicableError as e:
            (out / "skipped.txt").write_text(str(e) + "\n")
            summary.update(status="skipped", reason=str(e), metrics={})
        finally:
            assert_no_hooks(model)
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
) -> list[dict[str, Any]]:
    """Run ``spec.jobs`` on ``run_id`` (a trial, or every trial of a grid parent) on Ray actors
    (``num_actors=0``: in this process).

    Returns one summary per (run, job), ``status`` ok / skipped / failed. A user mistake
    found before any work (unknown run or job) raises at once; a failing job does not stop
    the others.
    """
    spec = (spec or ExplainSpec()).check()
    uri = tracking.resolve_uri(uri)
    runs = tracking.resolve_runs(run_id, uri)
    if not runs:
        raise FerOrchError(f"run '{run_id}' is a grid parent without trial children; pass a trial run id")
    tasks = [(r, j, spec, uri) for r in runs for j in spec.jobs]
    outcomes = run_tasks(explain_one, tasks, desc="explain", unit="job", device=spec.device, address=address,
                         num_actors=num_actors, progress=progress)
    return [o.result if o.error is None else
            {"run_id": o.args[0], "job": o.args[1], "status": "failed", "reason": o.error, "metrics": {}}
            for o in outcomes]
