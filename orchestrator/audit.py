"""``fer-orch audit``: a trained network of the zoo (or of a grid run) scored on a dataset or photos.

:func:`audit_runs` runs one task per (model, dataset) and one per (model, photo folder) on the
shared actor runner (``orchestrator.actors.run_tasks``, the runner of ``fer-orch explain``); each
task logs one MLflow run (tag ``fer_orch.kind`` = ``audit`` or ``audit-images``) in the
experiment (default ``fer-orch``, where ``fer-orch report`` finds it beside the grid's runs):

- :func:`audit_one`: the network's test-split scores (``fer_analysis.audit.score_split``: CL,
  CAM-COS under both definitions, faithfulness, each with its interval), the matrices and
  per-class mean maps (``maps/mean_{cam,att,au}.png``, ``mean_maps.npz``), the per-face values
  (``per_face.csv``), and the explain jobs asked for with ``--job`` (under ``jobs/<job>/``);
- :func:`audit_images_one`: per photo the predicted class, its probability and the CAM-COS of
  the predicted class (``predictions.csv``), and an overlay PNG per photo (``overlays/``),
  also copied to ``--out``.

The data of a zoo model is the dataset read at the model's input side and channels,
unnormalised ([0, 1]; the model normalises, ``fer_models.zoo.ZooModel``) and never augmented;
faces are cropped by the data pipeline as for training. ``--run`` audits a grid's trained
network on its own data config instead, so both are scored by the same code.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_models.errors import ConfigError
from orchestrator import tracking
from orchestrator.actors import resolve_device, run_tasks

AUDIT_KIND, IMAGES_KIND = "audit", "audit-images"


@dataclass(frozen=True)
class AuditSpec:
    """What one ``fer-orch audit`` call computes, for every model and dataset of it."""

    model_options: dict = field(default_factory=dict)  # weights, arch, classes, input, layers (bring your own)
    cam_class: str = "GradCAM"  # a pytorch-grad-cam class: GradCAM, GradCAMPlusPlus, LayerCAM, ...
    codebook: str = "paper002"
    au_source: str = "codebook"
    data_options: dict = field(default_factory=dict)
    faith_n: int = 32
    faith_steps: int = 6
    jobs: tuple[str, ...] = ()  # explain jobs also run (topn, filter-au, block-maps, ...)
    probes: tuple[str, ...] = ()  # probes across the layers (silhouette, valence-arousal, maps, faces, correct), on the test split
    probe_samples: int = 500
    top_n: int = 8
    filters: int = 10
    max_images: int | None = 500
    landmarks: str = "dlib"  # the backend finding the faces of --images photos
    batch_size: int = 64
    device: str = "auto"
    experiment: str = "fer-orch"
    out: str | None = None  # where --images overlays are copied (default FER_ORCH_HOME/audit/<model>)

    def check(self) -> "AuditSpec":
        import importlib

        from fer_analysis.jobs import ExplainSpec

        if not hasattr(importlib.import_module("pytorch_grad_cam"), self.cam_class):
            raise ConfigError(f"--cam '{self.cam_class}' is not a pytorch-grad-cam class (GradCAM, GradCAMPlusPlus, "
                              "LayerCAM, XGradCAM, EigenCAM, ...)")
        if self.faith_n < 0 or self.faith_steps < 1:
            raise ConfigError(f"--faithfulness-n must be >= 0 and --faithfulness-steps >= 1, got {self.faith_n} "
                              f"and {self.faith_steps}")
        jobs = ExplainSpec(jobs=self.jobs).check().jobs if self.jobs else ()
        from fer_analysis.registry import PROBES

        for p in self.probes:
            PROBES.get(p)
        return dataclasses.replace(self, jobs=jobs)


def load_model(name: str, spec: AuditSpec, device: str):
    """``(model, data config, label, tags)``: a zoo entry with its input spec, or ``run:<id>``,
    a trained run with its own data config (never augmented) and its grid tags."""
    from fer_models.registry import MODELS

    if name.startswith("run:"):
        model, cfg = tracking.load_trained_model(name[4:], None, device)
        au = "w/ AU" if cfg.au else "w/o AU"
        tags = {"zoo": "false", "method": cfg.method, "au": str(bool(cfg.au)).lower(), "seed": str(cfg.seed),
                "trained_run": name[4:], "group": f"{cfg.method} {au} (grid)"}
        return model.eval(), dataclasses.replace(cfg.data, augment=()), f"{cfg.method} (run {name[4:12]})", tags
    entry = MODELS.get(name)()
    model = entry.load(cam_class=spec.cam_class, **spec.model_options).to(device).eval()
    return model, model.spec, name, {"zoo": "true", "group": name, "weights": entry.weights, "crop": model.spec.crop}


def data_config(model, base, dataset: str, spec: AuditSpec):
    """The DataConfig a model reads ``dataset`` with: a zoo model's input side and channels, [0, 1]."""
    from fer_models.config import DataConfig

    if isinstance(base, DataConfig):
        return dataclasses.replace(base, dataset=dataset, options={**base.options, **spec.data_options})
    return DataConfig(dataset=dataset, image_size=base.size, color=base.color, normalize="none", augment=(),
                      codebook=spec.codebook, au_source=spec.au_source, options=dict(spec.data_options), num_workers=0)


