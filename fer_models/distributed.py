"""Data-parallel training (PyTorch DDP) of one run over a ``torch.distributed`` process group.

Whoever starts the ranks initialises the group (``orchestrator.ddp`` through Ray Train's
``TorchTrainer``: ``nccl`` on CUDA, ``gloo`` on the CPU; a test with
``torch.multiprocessing``); :func:`world` reads it, and ``fer_models.train.train`` then
trains the run on every rank. What a W-rank run keeps equal to the one-process run of the
same config:

- **The global batch.** ``cfg.batch_size`` stays the global batch B (the config, its hash
  and what is learnt do not depend on W): every rank draws the same seeded global batches and
  keeps its contiguous share of B / W rows (:class:`ShardedBatches`), so the W ranks together
  see exactly the one-process run's batches. B must be a multiple of W; a last global batch
  shorter than W rows is dropped (the train loader already drops an incomplete one).
- **The gradient.** DDP all-reduces the gradients to their mean over ranks; each rank's loss
  is the mean over its B / W rows, so the mean of the ranks' gradients is the gradient of the
  mean loss over the B rows, the one-process step (up to the order of float additions).
- **BatchNorm.** On CUDA the BatchNorm layers become ``SyncBatchNorm`` (statistics over the
  global batch, as one process computes them). PyTorch's SyncBatchNorm does not run on the
  CPU, so a CPU (gloo) run normalises each rank's B / W rows with their own statistics: a
  network with BatchNorm then learns slightly differently from the one-process run.
- **Everything written once.** Rank 0 validates, writes the checkpoints and evaluates the
  test split; the other ranks receive rank 0's validation metrics (:func:`share`), so every
  rank takes the same decisions (best epoch, divergence) and reports the same numbers.
  Augmentation (run on each rank's device) and CutMix draw their own random numbers per rank.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils.data import BatchSampler

from fer_models.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's rank and the number of ranks (0 of 1 without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def check_batch(batch_size: int, w: World) -> None:
    if w.parallel and int(batch_size) % w.size:
        raise ConfigError(f"batch_size {batch_size} does not split evenly over {w.size} workers per trial; "
                          f"pick a multiple of {w.size} or another --workers-per-trial")


class ShardedBatches:
    """Rank ``rank``'s contiguous share (``len // size`` rows) of each global batch of ``batches``."""

    def __init__(self, batches: BatchSampler, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __iter__(self) -> Iterator[list[int]]:
        for idx in self.batches:
            per = len(idx) // self.size
            if per:
                yield list(idx)[self.rank * per:(self.rank + 1) * per]

    def __len__(self) -> int:
        n, b = len(self.batches.sampler), self.batches.batch_size
        short = 0 if self.batches.drop_last or n % b == 0 or n % b >= self.size else 1
        return len(self.batches) - short


class _SlicedBatches:
    """An iterable of batch dicts (a test's in-memory batches): each tensor cut like :class:`ShardedBatches`."""

    def __init__(self, batches: Any, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for b in self.batches:
            n = next(len(v) for v in b.values() if isinstance(v, torch.Tensor))
            per = n // self.size
            if per:
                lo, hi = self.rank * per, (self.rank + 1) * per
                yield {k: v[lo:hi] if isinstance(v, torch.Tensor) else v for k, v in b.items()}

    def __len__(self) -> int:
        return len(self.batches)


def shard(loader: Any, w: World) -> Any:
    """``loader`` (a ``DeviceLoader``, or an iterable of batch dicts) giving this rank's share
    of every global batch; ``loader`` itself in a one-process run."""
    if not w.parallel:
        return loader
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, BatchSampler):
        mine = copy.copy(loader)
        mine.sampler = ShardedBatches(sampler, w.rank, w.size)
        return mine
    return _SlicedBatches(loader, w.rank, w.size)


def wrap(model: torch.nn.Module, device: torch.device, w: World) -> torch.nn.Module:
    """``model`` for the training forward: DDP over the group (SyncBatchNorm on CUDA first);
    ``model`` itself in a one-process run. ``find_unused_parameters``: some methods leave
    modules out of the loss (a head only read at evaluation)."""
    if not w.parallel:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device], find_unused_parameters=True)
    return DistributedDataParallel(model, find_unused_parameters=True)


def mean(x: torch.Tensor, w: World) -> torch.Tensor:
    """``x`` averaged over the ranks (in place; ``x`` in a one-process run)."""
    if w.parallel:
        import torch.distributed as dist

        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= w.size
    return x


def share(obj: Any, w: World) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not w.parallel:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
