"""Probing jobs (paper 004) on trained runs: Ray actors that log back to MLflow.

``probe_runs(run_id, spec)`` expands a grid's parent run to its trial children
(``tracking.resolve_runs``) and runs one task per run on the shared actor runner
(``orchestrator.actors``, the same as ``fer-orch explain``). Each task (:func:`probe_one`):

1. loads the run's model (``tracking.load_trained_model``) and builds a probe set from the
   run's ``DataConfig`` (or ``--dataset``) and the chosen split (test by default; ``all``
   joins train, val and test, for datasets read for analysis only), never augmented:
   ``n_samples`` rows drawn across identities, evenly spaced within each
   (``fer_analysis.probeset``; ``--sampling random`` for a seeded random sample);
2. collects the layer embeddings (``fer_analysis.embeddings``: layers above
   ``max_features`` values as their exact principal components, from the Gram matrix held
   within ``pca_memory_mb``), and with ``untrained_control`` the same for ``build_model(cfg)``
   freshly initialised under the run's seed (paper 004's NN3 control);
3. runs the requested probes (``fer_analysis.registry.PROBES``) into a temp dir and logs
   it under ``probe/`` of the probed run, with the probes' scalar metrics
   (``silhouette_identity_<layer>``, ``va_PC1_valence_r``, ...). The probes are told the
   run's target (``correct`` compares the outputs with identities on an identity run), and
   small pictures of the probe set are kept when ``faces`` draws its face strips.

With ``compare`` the second run is probed too and each probed run gets
``probe/compare_<other>/`` (both silhouette curves, CSV of differences, crossover layers).

Probes are not entries of the explain-job registry but have the same shape: one registered
function per file (``fer_analysis.registry.PROBES``), run per trained run by the same runner.
They stay a registry of their own because a probe's input is not a model and a loader but the
layer embeddings, which one task collects once per run (with the untrained control) and hands
to every requested probe; as explain jobs each probe would reload the model and re-collect them.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fer_analysis.run_labels import run_target
from fer_models.errors import ConfigError, FerOrchError
from orchestrator import tracking
from orchestrator.actors import resolve_device, run_tasks, trained_runs

DEFAULT_PROBES = ("silhouette", "valence-arousal", "maps", "faces", "correct")
THUMBNAIL_PX = 64  # the pictures of the probe set kept for the face strips
PROBE_SPLITS = ("test", "val", "train", "all")
SAMPLINGS = ("identity", "random")


@dataclass(frozen=True)
class ProbeSpec:
    """What a probe job computes; the same for every run of one ``fer-orch probe`` call."""

    layers: tuple[str, ...] | None = None  # None: the model's tap_layers() (light CNN: paper 004's names), the logits
    probes: tuple[str, ...] = DEFAULT_PROBES
    dataset: str | None = None  # None: the run's own DataConfig.dataset
    split: str = "test"  # train, val, test, or all (the three joined)
    n_samples: int = 1000
    sampling: str = "identity"  # identity: spread over identities (fer_analysis.probeset); random: seeded sample
    big: str = "pca"  # layers above max_features: exact PCA ("pca") or average pooling ("pool")
    pca_memory_mb: float = 1024  # held activations while the Gram matrices are accumulated
    untrained_control: bool = False
    n_pcs: int = 10
    umap: bool = True
    umap_max_samples: int = 2000
    umap_n_epochs: int = 200
    batch_size: int = 64
    max_features: int = 4096
    seed: int = 0
    device: str = "auto"  # auto: GPU actors where the cluster has GPUs (orchestrator.actors)
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword options for every probe
    data_options: dict[str, Any] = field(default_factory=dict)  # reader options of the probed data (--data-opt)

    def check(self) -> "ProbeSpec":
        """Fail on user mistakes before any run is loaded."""
        from fer_analysis.registry import PROBES

        for p in self.probes:
            PROBES.get(p)
        if self.split not in PROBE_SPLITS:
            raise ConfigError(f"probe split must be one of {', '.join(PROBE_SPLITS)}, got '{self.split}'")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got '{self.sampling}'")
        if self.big not in ("pca", "pool"):
            raise ConfigError(f"big layers are reduced by 'pca' or 'pool', got '{self.big}'")
        if self.pca_memory_mb <= 0:
            raise ConfigError(f"--pca-memory-mb must be positive, got {self.pca_memory_mb}")
        if self.n_samples < 3:
            raise ConfigError(f"--n-samples must be at least 3 (silhouette needs clusters), got {self.n_samples}")
        if self.dataset is not None:
            from fer_models.registry import DATASETS

            DATASETS.get(self.dataset)
        return self


def _split_dataset(loaders: Any, split: str):
    """The dataset of ``split`` (``all``: a loaders' own ``all`` split where it has one, else
    train + val + test joined), or None when the loaders carry no dataset (fakes)."""
    from fer_analysis.probeset import ConcatSplits

    if split == "all" and not hasattr(loaders, "all"):
        parts = [getattr(getattr(loaders, s, None), "dataset", None) for s in ("train", "val", "test")]
        return ConcatSplits(parts) if all(p is not None for p in parts) else None
    return getattr(getattr(loaders, split), "dataset", None)


def _load_probe_set(cfg: Any, spec: ProbeSpec):
    """(loader, description) of the probe set of the run's DataConfig (or ``spec.dataset``):
    ``spec.n_samples`` rows of ``spec.split`` drawn by ``spec.sampling``, never augmented."""
    import numpy as np

    from fer_analysis.probeset import describe, per_identity_rows, rows_loader
    from fer_models.data.dataset import build_loaders

    data_cfg = dataclasses.replace(cfg.data, augment=False)
    if spec.dataset is not None and spec.dataset != data_cfg.dataset:
        data_cfg = dataclasses.replace(data_cfg, dataset=spec.dataset, root=None, options={})
    if spec.data_options:
        data_cfg = dataclasses.replace(data_cfg, options={**data_cfg.options, **spec.data_options})
    loaders = build_loaders(data_cfg, spec.batch_size, cfg.seed, progress=False, trainable=False)
    ds = _split_dataset(loaders, spec.split)
    if ds is None or not hasattr(ds, "identity"):
        return getattr(loaders, spec.split), {}
    identity = np.asarray(ds.identity).reshape(-1)
    if spec.sampling == "identity":
        rows = per_identity_rows(identity, spec.n_samples, spec.seed)
    else:
        rng = np.random.default_rng(spec.seed)
        rows = np.sort(rng.choice(len(identity), min(spec.n_samples, len(identity)), replace=False))
    info = getattr(ds, "info", None)
    names = info.meta.get("identities") if info is not None else None
    return rows_loader(ds, rows, spec.batch_size), {"sampling": spec.sampling, "split": spec.split,
                                                     "dataset": data_cfg.dataset, **describe(identity, rows, names)}


def _untrained(cfg: Any, device: str, num_classes: int | None = None):
    """The run's architecture, freshly initialised with the run's seed (the control); with
    ``num_classes`` its output width (an identity run has one class per identity)."""
    import torch

    from fer_models.methods import build_model

    torch.manual_seed(int(cfg.seed))
    return build_model(cfg, num_classes).to(device).eval()


def _output_classes(model: Any) -> dict[str, Any]:
    """``{"classes": ...}``, the project label of each output, for a network trained on a class
    subset (``model.class_names``, from ``tracking.load_trained_model``); else nothing."""
    from fer_models.labels import classes_of_names

    names = getattr(model, "class_names", None)
    return {"classes": list(classes_of_names(names))} if names else {}


def probe_one(
    run_id: str,
    spec: ProbeSpec,
    uri: str | None = None,
    *,
    load_model: Callable[..., Any] | None = None,
    load_probe_set: Callable[..., Any] | None = None,
    build_control: Callable[..., Any] | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """One run's probe job (runs inside an actor, or in-process). Returns a JSON-able summary.

    The ``load_*`` / ``build_control`` hooks default to MLflow + fer_models; tests replace
    them with small fakes.
    """
    from fer_analysis.embeddings import collect_embeddings
    from fer_analysis.registry import PROBES

    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    model, cfg = (load_model or tracking.load_trained_model)(run_id, uri, device)
    loaded = (load_probe_set or _load_probe_set)(cfg, spec)
    loader, probe_set = loaded if isinstance(loaded, tuple) else (loaded, {})
    kw = dict(n_samples=spec.n_samples, max_features=spec.max_features, big=spec.big,
              memory_mb=spec.pca_memory_mb, device=device)
    emb = collect_embeddings(model, loader, spec.layers, **kw,
                             thumbnails=THUMBNAIL_PX if "faces" in spec.probes else None)
    control = None
    if spec.untrained_control:
        width = emb.layers[emb.output_layer].shape[1] if emb.output_layer in emb.layers else None
        net = (build_control(cfg, device) if build_control else _untrained(cfg, device, width))
        control = collect_embeddings(net, loader, spec.layers, **kw)
    t_emb = time.perf_counter() - t0
    metrics: dict[str, float] = {}
    tables: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    timings: dict[str, float] = {"embeddings_s": t_emb}
    opts = {**dict(n_pcs=spec.n_pcs, umap=spec.umap, umap_max_samples=spec.umap_max_samples,
                   umap_n_epochs=spec.umap_n_epochs, seed=spec.seed, target=run_target(cfg)),
            **_output_classes(model), **spec.options}
    with tempfile.TemporaryDirectory(prefix="fer-probe-") as tmp:
        out = Path(tmp)
        for name in spec.probes:
            t = time.perf_counter()
            res = PROBES.get(name)(emb, out / name, control=control, **opts)
            timings[f"{name}_s"] = time.perf_counter() - t
            metrics.update(res.metrics)
            tables.update(res.tables)
            notes.update({f"{name}.{k}": v for k, v in res.notes.items()})
        summary = {
            "run_id": run_id,
            "n_samples": emb.n,
            "layers": emb.names,
            "pooled": {k: bool(v) for k, v in emb.pooled.items()},
            "reduced": dict(emb.reduced),
            "target": run_target(cfg),
            "probe_set": probe_set,
            "shapes": {k: list(v) for k, v in emb.shapes.items()},
            "n_identities": int(len(set(emb.identity[emb.identity >= 0].tolist()))),
            "valence_known": int((emb.valence == emb.valence).sum()),
            "spec": {k: v for k, v in dataclasses.asdict(spec).items()},
            "notes": notes,
            "timings_s": timings,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        metrics["probe_n_samples"] = float(emb.n)
        if log:
            tracking.log_to_run(run_id, out, "probe", metrics, uri)
    timings["total_s"] = time.perf_counter() - t0
    return {**summary, "metrics": metrics, "tables": tables}


def _short(run_id: str) -> str:
    return run_id[:8]


def probe_runs(
    run_id: str,
    spec: ProbeSpec | None = None,
    *,
    compare: str | None = None,
    uri: str | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Probe ``run_id`` (a trial, or every trial of a grid's parent run) on Ray actors
    (``num_actors=0``: in this process); ``warn`` is told how many trials of a parent were
    skipped (FAILED, or without weights: :func:`orchestrator.actors.trained_runs`).

    Returns ``{"results": {run_id: summary}, "failed": {run_id: message}, "compare": {...}}``.
    Jobs that fail are reported, not fatal to the others; a user mistake found before any
    work (unknown run, probe, dataset) raises at once.
    """
    spec = (spec or ProbeSpec()).check()
    uri = tracking.resolve_uri(uri)
    runs = trained_runs(run_id, uri, warn)  # runs without weights: one sentence (or skipped), before Ray
    other = None
    if compare is not None:
        cmp_runs = tracking.resolve_runs(compare, uri)
        if len(cmp_runs) != 1:
            raise ConfigError(f"--compare needs one trial run, but '{compare}' is a grid parent; pass a child's id")
        other = trained_runs(cmp_runs[0], uri)[0]
        if "silhouette" not in spec.probes:
            spec = dataclasses.replace(spec, probes=(*spec.probes, "silhouette"))
    jobs = list(dict.fromkeys([*runs, *([other] if other else [])]))

    outcomes = run_tasks(probe_one, [(r, spec, uri) for r in jobs], desc="probe", unit="run", device=spec.device,
                         address=address, num_actors=num_actors, progress=progress)
    results = {o.args[0]: o.result for o in outcomes if o.error is None}
    failed = {o.args[0]: o.error for o in outcomes if o.error is not None}

    comparisons: dict[str, Any] = {}
    if other is not None and other in results:
        for rid in runs:
            if rid == other or rid not in results:
                continue
            comparisons[rid] = compare_and_log(results[rid], results[other], uri)
    if len(failed) == len(jobs) and len(jobs) == 1:
        raise FerOrchError(f"probing run {jobs[0]} failed: {failed[jobs[0]]}")
    return {"results": results, "failed": failed, "compare": comparisons}


def compare_and_log(res_a: dict[str, Any], res_b: dict[str, Any], uri: str | None = None, log: bool = True):
    """Silhouette comparison of two probe summaries, logged to run a under ``probe/compare_<b>``."""
    from fer_analysis.probes import compare_silhouettes

    a, b = res_a["run_id"], res_b["run_id"]
    with tempfile.TemporaryDirectory(prefix="fer-probe-cmp-") as tmp:
        res = compare_silhouettes(res_a["tables"]["silhouette"], res_b["tables"]["silhouette"],
                                  _short(a), _short(b), Path(tmp))
        if log:
            tracking.log_to_run(a, Path(tmp), f"probe/compare_{_short(b)}", None, uri)
    return {"table": res.tables["compare"], "crossover": res.tables["crossover"], "other": b}
