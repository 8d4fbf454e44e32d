"""Training data read from the preprocessing cache: :class:`FaceDataset`, :func:`build_loaders`.

Items follow docs/contracts.md ("Cache and training data"). The cache already holds
resized uint8 images, so nothing here decodes a JPEG. For speed on CPU a split's columns
are held as whole arrays (or memory-mapped shards when images + maps exceed
``MAX_IN_MEMORY_BYTES``, e.g. AffectNet at 224 px), and ``dataset[list_of_indices]`` returns a whole *batch* dict in
one vectorised gather + augmentation; :func:`build_loaders` uses it through a
``BatchSampler`` with ``batch_size=None``, so batches come out exactly as the default
collate would stack the per-item dicts, without per-item Python overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from fer_models.data import cache as _cache
from fer_models.data.cache import cache_dir_for
from fer_models.data.augment import AugmentParams, augment_batch
from fer_models.data.manifest import SPLITS
from fer_models.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_IN_MEMORY_BYTES = 4 * 2**30  # images + maps above this stay memory-mapped on disk
BIG_COLUMNS = ("image", "au_map", "gt_au_map")


class FaceDataset(Dataset):
    """One split of a cache. ``ds[i]`` -> item dict; ``ds[[i, j, ...]]`` -> batch dict.

    ``image_size`` None = the stored size; another size is resized on the fly (bilinear,
    antialiased). ``augment`` applies :mod:`fer_models.data.augment` to the image and both
    maps together, with a generator seeded by ``seed`` (reproducible for one process).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        image_size: int | None = None,
        augment: bool = False,
        seed: int = 0,
        augment_params: AugmentParams = AugmentParams(),
    ):
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
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
        n_rows = self.info.counts.get(split, 0)
        big_bytes = n_rows * (self.stored_size**2 * 3 + 2 * 4 * self.map_size**2)
        shards = list(_cache.iter_shards(self.cache_dir, split, mmap=True))
        if shards and big_bytes <= MAX_IN_MEMORY_BYTES:
            shards = [{k: np.concatenate([s[k] for s in shards]) for k in shards[0]}]
        # images and maps: one array per shard (memory-mapped when large), gathered per batch
        self._big = {k: [s[k] for s in shards] for k in BIG_COLUMNS}
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
        self.row = small["row"].astype(np.int64)  # global manifest row, for tracing back
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return self.n

    def _gather(self, col: str, idx: np.ndarray) -> torch.Tensor:
        parts = self._big[col]
        if len(parts) == 1:
            arr = parts[0][idx]
        else:  # memory-mapped shards: read each shard's rows, then restore the order
            arr = np.empty((len(idx),) + parts[0].shape[1:], parts[0].dtype)
            shard = np.searchsorted(self._offsets, idx, side="right") - 1
            for k in np.unique(shard):
                sel = np.flatnonzero(shard == k)
                arr[sel] = parts[k][idx[sel] - self._offsets[k]]
        return torch.from_numpy(np.ascontiguousarray(arr))

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
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
            image, (au_map, gt_au_map) = augment_batch(
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

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.dim() == 0):
            batch = self.get_batch([int(index)])
            return {k: v[0] for k, v in batch.items()}
        return self.get_batch(index)

    def __repr__(self) -> str:
        return (f"FaceDataset({self.info.dataset}, {self.split}, n={self.n}, "
                f"image={self.image_size}, map={self.map_size}, augment={self.augment})")


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    test: DataLoader
    num_classes: int
    cache_dir: Path
    info: Any  # fer_models.data.cache.CacheInfo


def batch_loader(ds: FaceDataset, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """A DataLoader yielding batch dicts from ``ds[list_of_indices]`` (no per-item collate)."""
    if shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(int(seed)))
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      pin_memory=torch.cuda.is_available())


def build_loaders(data_cfg: Any, batch_size: int, seed: int, cache_root: str | Path | None = None,
                  *, manifest=None, backend=None, progress: bool = True,
                  cache_dir: str | Path | None = None) -> Loaders:
    """Train/val/test loaders of ``data_cfg`` (a DataConfig), preparing the cache if missing.

    ``cache_dir``: the finished cache of ``data_cfg`` (what ``orchestrator.preprocess``
    returned); read as is, without reading the dataset or hashing the cache key again.

    The train loader shuffles (seeded) and augments when ``data_cfg.augment``; it drops the
    last incomplete batch when the split has at least one full batch (BatchNorm cannot
    train on a batch of one). Val and test keep order and all rows.
    """
    if cache_dir is not None:
        info = _cache.open_cache(cache_dir)
    else:
        manifest, backend, codebook, key, _ = cache_dir_for(data_cfg, cache_root, manifest, backend)
        info = _cache.find_cache(cache_root, manifest.dataset, key)
        if info is None:
            info = _cache.prepare(manifest, backend, codebook, data_cfg.map_size, data_cfg.image_size,
                                  cache_root, progress=progress)
    train = FaceDataset(info.dir, "train", data_cfg.image_size, data_cfg.augment, seed)
    val = FaceDataset(info.dir, "val", data_cfg.image_size, False, seed)
    test = FaceDataset(info.dir, "test", data_cfg.image_size, False, seed)
    return Loaders(
        train=batch_loader(train, batch_size, True, seed, drop_last=len(train) >= batch_size),
        val=batch_loader(val, batch_size, False),
        test=batch_loader(test, batch_size, False),
        num_classes=int(info.meta["num_classes"]),
        cache_dir=info.dir,
        info=info,
    )