def _write_per_face(per_face: dict[str, np.ndarray], path: Path) -> None:
    cols = [k for k, v in per_face.items() if len(v) == len(per_face.get("label", v))]
    extra = {k: v for k, v in per_face.items() if k not in cols}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(zip(*(per_face[c].tolist() for c in cols)))
    for k, v in extra.items():  # the faithfulness subset: its own length
        np.savetxt(path.with_name(f"per_face_{k}.csv"), v, fmt="%.6g", header=k, comments="")


def _run_jobs(model, loaders, out: Path, spec: AuditSpec, num_classes: int, device: str) -> dict[str, Any]:
    from fer_analysis.hooks import NotApplicableError
    from fer_analysis.jobs import ExplainSpec, run_job
    from fer_analysis.registry import JOBS

    espec = ExplainSpec(jobs=spec.jobs, top_n=spec.top_n, filters=spec.filters, max_images=spec.max_images,
                        batch_size=spec.batch_size, device=device, permutations=200)
    status, metrics = {}, {}
    for job in spec.jobs:
        folder = out / "jobs" / job
        folder.mkdir(parents=True, exist_ok=True)
        try:
            loader = getattr(loaders, JOBS.meta(job)["split"])
            got = run_job(job, model, loader, folder, espec, num_classes=num_classes, device=device)
            metrics.update({f"{job}_{k}": float(v) for k, v in got.items() if isinstance(v, (int, float))})
            status[job] = "ok"
        except NotApplicableError as e:
            (folder / "skipped.txt").write_text(str(e) + "\n")
            status[job] = f"skipped: {e}"
    return {"status": status, "metrics": metrics}


def _run_probes(model, loader, out: Path, spec: AuditSpec, device: str) -> dict[str, float]:
    """Paper 004's probes on the layer embeddings of ``spec.probe_samples`` test faces
    (``fer_analysis.embeddings``: the model's tap layers and the logits), without UMAP."""
    from fer_analysis.embeddings import collect_embeddings
    from fer_analysis.registry import PROBES

    emb = collect_embeddings(model, loader, None, n_samples=spec.probe_samples, device=device,
                             thumbnails=64 if "faces" in spec.probes else None)
    metrics: dict[str, float] = {}
    for name in spec.probes:
        res = PROBES.get(name)(emb, out / "probe" / name, control=None, seed=0, n_pcs=10, umap=False)
        metrics.update({f"probe_{k}": float(v) for k, v in res.metrics.items()})
    return metrics


def _start_run(uri: str | None, experiment: str, kind: str, name: str, tags: dict[str, str]) -> str:
    from orchestrator.tracking.layout import KIND_TAG
    from orchestrator.tracking.provenance import package_versions

    exp = tracking.ensure_experiment(experiment, uri)
    return tracking.client(uri).create_run(exp, tags={KIND_TAG: kind, **package_versions(), **tags},
                                           run_name=name).info.run_id


def _finish_run(run_id: str, folder: Path, metrics: dict[str, float], params: dict[str, Any], uri: str | None) -> None:
    from mlflow.entities import Metric, Param

    c = tracking.client(uri)
    now = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    c.log_artifacts(run_id, str(folder))
    c.set_terminated(run_id, "FINISHED")


