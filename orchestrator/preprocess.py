"""Preprocessing with Ray Data (docs/architecture.md, step 2): the Ray executor of the cache.

:func:`preprocess` runs the one build skeleton of the cache
(:func:`fer_models.data.cache.build`: resolve -> find -> write -> close/abort) with
:func:`ray_executor`, so it differs from the serial path only in how batches are computed:

1. landmarks: an actor pool (a class UDF, so each actor builds its backend, and loads
   its weights, once), ``num_workers`` actors; GPU actors (``num_gpus`` = 1, or a fraction
   when there are more workers than GPUs) when the backend uses a GPU and the cluster has
   one, CPU actors otherwise;
2. AU maps: stateless tasks (cheap, vectorised numpy).

Both call the very stage functions of the serial path, and the driver consumes the
stream with ``iter_batches`` in manifest order (``preserve_order``) into the same shard
writer, so both write identical shards. A cache hit returns before Ray is even started.
Ray Data's own progress bars are turned off in favour of the skeleton's tqdm bar over rows.

On a multi-node cluster the image files must be readable at the same paths on every
node (shared storage), as Ray Data sends paths, not pixels; the cache is written by the
driver, under ``$FER_ORCH_HOME/cache`` unless ``cache_root`` says otherwise, which the
training trials must see too.

CPU budget: the AU stage asks for :data:`AU_STAGE_CPUS` of a CPU per task, and CPU
landmark actors share the rest (at most one CPU each), so a pool as large as the cluster
never starves the AU stage (Ray would otherwise wait forever for a free CPU).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from fer_models.data import cache as _cache
from fer_models.data.manifest import check_validation

AU_STAGE_CPUS = 0.25
#: a cache of at most this many rows whose landmarks the rows carry (``detects = False``:
#: synthetic ground truth, AffectNet's shipped points) is built in the driver when no worker
#: count is asked for: Ray Data's start-up costs more than such work (1,750 synthetic rows:
#: 9.6 s through Ray Data, 0.8 s in the driver, on the 2-core machine)
SERIAL_MAX_ROWS = 5000


class LandmarkStage:
    """Ray Data class UDF: one landmark backend per actor, reused for every batch.

    (Ray keeps the constructor arguments in the object store and logs a one-line
    "constructor arguments in the object store and max_restarts > 0" notice when the
    pool starts, ray-project/ray#53727; harmless on a healthy cluster.)
    """

    def __init__(self, backend_cls: Any, image_size: int, device: str):
        if device == "cpu" and "torch" in sys.modules:  # a torch backend: one actor ~ one CPU
            sys.modules["torch"].set_num_threads(1)
        self.backend = backend_cls(device=device)
        self.image_size = image_size

    def __call__(self, batch: dict) -> dict:
        return _cache.landmark_stage(batch, self.backend, self.image_size)


def _resources(ray, backend_cls: Any, num_workers: int | None) -> tuple[int, dict, str]:
    """(workers, per-actor resources, device) for the landmark pool on this cluster."""
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    if getattr(backend_cls, "uses_gpu", False) and gpus > 0:
        workers = int(num_workers or max(1, int(gpus)))
        cpu = max(0.0, min(1.0, (cpus - AU_STAGE_CPUS) / workers))  # decoding runs on the CPU
        return workers, {"num_gpus": min(1.0, gpus / workers), "num_cpus": cpu}, "cuda"
    workers = int(num_workers or max(1, int(cpus - AU_STAGE_CPUS)))
    per = min(1.0, (cpus - AU_STAGE_CPUS) / workers)
    if per <= 0:
        from fer_models.errors import ConfigError

        raise ConfigError(f"the Ray cluster has {cpus:g} CPUs, too few for {workers} landmark "
                          f"workers; pass fewer --workers")
    return workers, {"num_cpus": per}, "cpu"


def ray_executor(address: str | None = None, num_workers: int | None = None) -> _cache.Executor:
    """The Ray Data executor for :func:`fer_models.data.cache.build` (started on a miss only)."""

    @contextmanager
    def start(stages: _cache.Stages) -> Iterator[_cache.Run]:
        backend_cls = stages.backend if isinstance(stages.backend, type) else type(stages.backend)
        from orchestrator.ray_utils import init_ray

        ray = init_ray(address)
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        try:
            ctx.execution_options.preserve_order = True  # manifest order: same shards as serial
            ctx.enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # our summary says it all
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
            workers, resources, device = _resources(ray, backend_cls, num_workers)

            def batches(rows: list[dict]) -> Iterator[dict]:
                bs = stages.batch_size
                n_blocks = max(1, min(-(-len(rows) // bs), 256))  # about one batch a block
                ds = ray.data.from_items(rows, override_num_blocks=n_blocks)
                ds = ds.map_batches(
                    LandmarkStage,
                    fn_constructor_kwargs={"backend_cls": backend_cls, "image_size": stages.image_size,
                                           "device": device},
                    compute=ray.data.ActorPoolStrategy(size=workers),
                    batch_size=bs,
                    batch_format="numpy",
                    **resources,
                )
                ds = ds.map_batches(
                    _cache.au_stage,
                    fn_kwargs={"codebook": stages.codebook, "map_size": stages.map_size,
                               "au_source": stages.au_source, "au_ids": stages.au_ids},
                    batch_size=bs,
                    batch_format="numpy",
                    num_cpus=AU_STAGE_CPUS,
                )
                yield from ds.iter_batches(batch_size=None, batch_format="numpy")

            yield _cache.Run(batches, {"pipeline": "ray", "workers": workers, "device": device,
                                       "ray_resources_per_worker": resources},
                             f" ({workers} {device} workers)")
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved

    return start


def _small_and_given(target: Any, num_workers: int | None) -> bool:
    """Whether ``target``'s cache is built in the driver (:data:`SERIAL_MAX_ROWS`)."""
    backend = target.backend if isinstance(target.backend, type) else type(target.backend)
    return (num_workers is None and not getattr(backend, "detects", True)
            and len(target.manifest.samples) <= SERIAL_MAX_ROWS)


def preprocess(
    data_cfg: Any,
    address: str | None = None,
    num_workers: int | None = None,
    cache_root: str | Path | None = None,
    *,
    manifest=None,
    backend: Any = None,
    batch_size: int = 64,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> _cache.CacheInfo:
    """Build (or find) the cache of ``data_cfg`` (a DataConfig) with Ray Data (in the driver,
    without Ray, for a small cache whose landmarks the rows carry: :data:`SERIAL_MAX_ROWS`).

    ``manifest`` / ``backend`` override reading ``data_cfg.dataset`` and looking up
    ``data_cfg.landmarks`` (as in :func:`fer_models.data.cache.cache_dir_for`).
    Prints a summary through ``echo``: rows, failures by reason, where failures.csv is,
    time and rows/s; on a hit, "cache hit" and nothing else is done.
    """
    target = _cache.cache_dir_for(data_cfg, cache_root, manifest, backend)
    if manifest is None:  # read from disk: an empty validation split is one sentence, before the build
        check_validation(target.manifest, data_cfg.val_fraction)
    executor = _cache.serial if _small_and_given(target, num_workers) else ray_executor(address, num_workers)
    info = _cache.build(target, data_cfg.map_size, data_cfg.cache_image_size, executor,
                        batch_size=batch_size, progress=progress)
    if echo is not None:
        echo(info.summary())
    return info
