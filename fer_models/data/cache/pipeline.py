"""One build skeleton for every executor: resolve -> find -> write -> close/abort.

:func:`build` is the only code that turns a :class:`~fer_models.data.cache.key.CacheTarget`
into a cache. What differs between the serial path (:func:`prepare`, notebooks and
``build_loaders``) and the Ray Data path (``orchestrator.preprocess``) is the *executor*:
a context manager that, given the :class:`Stages` to run, starts whatever it needs (nothing;
a Ray actor pool) and yields a :class:`Run` whose ``batches(rows)`` streams the rows through
:func:`~fer_models.data.cache.stages.landmark_stage` then
:func:`~fer_models.data.cache.stages.au_stage`, in manifest order. The executor is only
started on a miss, so a cache hit neither constructs a backend nor starts Ray.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from fer_models.data.cache.key import CacheTarget, hash_inputs, key_inputs, resolve
from fer_models.data.cache.reader import CacheInfo, find_at
from fer_models.data.cache.rows import batch_rows, manifest_rows
from fer_models.data.cache.stages import au_stage, landmark_stage
from fer_models.data.cache.writer import CacheWriter
from fer_models.data.manifest import Manifest
from fer_models.errors import DatasetError


@dataclass(frozen=True)
class Stages:
    """What the two stages of one build run with (handed to the executor)."""

    backend: Any  # a LANDMARKS class, or an instance a caller passed
    codebook: Any
    image_size: int
    map_size: int
    batch_size: int
    au_source: str = "codebook"  # DataConfig.au_source, canonical
    au_ids: tuple[int, ...] | None = None  # the AU numbers of the rows' ``aus`` columns (rows.au_columns)


@dataclass
class Run:
    """An executor started for one build."""

    batches: Callable[[list[dict]], Iterator[dict]]  # rows -> stage output, manifest order
    meta: dict = field(default_factory=dict)  # added to meta.json ("pipeline", workers, ...)
    label: str = ""  # shown after the dataset name on the progress bar


Executor = Callable[[Stages], ContextManager[Run]]


def build(target: CacheTarget, map_size: int, image_size: int, executor: Executor, *,
          batch_size: int = 64, progress: bool = True) -> CacheInfo:
    """Find the cache of ``target`` or write it with ``executor``; returns its :class:`CacheInfo`.

    ``target`` comes from :func:`~fer_models.data.cache.key.resolve` (or ``cache_dir_for``)
    with the same ``map_size`` / ``image_size``. On any exception (a killed run included)
    the half-written folder is removed and nothing that looks like a cache is left.
    """
    found = find_at(target.dir)
    if found is not None:
        return found
    with build_lock(Path(target.dir)):
        found = find_at(target.dir)  # built by another process while this one waited
        if found is not None:
            return found
        return _build(target, map_size, image_size, executor, batch_size=batch_size, progress=progress)


@contextmanager
def build_lock(final_dir: Path):
    """Hold ``.<key>.lock`` beside the cache folder while it is built: a second process that
    wants the same cache waits for it (then finds it finished) instead of building it again.
    Holding the lock also makes every ``.<key>.tmp-*`` folder there an orphan of a killed
    build (``kill -9`` leaves it; a normal exception removes it), deleted here. The kernel
    releases it when its process dies, so a killed build never leaves a stale lock
    (:func:`fer_models.paths.exclusive_lock`)."""
    from fer_models.paths import exclusive_lock

    final_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(final_dir.parent / f".{final_dir.name}.lock"):
        for orphan in final_dir.parent.glob(f".{final_dir.name}.tmp-*"):
            shutil.rmtree(orphan, ignore_errors=True)
        yield


def _build(target: CacheTarget, map_size: int, image_size: int, executor: Executor, *,
           batch_size: int = 64, progress: bool = True) -> CacheInfo:
    manifest: Manifest = target.manifest
    if not manifest.samples:
        raise DatasetError(f"dataset '{manifest.dataset}' has no readable rows to preprocess; "
                           f"check its root {manifest.root}")
    inputs = key_inputs(manifest, target.backend, target.codebook, map_size, image_size, target.au_source)
    if hash_inputs(inputs) != target.key:
        raise ValueError(f"sizes {map_size}/{image_size} are not those cache key {target.key} was made with")
    from tqdm.auto import tqdm

    rows = manifest_rows(manifest)
    stages = Stages(target.backend, target.codebook, int(image_size), int(map_size), int(batch_size),
                    target.au_source, tuple(inputs["au_ids"]))
    with executor(stages) as run:
        writer = CacheWriter(target.dir, inputs, manifest)
        try:
            with tqdm(total=len(rows), desc=f"preprocess {manifest.dataset}{run.label}", unit="img",
                      disable=not progress) as bar:
                for batch in run.batches(rows):
                    writer.add(batch)
                    bar.update(len(batch["row"]))
            return writer.close(run.meta)
        except BaseException:
            writer.abort()
            raise


# ----------------------------------------------------------------------------- serial executor
def _device_for(backend_cls: Any) -> str:
    if getattr(backend_cls, "uses_gpu", False):
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def instantiate_backend(backend: Any) -> Any:
    """A backend class -> an instance on the GPU when it uses one and one exists."""
    return backend(device=_device_for(backend)) if isinstance(backend, type) else backend


@contextmanager
def serial(stages: Stages) -> Iterator[Run]:
    """The in-process executor: one backend, batches of ``stages.batch_size`` rows in a loop."""

    def batches(rows: list[dict]) -> Iterator[dict]:
        backend = instantiate_backend(stages.backend)
        for i in range(0, len(rows), stages.batch_size):
            batch = landmark_stage(batch_rows(rows[i : i + stages.batch_size]), backend, stages.image_size)
            yield au_stage(batch, stages.codebook, stages.map_size, stages.au_source, stages.au_ids)

    yield Run(batches, {"pipeline": "serial"})


def prepare(
    manifest: Manifest,
    backend: Any,
    codebook: Any,
    map_size: int,
    image_size: int,
    cache_root: str | Path | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    au_source: str = "codebook",
) -> CacheInfo:
    """Serial (no Ray) preprocessing into the same cache the Ray pipeline writes.

    ``backend``: LANDMARKS name, "auto", class or instance; ``codebook``: CODEBOOKS name
    or a Codebook; ``au_source``: the training map's source (``DataConfig.au_source``).
    Returns at once on a cache hit without constructing the backend.
    """
    target = resolve(manifest, backend, codebook, map_size, image_size, cache_root, au_source)
    return build(target, map_size, image_size, serial, batch_size=batch_size, progress=progress)