def audit_one(name: str, dataset: str, spec: AuditSpec, uri: str | None = None) -> dict[str, Any]:
    """One (model, dataset) audit, inside an actor or in-process; returns a JSON-able summary."""
    from fer_analysis.audit import score_split
    from fer_models.data.dataset import build_loaders
    from fer_models.metrics import EvalResult, save_figures

    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    model, base, label, tags = load_model(name, spec, device)
    dcfg = data_config(model, base, dataset, spec)
    loaders = build_loaders(dcfg, spec.batch_size, 0, progress=False)
    k = loaders.num_classes
    if hasattr(model, "restrict"):
        model.restrict(k)
    scores = score_split(model, loaders.test, loaders.test.dataset, num_classes=k, codebook=dcfg.codebook,
                         faith_n=spec.faith_n, faith_steps=spec.faith_steps, device=device)
    run_id = _start_run(uri, spec.experiment, AUDIT_KIND, f"audit {label} on {dataset}",
                        {"model": label, "dataset": dataset, "cam_class": spec.cam_class, **tags})
    with tempfile.TemporaryDirectory(prefix="fer-audit-") as tmp:
        out = Path(tmp)
        ev = scores.evaluation
        save_figures(EvalResult(ev.metrics, ev.confusion, ev.cosine_matrix, scores.mean_maps), out, label)
        np.savez_compressed(out / "mean_maps.npz", **{k_: np.asarray(v, np.float32) for k_, v in scores.mean_maps.items()})
        _write_per_face(scores.per_face, out / "per_face.csv")
        jobs = _run_jobs(model, loaders, out, spec, k, device) if spec.jobs else {"status": {}, "metrics": {}}
        if spec.probes:
            jobs["metrics"].update(_run_probes(model, loaders.test, out, spec, device))
            jobs["status"].update({f"probe {p}": "ok" for p in spec.probes})
        summary = {"run_id": run_id, "model": label, "dataset": dataset, "status": "ok",
                   "metrics": {**scores.metrics, **jobs["metrics"]}, "jobs": jobs["status"],
                   "intervals": {k_: dataclasses.asdict(v) for k_, v in scores.intervals.items()},
                   "seconds": round(time.perf_counter() - t0, 2)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        params = {"model": label, "dataset": dataset, "image_size": dcfg.image_size, "color": dcfg.color,
                  "normalize": dcfg.normalize, "codebook": dcfg.codebook, "au_source": dcfg.au_source,
                  "cam_class": spec.cam_class, "faithfulness_n": spec.faith_n,
                  **{k: tags[k] for k in ("weights", "crop", "trained_run") if k in tags}}
        _finish_run(run_id, out, summary["metrics"], params, uri)
    return summary


def audit_images_one(name: str, folder: str, spec: AuditSpec, uri: str | None = None) -> dict[str, Any]:
    """One (model, photo folder) audit: predictions and overlays (see the module docstring)."""
    import shutil

    from fer_models import paths
    from fer_analysis.audit import image_files, predict_faces, prepare_faces, save_overlays

    model, base, label, _ = load_model(name, spec, "cpu")  # a few photos: the CPU
    model.restrict(7)
    files = image_files(folder)
    faces = prepare_faces(files, base.size, spec.landmarks)
    rows = predict_faces(model, faces, base.channels, codebook=spec.codebook)
    out_dir = Path(spec.out) if spec.out else paths.home() / "audit" / name
    run_id = _start_run(uri, spec.experiment, IMAGES_KIND, f"audit {label} on {Path(folder).name}",
                        {"model": label, "images": str(Path(folder).resolve())})
    with tempfile.TemporaryDirectory(prefix="fer-audit-img-") as tmp:
        out = Path(tmp)
        overlays = save_overlays(faces, rows, out / "overlays")
        with open(out / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "face", "pred", "prob", "cam_cos"])
            for r in rows:
                w.writerow([r["file"], r["face"], r.get("pred", ""), f"{r.get('prob', float('nan')):.4f}",
                            f"{r.get('cam_cos', float('nan')):.4f}"])
        out_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for p in [*overlays, out / "predictions.csv"]:
            copied.append(str(out_dir / p.name))
            shutil.copy2(p, out_dir / p.name)
        _finish_run(run_id, out, {"faces": float(sum(r["face"] for r in rows))},
                    {"model": label, "images": folder, "landmarks": spec.landmarks}, uri)
    keep = ("file", "face", "pred", "prob", "cam_cos")
    return {"run_id": run_id, "model": label, "images": folder, "status": "ok",
            "rows": [{k: r.get(k) for k in keep} for r in rows], "files": copied}


def audit_runs(models: list[str], datasets: list[str], images: list[str], spec: AuditSpec, *,
               uri: str | None = None, address: str | None = None, num_actors: int | None = None,
               progress: bool = True) -> list[dict[str, Any]]:
    """Every (model, dataset) and (model, folder) task on Ray actors (``num_actors=0``: in this
    process); a failed task is a summary with ``status`` failed and its one-line reason."""
    from fer_analysis.audit import image_files
    from fer_models.registry import DATASETS, MODELS

    spec = spec.check()
    if not models:
        raise ConfigError(f"pass --model (one of {', '.join(MODELS.names())}) or --run RUN_ID")
    if not datasets and not images:
        raise ConfigError("pass --dataset NAME and/or --images FOLDER: what to audit the model on")
    for m in models:
        if not m.startswith("run:"):
            MODELS.get(m)().check(**spec.model_options)
    for d in datasets:
        DATASETS.get(d)
    if images and any(m.startswith("run:") for m in models):
        raise ConfigError("--images audits zoo models (--model); a trained run (--run) is audited on --dataset")
    for folder in images:
        image_files(folder)  # a missing or empty folder: one sentence, before Ray
    uri = tracking.resolve_uri(uri)
    tasks = [(audit_one, (m, d, spec, uri)) for m in models for d in datasets]
    tasks += [(audit_images_one, (m, f, spec, uri)) for m in models for f in images]
    outcomes = run_tasks(_dispatch, [(fn.__name__, args) for fn, args in tasks], desc="audit", unit="audit",
                         device=spec.device, address=address, num_actors=num_actors, progress=progress)
    return [o.result if o.error is None else
            {"model": o.args[1][0], "dataset": o.args[1][1], "status": "failed", "reason": o.error}
            for o in outcomes]


def _dispatch(fn_name: str, args: tuple) -> dict[str, Any]:
    """The actors' entry point: run :func:`audit_one` or :func:`audit_images_one` by name."""
    return {"audit_one": audit_one, "audit_images_one": audit_images_one}[fn_name](*args)
