"""Explanation jobs (papers 000, 001, 003, 004) on trained runs: Ray actors logging to MLflow.

``explain_runs(run_id, spec)`` expands a grid's parent run to its trial children
(``tracking.resolve_runs``), makes one task per (run, job), spreads them over Ray actors
(one per CPU, or one per GPU with ``num_gpus=1`` where the cluster has GPUs) with a tqdm bar
over finished jobs. Each task (:func:`explain_one`):

1. loads the run's model (``tracking.load_trained_model``) and its data
   (``build_loaders`` on the run's ``DataConfig``, without augmentation): the *training*
   split for ``topn`` / ``filter-au`` (paper 001 ranks training images), the *test* split for
   ``backtrack`` (misclassified test faces, paper 003) and ``gradcam``;
2. runs the job of ``fer_analysis`` into a temporary folder (PNG + CSV/Markdown/JSON);
3. logs the folder under ``explain/<job>/`` of the explained run, with the job's metrics.

A job that does not apply to a model (backtracking on a CAM ResNet, guided backprop on an
ELU network) ends as ``skipped`` with the reason (also logged as ``explain/<job>/skipped.txt``),
never as a crash; every job checks afterwards that it left no hook on the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fer_models.errors import ConfigError, FerOrchError
from orchestrator import tracking

JOBS = ("topn", "filter-au", "backtrack", "gradcam")
TRAIN_SPLIT_JOBS = ("topn", "filter-au")


@dataclass(frozen=True)
class ExplainSpec:
    """What the explain jobs compute; the same for every run of one ``fer-orch explain`` call."""

    jobs: tuple[str, ...] = ("topn",)
    layer: str | None = None  # tap layer for topn / filter-au; None: the deepest conv layer
    n: int = 8  # top-N images per filter; cases for backtrack; images for gradcam
    filters: int = 10  # filters shown (paper 001 shows 10 of 256)
    max_images: int | None = 2000  # images scanned for topn / filter-au (None: the whole split)
    au_threshold: float = 0.0  # AU present when intensity > this
    bins: int = 20
    batch_size: int = 64
    device: str = "auto"

    def check(self) -> "ExplainSpec":
        """Fail on user mistakes before any run is loaded."""
        if not self.jobs:
            raise ConfigError(f"no explain job given; pass --job with one of: {', '.join(JOBS)}")
        bad = [j for j in self.jobs if j not in JOBS]
        if bad:
            raise ConfigError(f"unknown explain job(s) {', '.join(bad)}; known jobs: {', '.join(JOBS)}")
        if self.n < 1 or self.filters < 1:
            raise ConfigError(f"--n and the number of filters must be at least 1, got {self.n} and {self.filters}")
        return self


def _device(spec: ExplainSpec) -> str:
    if spec.device != "auto":
        return spec.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_data(cfg: Any, spec: ExplainSpec, job: str):
    """The loader a job reads: train split (topn, filter-au) or test split, never augmented."""
    from fer_models.data.dataset import build_loaders

    data_cfg = dataclasses.replace(cfg.data, augment=False)
    loaders = build_loaders(data_cfg, spec.batch_size, cfg.seed, progress=False)
    return (loaders.train if job in TRAIN_SPLIT_JOBS else loaders.test), loaders.num_classes


def run_job(job: str, model, loader, out_dir: Path, spec: ExplainSpec, *, num_classes: int | None = None,
            device: str = "cpu", progress: bool = False) -> dict[str, float]:
    """One explanation job on an in-memory model and loader (usable from a notebook)."""
    from fer_analysis.backtrack import run_backtrack
    from fer_analysis.explainers.gradcam import run_gradcam
    from fer_analysis.filter_au import run_filter_au
    from fer_analysis.topn import run_topn

    max_batches = None if spec.max_images is None else max(1, math.ceil(spec.max_images / spec.batch_size))
    if job == "topn":
        return run_topn(model, loader, out_dir, layer=spec.layer, n=spec.n, max_filters=spec.filters,
                        device=device, max_batches=max_batches, progress=progress)
    if job == "filter-au":
        return run_filter_au(model, loader, out_dir, layer=spec.layer, k=spec.filters, n=spec.n,
                             threshold=spec.au_threshold, bins=spec.bins, device=device,
                             max_batches=max_batches, progress=progress)
    if job == "backtrack":
        return run_backtrack(model, loader, out_dir, n=spec.n, device=device, progress=progress)
    if job == "gradcam":
        return run_gradcam(model, loader, out_dir, n=spec.n, num_classes=num_classes, device=device,
                           progress=progress)
    raise ConfigError(f"unknown explain job '{job}'; known jobs: {', '.join(JOBS)}")


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
    import torch

    from fer_analysis.hooks import NotApplicableError, assert_no_hooks

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    t0 = time.perf_counter()
    device = _device(spec)
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


def _worker_env() -> dict[str, str]:
    """What an actor needs to see the driver's code, data cache and MLflow store."""
    from fer_models import paths

    root = str(Path(__file__).resolve().parents[1])
    env = {"FER_ORCH_HOME": str(paths.home()),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    return env


def _actor_class(ray, num_gpus: float):
    @ray.remote(num_cpus=1, num_gpus=num_gpus)
    class ExplainActor:
        """Runs one (run, job) task at a time; keeps nothing between tasks."""

        def run(self, run_id: str, job: str, spec: ExplainSpec, uri: str | None) -> dict[str, Any]:
            return explain_one(run_id, job, spec, uri)

    return ExplainActor


def _message(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    err = cause if isinstance(cause, Exception) else err
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


def explain_runs(
    run_id: str,
    spec: ExplainSpec | None = None,
    *,
    uri: str | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run ``spec.jobs`` on ``run_id`` (a trial, or every trial of a grid parent) on Ray actors.

    Returns one summary per (run, job), ``status`` ok / skipped / failed. A user mistake
    found before any work (unknown run or job) raises at once; a failing job does not stop
    the others.
    """
    from tqdm.auto import tqdm

    from orchestrator.ray_utils import init_ray

    spec = (spec or ExplainSpec()).check()
    uri = tracking.resolve_uri(uri)
    runs = tracking.resolve_runs(run_id, uri)
    if not runs:
        raise FerOrchError(f"run '{run_id}' is a grid parent without trial children; pass a trial run id")
    tasks = [(r, j) for r in runs for j in spec.jobs]

    ray = init_ray(address)
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus and spec.device == "auto":
        n_act, per_gpu = min(len(tasks), num_actors or gpus), 1.0
    else:
        n_act, per_gpu = min(len(tasks), num_actors or max(1, int(res.get("CPU", 1)))), 0.0
    n_act = max(1, n_act)
    Actor = _actor_class(ray, per_gpu)
    actors = [Actor.options(runtime_env={"env_vars": _worker_env()}).remote() for _ in range(n_act)]
    pending = {actors[i % n_act].run.remote(r, j, spec, uri): (r, j) for i, (r, j) in enumerate(tasks)}
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(tasks), desc="explain", unit="job", disable=not progress)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                r, j = pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - one failed job must not stop the others
                    results.append({"run_id": r, "job": j, "status": "failed", "reason": _message(e), "metrics": {}})
                bar.update(1)
                bar.set_postfix(skipped=sum(x["status"] == "skipped" for x in results),
                                failed=sum(x["status"] == "failed" for x in results))
    finally:
        bar.close()
        for a in actors:
            ray.kill(a)
    order = {t: i for i, t in enumerate(tasks)}
    results.sort(key=lambda x: order.get((x["run_id"], x["job"]), 0))
    return results
