"""Trial data path throughput: the old CPU path vs the new uint8 path, side by side.

    .venv/bin/python benchmarks/bench_loader.py [--size 224] [--batch 224] [--batches 6] [--smoke]
                                                [--ram-budget-gb 1.0] [--threads 1,4]

One run, one synthetic cache of random faces at ``--size`` px (map 28 px), augmentation on
(the CPU recipe: random resized crop 0.8-1.0 + flip), images/s of:

- **old**: the data path before the device-side loader, kept here verbatim as :class:`OldFaceDataset` (gather,
  convert to float, augment with the hand-written affine code, normalise, all on the CPU in
  the training process, through a ``DataLoader``), with 1 and 4 torch threads;
- **new, CPU side**: what the CPU still does per batch, :meth:`DeviceLoader.load
  <fer_models.data.dataset.DeviceLoader.load>`: gather uint8 rows (pinned, then the
  ``non_blocking`` copy when a GPU is present), in 1 and 4 loader threads (torch at 1 thread);
- **new, device side**: :class:`~fer_models.data.augment.BatchTransform` (uint8 -> float,
  kornia augmentation, normalisation) on the device. Without a GPU the "device" is this CPU,
  measured for reference only; on a GPU it runs there, off the CPU (see bench_gpu_step.py).

Each from an in-memory cache and from a memory-mapped cache larger than ``--ram-budget-gb``
(the dataset is told that RAM budget, so it memory-maps the shards); the memory-mapped rows
are read cold, evicted from the page cache before each pass (``posix_fadvise DONTNEED``), so
the storage is measured, not RAM. The last line is the ratio the issue asks for.
The test suite imports :class:`OldFaceDataset` / :func:`old_batch_loader` to check that the
new path with augmentation off gives exactly the old results.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

MAP_SIZE = 28
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OLD_BIG_COLUMNS = ("image", "au_map", "gt_au_map")


# ------------------------------------------------------------------------------------------
# The old path, verbatim from fer_models/data/augment.py and dataset.py before the device-side loader
# (only renamed: OldAugmentParams, old_sample_affine, old_warp, old_augment_batch,
# OldFaceDataset, old_batch_loader; MAX_IN_MEMORY_BYTES became a class attribute).
# ------------------------------------------------------------------------------------------
class OldAugmentParams:
    scale = (0.8, 1.0)
    ratio = (3 / 4, 4 / 3)
    flip_p = 0.5
    max_degrees = 0.0


def old_sample_affine(batch, generator=None, params=OldAugmentParams()):
    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(batch, generator=generator)

    area = u(*params.scale)
    log_r = u(math.log(params.ratio[0]), math.log(params.ratio[1]))
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - sw) * u(-1.0, 1.0)
    cy = (1 - sh) * u(-1.0, 1.0)
    flip = torch.where(torch.rand(batch, generator=generator) < params.flip_p, -1.0, 1.0)
    a = torch.deg2rad(u(-params.max_degrees, params.max_degrees))
    cos, sin = torch.cos(a), torch.sin(a)
    return torch.stack(
        [
            torch.stack([sw * flip * cos, -sh * sin, cx], dim=1),
            torch.stack([sw * flip * sin, sh * cos, cy], dim=1),
        ],
        dim=1,
    )


def old_warp(x, theta, mode="bilinear"):
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def old_augment_batch(image, maps=(), generator=None, params=OldAugmentParams(), theta=None):
    theta = old_sample_affine(image.shape[0], generator, params) if theta is None else theta
    out_img = old_warp(image, theta)
    out_maps = [old_warp(m, theta).clamp_(0.0, 1.0) for m in maps]
    return out_img, out_maps


class OldFaceDataset(Dataset):
    """The pre-issue-10 ``FaceDataset``: every batch gathered, converted, augmented and
    normalised on the CPU."""

    MAX_IN_MEMORY_BYTES = 4 * 2**30

    def __init__(self, cache_dir, split, image_size=None, augment=False, seed=0,
                 augment_params=OldAugmentParams()):
        from fer_models.data import cache as _cache

        self.cache_dir = Path(cache_dir)
        self.info = _cache.open_cache(self.cache_dir)
        self.split = split
        self.augment = augment
        self.augment_params = augment_params
        self.generator = torch.Generator().manual_seed(int(seed))
        meta = self.info.meta
        self.stored_size = int(meta["inputs"]["image_size"])
        self.map_size = int(meta["inputs"]["map_size"])
        self.image_size = int(image_size or self.stored_size)
        self.num_classes = int(meta.get("num_classes", 7))
        self.au_ids = tuple(meta["inputs"]["au_ids"])
        n_rows = self.info.counts.get(split, 0)
        big_bytes = n_rows * (self.stored_size**2 * 3 + 2 * 4 * self.map_size**2)
        shards = list(_cache.iter_shards(self.cache_dir, split, mmap=True))
        if shards and big_bytes <= self.MAX_IN_MEMORY_BYTES:
            shards = [{k: np.concatenate([s[k] for s in shards]) for k in shards[0]}]
        self._big = {k: [s[k] for s in shards] for k in OLD_BIG_COLUMNS}
        self._offsets = np.cumsum([0] + [len(s["row"]) for s in shards])
        self.n = int(self._offsets[-1])
        m = self.map_size
        empty = {"label": np.zeros(0, np.int64), "au_valid": np.zeros(0, bool),
                 "gt_valid": np.zeros(0, bool), "valence": np.zeros(0, np.float32),
                 "arousal": np.zeros(0, np.float32), "row": np.zeros(0, np.int64),
                 "aus": np.zeros((0, len(self.au_ids)), np.float32), "identity": np.zeros(0, str)}
        small = {k: np.concatenate([s[k] for s in shards]) if shards else v for k, v in empty.items()}
        if not shards:
            self._big = {"image": [np.zeros((0, self.stored_size, self.stored_size, 3), np.uint8)],
                         "au_map": [np.zeros((0, m, m), np.float32)],
                         "gt_au_map": [np.zeros((0, m, m), np.float32)]}
        ids = {name: i for i, name in enumerate(meta.get("identities", []))}
        self.label = torch.as_tensor(small["label"].astype(np.int64))
        self.au_valid = torch.as_tensor(small["au_valid"].astype(bool))
        self.gt_valid = torch.as_tensor(small["gt_valid"].astype(bool))
        self.identity = torch.as_tensor(
            np.array([ids.get(str(x), -1) if str(x) else -1 for x in small["identity"]], np.int64)
        )
        self.valence = torch.as_tensor(small["valence"].astype(np.float32))
        self.arousal = torch.as_tensor(small["arousal"].astype(np.float32))
        self.aus = torch.as_tensor(small["aus"].astype(np.float32))
        self.row = small["row"].astype(np.int64)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __len__(self):
        return self.n

    def _gather(self, col, idx):
        parts = self._big[col]
        if len(parts) == 1:
            arr = parts[0][idx]
        else:
            arr = np.empty((len(idx),) + parts[0].shape[1:], parts[0].dtype)
            shard = np.searchsorted(self._offsets, idx, side="right") - 1
            for k in np.unique(shard):
                sel = np.flatnonzero(shard == k)
                arr[sel] = parts[k][idx[sel] - self._offsets[k]]
        return torch.from_numpy(np.ascontiguousarray(arr))

    def get_batch(self, indices):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"index out of range for a split of {self.n} rows")
        idx = np.where(idx < 0, idx + self.n, idx)
        t = torch.from_numpy(idx)
        image = self._gather("image", idx).permute(0, 3, 1, 2).float().div_(255.0)
        if self.image_size != self.stored_size:
            image = F.interpolate(image, size=(self.image_size,) * 2, mode="bilinear",
                                  align_corners=False, antialias=True)
        au_map = self._gather("au_map", idx).unsqueeze(1)
        gt_au_map = self._gather("gt_au_map", idx).unsqueeze(1)
        if self.augment and len(idx):
            image, (au_map, gt_au_map) = old_augment_batch(
                image, [au_map, gt_au_map], self.generator, self.augment_params
            )
        image = (image - self._mean) / self._std
        return {
            "image": image.contiguous(),
            "label": self.label[t],
            "au_map": au_map,
            "au_valid": self.au_valid[t],
            "gt_au_map": gt_au_map,
            "gt_valid": self.gt_valid[t],
            "identity": self.identity[t],
            "valence": self.valence[t],
            "arousal": self.arousal[t],
            "aus": self.aus[t],
            "index": t.clone(),
        }

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            batch = self.get_batch([int(index)])
            return {k: v[0] for k, v in batch.items()}
        return self.get_batch(index)


def old_batch_loader(ds, batch_size, shuffle, seed=0, drop_last=False):
    if shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(int(seed)))
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      pin_memory=torch.cuda.is_available())


# ------------------------------------------------------------------------------------------
# A cache of random faces, and the timings
# ------------------------------------------------------------------------------------------
def make_cache(root: Path, n_rows: int, size: int, map_size: int = MAP_SIZE, seed: int = 0, val_rows: int = 0,
               shard_rows: int | None = None) -> Path:
    """A finished cache (the real writer) of ``n_rows`` random train rows, then ``val_rows``
    validation rows and 8 test rows (a cache to train on needs some) at ``size`` px, in shards
    of ``shard_rows`` rows (the writer's default)."""
    from fer_models.data import au
    from fer_models.data.cache import CacheWriter
    from fer_models.data.manifest import Manifest

    rng = np.random.default_rng(seed)
    inputs = {"format": 1, "image_size": size, "map_size": map_size, "au_ids": list(au.AU_IDS)}
    writer = CacheWriter(root / "cache", inputs, Manifest(dataset="bench", root=root, samples=[]), shard_rows)
    block = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    total = n_rows + val_rows + 8
    for start in range(0, total, 500):
        n = min(500, total - start)
        lm = rng.uniform(0.2 * size, 0.8 * size, (n, 68, 2)).astype(np.float32)
        rows = {
            "row": np.arange(start, start + n), "path": np.array([f"r{i}" for i in range(start, start + n)]),
            "image": block[np.arange(start, start + n) % 64], "label": rng.integers(0, 7, n),
            "identity": np.array([""] * n), "landmarks": lm,
            "au_map": rng.random((n, map_size, map_size), np.float32), "au_valid": np.ones(n, bool),
            "gt_au_map": rng.random((n, map_size, map_size), np.float32), "gt_valid": np.ones(n, bool),
            "valence": np.zeros(n, np.float32), "arousal": np.zeros(n, np.float32),
            "aus": np.zeros((n, len(au.AU_IDS)), np.float32), "sequence": np.full(n, -1, np.int64),
            "status": np.array(["ok"] * n),
            "split": np.select([np.arange(start, start + n) < n_rows, np.arange(start, start + n) < n_rows + val_rows],
                               ["train", "val"], "test"),
        }  # fmt: skip
        missing = [c for c in writer.columns if c not in rows]
        if missing:  # the writer gained a column: say which, instead of its KeyError
            raise RuntimeError(f"make_cache writes no {', '.join(missing)} column; add it (the cache writer needs it)")
        writer.add(rows)
    return writer.close().dir


def evict(cache_dir: Path) -> None:
    """Drop the cache's files from the page cache, so the next reads come from storage."""
    for p in Path(cache_dir).rglob("*.npy"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def index_batches(n: int, batch: int, count: int, seed: int) -> list[list[int]]:
    sampler = BatchSampler(RandomSampler(range(n), generator=torch.Generator().manual_seed(seed)), batch, True)
    return [b for b, _ in zip(sampler, range(count))]


def rate(fn, batches: list, batch: int) -> float:
    """img/s of ``fn`` over ``batches`` (the first is a warm-up)."""
    fn(batches[:1])
    t = time.perf_counter()
    fn(batches[1:])
    return (len(batches) - 1) * batch / (time.perf_counter() - t)


def time_old(cache_dir: Path, batches: list, batch: int, threads: int, budget: int) -> float:
    torch.set_num_threads(threads)
    OldFaceDataset.MAX_IN_MEMORY_BYTES = budget
    ds = OldFaceDataset(cache_dir, "train", augment=True)

    def run(bs):
        for b in bs:
            ds[b]

    return rate(run, batches, batch)


def time_new_cpu(cache_dir: Path, batches: list, batch: int, threads: int, device: torch.device) -> float:
    from fer_models.data.dataset import DeviceLoader, FaceDataset

    torch.set_num_threads(1)
    ds = FaceDataset(cache_dir, "train", augment=True)
    loader = DeviceLoader(ds, batch, True, device=device, num_workers=threads)

    def run(bs):
        if threads == 1:
            out = [loader.load(b) for b in bs]
        else:
            with ThreadPoolExecutor(threads) as pool:
                out = list(pool.map(loader.load, bs))
        if device.type == "cuda":
            torch.cuda.synchronize()  # the copies have landed
        return out

    return rate(run, batches, batch)


def time_new_device(cache_dir: Path, batches: list, batch: int, device: torch.device) -> float:
    from fer_models.data.dataset import DeviceLoader, FaceDataset

    torch.set_num_threads(1)
    ds = FaceDataset(cache_dir, "train", augment=True)
    loader = DeviceLoader(ds, batch, True, device=device)
    raw = loader.load(batches[0])

    def run(bs):
        for _ in bs:
            loader.finish(raw)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return rate(run, batches, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="image side (px)")
    ap.add_argument("--batch", type=int, default=224)
    ap.add_argument("--batches", type=int, default=6, help="batches per measurement (first is a warm-up)")
    ap.add_argument("--rows", type=int, default=1536, help="rows of the in-memory cache")
    ap.add_argument("--ram-budget-gb", type=float, default=1.0,
                    help="RAM the dataset may use; the memory-mapped cache is 1.25x this")
    ap.add_argument("--threads", default="1,4")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.batch, args.batches, args.rows, args.ram_budget_gb, args.threads = 32, 16, 3, 64, 0.001, "1"
    from fer_models.data import dataset as dsmod

    threads = [int(t) for t in args.threads.split(",")]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    row_bytes = args.size**2 * 3 + 2 * 4 * MAP_SIZE**2 + 68 * 2 * 4
    budget = int(args.ram_budget_gb * 2**30)
    mm_rows = int(1.25 * budget / row_bytes) + 1
    work = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    print(f"{args.size} px, batch {args.batch}, augmentation on; {os.cpu_count()} CPUs here, device: {device}")
    try:
        t = time.perf_counter()
        caches = {"in-memory": make_cache(work / "mem", args.rows, args.size),
                  "memory-mapped": make_cache(work / "mmap", mm_rows, args.size)}
        print(f"caches: in-memory {args.rows} rows ({args.rows * row_bytes / 2**30:.2f} GiB), memory-mapped "
              f"{mm_rows} rows ({mm_rows * row_bytes / 2**30:.2f} GiB > RAM budget {args.ram_budget_gb:g} GiB), "
              f"written in {time.perf_counter() - t:.0f} s")
        rows = {"in-memory": args.rows, "memory-mapped": mm_rows}
        results: dict[tuple, float] = {}
        for name, cdir in caches.items():
            dsmod.MAX_IN_MEMORY_BYTES = budget if name == "memory-mapped" else 2**62
            for th in threads:
                for i, (path, fn) in enumerate((
                    ("old", lambda bs: time_old(cdir, bs, args.batch, th, dsmod.MAX_IN_MEMORY_BYTES)),
                    ("new CPU side", lambda bs: time_new_cpu(cdir, bs, args.batch, th, device)),
                )):
                    bs = index_batches(rows[name], args.batch, args.batches, seed=100 * th + i)
                    if name == "memory-mapped":
                        evict(cdir)  # cold: from storage
                    results[(name, path, th)] = fn(bs)
                    print(f"  {name:14s} {path:13s} {th} thread(s): {results[(name, path, th)]:9.0f} img/s", flush=True)
        dsmod.MAX_IN_MEMORY_BYTES = 2**62
        dev_rate = time_new_device(caches["in-memory"], index_batches(args.rows, args.batch, 4, 7), args.batch, device)
        print()
        print(f"{'cache':14s} {'threads':>7s} {'old img/s':>10s} {'new CPU side':>13s} {'new / old':>10s}")
        for name in caches:
            for th in threads:
                o, n = results[(name, "old", th)], results[(name, "new CPU side", th)]
                print(f"{name:14s} {th:7d} {o:10.0f} {n:13.0f} {n / o:9.1f}x")
        where = "GPU" if device.type == "cuda" else "this CPU, 1 thread (no GPU here: reference only)"
        print(f"new device side (uint8 -> float, kornia augmentation, normalisation) on {where}: {dev_rate:.0f} img/s")
        mb = row_bytes / 1e6
        print(f"storage: {row_bytes / 1e3:.0f} kB a row; at 3,000 img/s a GPU reads {3000 * mb:.0f} MB/s, an 8-GPU "
              f"node {8 * 3000 * mb / 1e3:.1f} GB/s; one AffectNet epoch (~287k train rows) is "
              f"{287_000 * mb / 1e3:.0f} GB")
        one = threads[0]
        speed = results[("in-memory", "new CPU side", one)] / results[("in-memory", "old", one)]
        print(f"loader speed-up, new vs old, {one} core: {speed:.1f}×")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
