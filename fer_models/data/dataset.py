"""Training data read from the preprocessing cache: :class:`FaceDataset`, :class:`DeviceLoader`,
:func:`build_loaders`.

The data path of a trial splits at the device boundary:

- on the CPU, :meth:`FaceDataset.gather` reads a batch's rows as the cache stores them, uint8
  images included, with one ``index_select`` per column (straight into pinned memory when
  the batch goes to a GPU). Nothing is converted, resized or augmented there;
- the batch is copied ``non_blocking`` to the device, where
  :class:`~fer_models.data.augment.BatchTransform` converts, augments and normalises it
  (kornia), giving the batch of docs/contracts.md. On a CPU-only run the same code runs on
  the CPU;
- :class:`DeviceLoader` prepares the next batches (gather + copy) in ``num_workers``
  background threads, ``prefetch`` batches ahead, while the current step runs. Threads, not
  processes: the gather is a memory copy that releases the GIL, and a thread can issue the
  copy to the GPU on its own CUDA stream.

Columns. ``image``, ``au_map``, ``gt_au_map`` and ``landmarks`` are gathered per batch from
whole arrays, or from the memory-mapped shards when they exceed ``MAX_IN_MEMORY_BYTES``
(AffectNet at 224 px is ~44 GB): a shuffled batch is then read in storage order (indices
sorted, one ``index_select`` per run of rows in one shard, no loop over rows) and put back in
the requested order on the device; nothing holds a full copy in RAM. Every other numeric
per-row column of the cache (``label``, ``au_valid``, ``valence``, ``row``, ... and any column
a reader adds) is held in RAM and passed through by name; ``identity`` strings become
integers (-1 unknown), ``path`` stays out of batches. ``label`` is the network's output index:
the project's label, but for a class subset (meta.json ``class_names``), whose labels are
renumbered 0..K-1 and whose project labels stay in ``expression``.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import nullcontext
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler, SequentialSampler

from fer_models.data import cache as _cache
from fer_models.data.augment import IMAGENET_MEAN, IMAGENET_STD, BatchTransform  # noqa: F401 (re-exported)
from fer_models.data.cache import cache_dir_for
from fer_models.data.cache.layout import SOURCE_COLUMNS
from fer_models.data.manifest import SPLITS, check_test, check_validation
from fer_models.data.steps import as_steps
from fer_models.errors import ConfigError
from fer_models.labels import EXPRESSIONS, class_names, classes_of_names

MAX_IN_MEMORY_BYTES = 4 * 2**30  # array columns above this stay memory-mapped on disk
ARRAY_COLUMNS = ("image", "au_map", "gt_au_map", "landmarks")  # gathered per batch
TEXT_COLUMNS = ("path",)  # not passed to batches


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory; read-only memory maps included (never written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return torch.from_numpy(a)


class FaceDataset(Dataset):
    """One split of a cache. ``ds[i]`` -> item dict; ``ds[[i, j, ...]]`` -> batch dict.

    ``ds.gather(indices)`` is the raw batch (uint8 images, maps and landmarks as stored);
    ``ds.transform`` (a :class:`BatchTransform`) turns it into the contract's batch, and
    ``ds[indices]`` does both on the CPU. ``image_size`` None = the stored size; ``augment``:
    step strings (:mod:`fer_models.data.steps`; ``True``/``False`` as in old configs), drawn
    from a generator seeded by ``seed``; ``normalize`` and ``color`` as in DataConfig.

    ``source_maps``: in a cache built with another ``DataConfig.au_source`` than the codebook,
    ``au_map`` / ``au_valid`` are that source's map (the alignment target; ``build_loaders``
    asks for it on the train split). Otherwise, and always on val/test, they are the codebook
    map, the reference of CAM-COS / ATT-COS; ``gt_au_map`` is the map of the active AUs.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        image_size: int | None = None,
        augment: Any = (),
        seed: int = 0,
        *,
        normalize: str = "imagenet",
        color: str = "rgb",
        source_maps: bool = False,
    ):
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
        self.cache_dir = Path(cache_dir)
        self.info = _cache.open_cache(self.cache_dir)
        self.split = split
        meta = self.info.meta
        self.stored_size = int(meta["inputs"]["image_size"])
        self.map_size = int(meta["inputs"]["map_size"])
        self.image_size = int(image_size or self.stored_size)
        self.num_classes = int(meta.get("num_classes", 7))
        #: the name of each output, and its project label (``fer_models.labels.output_classes``)
        self.class_names = list(meta.get("class_names") or class_names(self.num_classes))
        self.classes = classes_of_names(self.class_names) if "class_names" in meta else tuple(range(self.num_classes))
        self.au_ids = tuple(meta["inputs"]["au_ids"])
        self.augment = as_steps(augment)
        self.transform = BatchTransform(self.augment, stored_size=self.stored_size, image_size=self.image_size,
                                        map_size=self.map_size, normalize=normalize, color=color, seed=seed)
        shards = list(_cache.iter_shards(self.cache_dir, split, mmap=True)) or [self._empty_shard()]
        self.source_maps = bool(source_maps) and "src_au_map" in shards[0]
        if self.source_maps:  # the AU source's map is the alignment target
            shards = [{**s, "au_map": s["src_au_map"], "au_valid": s["src_valid"]} for s in shards]
        shards = [{k: v for k, v in s.items() if k not in SOURCE_COLUMNS} for s in shards]
        array_bytes = sum(s[k].nbytes for s in shards for k in ARRAY_COLUMNS)
        self.memory_mapped = len(shards) > 1 and array_bytes > MAX_IN_MEMORY_BYTES
        arrays = shards
        if not self.memory_mapped:  # small enough: read into RAM once
            arrays = [{k: np.concatenate([s[k] for s in shards]) for k in ARRAY_COLUMNS}]
        self._arrays = {k: [_tensor(s[k]) for s in arrays] for k in ARRAY_COLUMNS}
        self._offsets = np.cumsum([0] + [len(s["image"]) for s in arrays])
        self.n = int(self._offsets[-1])
        self._columns = self._row_columns(shards, meta)

    @property
    def identity(self) -> torch.Tensor:
        """Each row's identity: its index in the cache's ``meta["identities"]`` (-1 unknown)."""
        col = self._columns.get("identity")
        return col if col is not None else torch.full((self.n,), -1, dtype=torch.int64)

    def _empty_shard(self) -> dict[str, np.ndarray]:
        s, m = self.stored_size, self.map_size
        out = {"image": np.zeros((0, s, s, 3), np.uint8), "au_map": np.zeros((0, m, m), np.float32),
               "gt_au_map": np.zeros((0, m, m), np.float32), "landmarks": np.zeros((0, 68, 2), np.float32),
               "label": np.zeros(0, np.int64), "au_valid": np.zeros(0, bool), "gt_valid": np.zeros(0, bool),
               "valence": np.zeros(0, np.float32), "arousal": np.zeros(0, np.float32),
               "row": np.zeros(0, np.int64), "aus": np.zeros((0, len(self.au_ids)), np.float32),
               "identity": np.zeros(0, str)}
        return out

    def _row_columns(self, shards: list[dict[str, np.ndarray]], meta: dict) -> dict[str, torch.Tensor]:
        """The per-row columns held in RAM (every numeric column but the array ones)."""
        ids = {name: i for i, name in enumerate(meta.get("identities", []))}
        out = {}
        for k in shards[0]:
            if k in ARRAY_COLUMNS or k in TEXT_COLUMNS:
                continue
            col = np.concatenate([s[k] for s in shards])
            if k == "identity":
                col = np.array([ids.get(str(x), -1) if str(x) else -1 for x in col], np.int64)
            elif col.dtype.kind not in "biuf":
                continue  # other text columns stay out of batches
            out[k] = torch.from_numpy(np.ascontiguousarray(col))
        out["index"] = torch.arange(self.n, dtype=torch.int64)
        if "label" in out and self.classes != tuple(range(len(self.classes))):  # a class subset
            out["expression"] = out["label"]  # the project's label, for the AU maps and the analysis
            lut = torch.full((len(EXPRESSIONS),), -1, dtype=torch.int64)
            lut[list(self.classes)] = torch.arange(len(self.classes))
            out["label"] = lut[out["expression"].long()]
        return out

    @property
    def row(self) -> np.ndarray:
        """Global manifest row of each item, for tracing back."""
        return self._columns["row"].numpy()

    def __len__(self) -> int:
        return self.n

    # ---------------------------------------------------------------------- gather (CPU)
    def _check(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"index out of range for a split of {self.n} rows")
        return np.where(idx < 0, idx + self.n, idx)

    def gather_sorted(self, indices: Any, *, pin: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Raw batch of ``indices`` in *storage* order, and the permutation that restores the
        requested order (None when the batch already is in it: data held in RAM).

        One ``index_select`` per column, per run of rows in one shard for memory-mapped
        data, written straight into (pinned when ``pin``) buffers: no loop over rows.
        """
        idx = self._check(indices)
        restore = None
        if self.memory_mapped and len(idx) > 1:
            order = np.argsort(idx, kind="stable")
            idx = idx[order]
            restore = torch.from_numpy(np.argsort(order))
        t = torch.from_numpy(idx)
        out: dict[str, torch.Tensor] = {}
        for k, parts in self._arrays.items():
            buf = torch.empty((len(idx),) + tuple(parts[0].shape[1:]), dtype=parts[0].dtype, pin_memory=pin)
            if len(parts) == 1:
                torch.index_select(parts[0], 0, t, out=buf)
            else:
                shard = np.searchsorted(self._offsets, idx, side="right") - 1
                starts = np.flatnonzero(np.r_[True, shard[1:] != shard[:-1]])
                for a, b in zip(starts, np.r_[starts[1:], len(idx)]):
                    local = t[a:b] - int(self._offsets[shard[a]])
                    torch.index_select(parts[shard[a]], 0, local, out=buf[a:b])
            out[k] = buf
        for k, col in self._columns.items():
            buf = torch.empty((len(idx),) + tuple(col.shape[1:]), dtype=col.dtype, pin_memory=pin)
            out[k] = torch.index_select(col, 0, t, out=buf)
        return out, restore

    def gather(self, indices: Any, *, pin: bool = False) -> dict[str, torch.Tensor]:
        """The raw batch of ``indices`` (in their order): uint8 images (B, S, S, 3), maps
        (B, m, m), landmarks (B, 68, 2) in stored pixels, the per-row columns."""
        raw, restore = self.gather_sorted(indices, pin=pin)
        return raw if restore is None else {k: v[restore] for k, v in raw.items()}

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """The contract's batch of ``indices``, gathered and transformed on the CPU."""
        return self.transform(self.gather(indices))

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            batch = self.get_batch([int(index)])
            return {k: v[0] for k, v in batch.items()}
        return self.get_batch(index)

    def __repr__(self) -> str:
        return (f"FaceDataset({self.info.dataset}, {self.split}, n={self.n}, stored={self.stored_size}, "
                f"image={self.image_size}, map={self.map_size}, augment={list(self.augment)})")


def _one_openmp_thread() -> None:
    """A loader thread's OpenMP thread count: 1. A new thread starts at the process's count
    (torch's, e.g. the trial's CPUs), so N loader threads would start N times that many
    OpenMP threads and oversubscribe the cores; ``omp_set_num_threads`` (through
    threadpoolctl, which finds torch's own OpenMP library) acts on the calling thread only."""
    from threadpoolctl import threadpool_limits

    torch.get_num_threads()  # torch's per-thread first-use set-up (it sets the count), before ours
    threadpool_limits(limits=1, user_api="openmp")


class DeviceLoader:
    """Batches of a :class:`FaceDataset` on ``device``, in a seeded order.

    Each batch: gather on the CPU (pinned when ``device`` is CUDA) -> ``non_blocking`` copy ->
    the dataset's transform on ``device``. With ``num_workers`` >= 1, threads gather and copy
    (on their own CUDA stream; the training stream waits on an event, never the host) up to
    ``prefetch`` batches ahead; with 0, the calling thread does it between steps (on CUDA it
    still overlaps with the GPU, since the training loop no longer waits for each step).
    Iterating twice gives two epochs (a new permutation from the same seeded generator).
    """

    def __init__(self, dataset: FaceDataset, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, device: str | torch.device = "cpu", num_workers: int = 0,
                 prefetch: int = 2):
        if num_workers < 0 or prefetch < 0:
            raise ConfigError(f"num_workers and prefetch must be >= 0, got {num_workers} and {prefetch}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        # an empty split (DISFA's train: an analysis set) has nothing to shuffle
        base = (RandomSampler(dataset, generator=torch.Generator().manual_seed(int(seed))) if shuffle and len(dataset)
                else SequentialSampler(dataset))
        self.sampler = BatchSampler(base, self.batch_size, drop_last)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None  # made on first use, kept across epochs

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def load(self, indices: Sequence[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, Any]:
        """CPU side of one batch: gather (pinned) and start the copy to the device. Runs in a
        worker thread; returns the raw device batch, the order to restore, the copy's event."""
        raw, restore = self.dataset.gather_sorted(indices, pin=self.cuda)
        if not self.cuda:
            return raw, restore, None
        side = threading.current_thread() is not threading.main_thread()
        stream = None
        if side:
            stream = getattr(self._local, "stream", None)
            if stream is None:
                stream = self._local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            raw = {k: v.to(self.device, non_blocking=True) for k, v in raw.items()}
            if restore is not None:
                restore = restore.pin_memory().to(self.device, non_blocking=True)
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return raw, restore, event

    def finish(self, loaded: tuple[dict[str, torch.Tensor], torch.Tensor | None, Any]) -> dict[str, torch.Tensor]:
        """Device side of one batch (training thread): wait for the copy on the GPU, restore
        the requested order, convert / augment / normalise."""
        raw, restore, event = loaded
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for v in raw.values():
                v.record_stream(current)  # the copy stream's memory is now used by this one
            if restore is not None:
                restore.record_stream(current)
        if restore is not None:
            raw = {k: v.index_select(0, restore) for k, v in raw.items()}
        return self.dataset.transform(raw)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = iter(self.sampler)
        if self.num_workers == 0 or self.prefetch == 0:
            for idx in batches:
                yield self.finish(self.load(idx))
            return
        pool = self.pool()
        pending = deque(pool.submit(self.load, idx) for idx in islice(batches, max(self.prefetch, self.num_workers)))
        try:
            while pending:
                loaded = pending.popleft().result()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(pool.submit(self.load, nxt))
                yield self.finish(loaded)
        finally:
            for f in pending:
                f.cancel()
            for f in pending:  # an unfinished epoch: its started loads end before the next epoch's
                if not f.cancelled():
                    f.exception()

    def pool(self) -> ThreadPoolExecutor:
        """The loader threads, started once and kept across epochs (their CUDA streams too);
        each runs its torch operations on one OpenMP thread (:func:`_one_openmp_thread`)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="fer-loader",
                                            initializer=_one_openmp_thread)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


@dataclass
class Loaders:
    train: DeviceLoader
    val: DeviceLoader
    test: DeviceLoader
    num_classes: int
    cache_dir: Path
    info: Any  # fer_models.data.cache.CacheInfo

    @property
    def class_names(self) -> list[str]:
        """The name of each output (an expression run; an identity run has its own classes)."""
        return list(self.train.dataset.class_names)


def check_trainable(info: Any) -> None:
    """A cache to train on needs training and test rows: every image of a split may have
    been unreadable (the cache keeps them out and lists them in ``failures.csv``)."""
    from fer_models.errors import DatasetError

    for split in ("train", "test"):
        if int(info.counts.get(split, 0)) == 0:
            fails = sum(int(n) for n in info.failures.values())
            raise DatasetError(
                f"{info.dataset}: the {split} split of cache {info.dir} holds no image ({fails} rows unreadable or "
                f"failed, listed in {info.failures_csv}); fix or replace those images (or the dataset's {split} "
                "labels), then delete the cache folder and run again")


def build_loaders(data_cfg: Any, batch_size: int, seed: int, cache_root: str | Path | None = None,
                  *, manifest=None, backend=None, progress: bool = True,
                  cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  channels_last: bool = False, trainable: bool = True) -> Loaders:
    """Train/val/test loaders of ``data_cfg`` (a DataConfig), preparing the cache if missing.

    ``cache_dir``: the finished cache of ``data_cfg`` (what ``orchestrator.preprocess``
    returned); read as is, without reading the dataset or hashing the cache key again.
    ``device``: where batches are converted, augmented and delivered (the trainer passes its
    own; "cpu" for notebooks and analysis jobs); ``channels_last``: the images' memory format;
    ``trainable=False``: an analysis read (a probe set) that does not need training rows, so a
    dataset read only for analysis (DISFA's default split puts every frame in test) is no error.

    The train loader shuffles (seeded), runs ``data_cfg.augment`` and aligns to the map of
    ``data_cfg.au_source`` (``FaceDataset(source_maps=True)``); it drops the last
    incomplete batch when the split has at least one full batch (BatchNorm cannot train on a
    batch of one). Val and test keep order and all rows and run ``data_cfg.eval_steps``.
    """
    steps, eval_steps = as_steps(data_cfg.augment), as_steps(data_cfg.eval_steps)
    stored = data_cfg.cache_image_size
    if cache_dir is not None:
        info = _cache.open_cache(cache_dir)
    else:
        read = manifest is None
        target = cache_dir_for(data_cfg, cache_root, manifest, backend)
        if read:  # a dataset read from disk: an empty validation or test split is one sentence, before the cache
            check_test(target.manifest)
            check_validation(target.manifest, data_cfg.val_fraction)
        info = _cache.find_at(target.dir)
        if info is None:
            info = _cache.build(target, data_cfg.map_size, stored, _cache.serial, progress=progress)
    if trainable:
        check_trainable(info)
    kw = dict(normalize=data_cfg.normalize, color=data_cfg.color)
    train = FaceDataset(info.dir, "train", data_cfg.image_size, steps, seed, source_maps=True, **kw)
    val = FaceDataset(info.dir, "val", data_cfg.image_size, eval_steps, seed, **kw)
    test = FaceDataset(info.dir, "test", data_cfg.image_size, eval_steps, seed, **kw)
    device = torch.device(device)
    if channels_last:
        for ds in (train, val, test):
            ds.transform.memory_format = torch.channels_last
    run = dict(device=device, num_workers=data_cfg.num_workers, prefetch=data_cfg.prefetch)
    return Loaders(
        train=DeviceLoader(train, batch_size, True, seed, drop_last=len(train) >= batch_size, **run),
        val=DeviceLoader(val, batch_size, False, **run),
        test=DeviceLoader(test, batch_size, False, **run),
        num_classes=int(info.meta["num_classes"]),
        cache_dir=info.dir,
        info=info,
    )
