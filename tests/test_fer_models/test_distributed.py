"""Data-parallel training (fer_models.distributed): 2 ranks x batch B/2 learn what 1 process x batch B learns.

The ranks are two processes of a gloo process group on the CPU (what Ray Train starts for a
trial of two CPU workers, orchestrator.ddp; started here with torch.multiprocessing, so the
test checks the training's arithmetic, not Ray). Both runs see the same global batches (the
same in-memory batches; each rank keeps its half). PyTorch's SyncBatchNorm runs on CUDA
only, so on the CPU each rank would normalise its own half with its own statistics; the
network here has its BatchNorm layers replaced by GroupNorm (per-sample statistics), which
leaves the comparison exact up to float rounding.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from fer_models import distributed
from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError

S, M, K, B = 32, 16, 7, 8
#: Largest difference allowed between the two runs' per-epoch mean training losses (and
#: validation accuracies): the ranks add the same numbers in another order (two half-batch
#: means averaged vs one mean; gradients all-reduced), a rounding difference of ~1e-7 per step
#: that 3 epochs of SGD grow to ~1e-6. Without the gradient averaging the curves differ by >1e-2.
TOLERANCE = 1e-4


def _batches(n: int, b: int, seed: int) -> list[dict]:
    """Learnable fake data: class k has a bright square at a class-specific place."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, K, (b,), generator=g)
        x = 0.3 * torch.randn(b, 3, S, S, generator=g)
        a = torch.zeros(b, 1, M, M)
        for i, k in enumerate(y.tolist()):
            r, c = divmod(k, 3)
            x[i, :, 8 * r + 2: 8 * r + 8, 8 * c + 2: 8 * c + 8] += 2.0
            a[i, 0, 4 * r + 1: 4 * r + 4, 4 * c + 1: 4 * c + 4] = 1.0
        out.append({"image": x, "label": y, "au_map": a, "au_valid": torch.ones(b, dtype=torch.bool),
                    "gt_au_map": a.clone(), "gt_valid": torch.ones(b, dtype=torch.bool)})
    return out


def _loaders():
    return SimpleNamespace(train=_batches(4, B, 0), val=_batches(1, 16, 1), test=_batches(1, 16, 2), num_classes=K)


def _cfg(**kw) -> TrainConfig:
    base = dict(method="cam", backbone="resnet-tiny", epochs=3, batch_size=B, lr=0.05, device="cpu",
                data=DataConfig(image_size=S, map_size=M))
    return TrainConfig(**{**base, **kw})


def _without_batchnorm(monkeypatch_setattr) -> None:
    """build_model gives the network with every BatchNorm2d replaced by GroupNorm(1, C)."""
    import fer_models.methods as methods

    real = methods.build_model

    def build(*a, **kw):
        model = real(*a, **kw)
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(parent, name, torch.nn.GroupNorm(1, child.num_features))
        return model

    monkeypatch_setattr(methods, "build_model", build)


def _rank(rank: int, size: int, port: int, out: str) -> None:
    """One rank of the data-parallel run: train, and rank 0 writes its curve and weights."""
    import torch.distributed as dist

    from fer_models.train import train

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        _without_batchnorm(setattr)
        res = train(_cfg(), Path(out) / f"rank{rank}", loaders=_loaders(), progress=False)
        if rank == 0:
            (Path(out) / "history.json").write_text(json.dumps(res.history))
        else:
            assert res is None  # only rank 0 returns (and writes) the result
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_of_half_batches_follow_the_one_process_loss_curve(tmp_path, monkeypatch):
    from fer_models.train import train

    torch.set_num_threads(1)
    _without_batchnorm(monkeypatch.setattr)
    one = train(_cfg(), tmp_path / "one", loaders=_loaders(), progress=False)
    mp.start_processes(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    two = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in two] == [1.0, 2.0, 3.0]
    diffs = [abs(a[k] - b[k]) for a, b in zip(one.history, two) for k in ("train_loss", "train_ce", "val_cl")]
    print(f"max |1 worker x B - 2 workers x B/2| over the curves: {max(diffs):.2e}")
    assert max(diffs) < TOLERANCE, (one.history, two)
    assert one.history[0]["train_loss"] - one.history[-1]["train_loss"] > 10 * TOLERANCE  # it learns: a curve to compare
    # rank 0 alone wrote the checkpoint, whose weights are the one-process run's
    w1 = torch.load(tmp_path / "one" / "best.pt", weights_only=True)
    w2 = torch.load(tmp_path / "rank0" / "best.pt", weights_only=True)
    assert max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1) < 1e-4
    assert not (tmp_path / "rank1" / "checkpoint.pt").exists()


def test_each_rank_keeps_its_contiguous_share_of_every_global_batch():
    from torch.utils.data import BatchSampler, SequentialSampler

    batches = BatchSampler(SequentialSampler(range(10)), 4, drop_last=False)
    shares = [list(distributed.ShardedBatches(batches, r, 2)) for r in (0, 1)]
    assert shares == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]
    assert [len(distributed.ShardedBatches(batches, r, 2)) for r in (0, 1)] == [3, 3]
    three = BatchSampler(SequentialSampler(range(9)), 4, drop_last=False)  # last batch of 1 row < 2 ranks
    assert list(distributed.ShardedBatches(three, 1, 2)) == [[2, 3], [6, 7]]
    assert len(distributed.ShardedBatches(three, 1, 2)) == 2
    sliced = list(distributed.shard([{"x": torch.arange(4), "n": 1}], distributed.World(1, 2)))
    assert torch.equal(sliced[0]["x"], torch.tensor([2, 3])) and sliced[0]["n"] == 1


def test_a_batch_that_does_not_split_over_the_workers_is_one_sentence():
    with pytest.raises(ConfigError, match="batch_size 6 does not split evenly over 4 workers"):
        distributed.check_batch(6, distributed.World(0, 4))
    distributed.check_batch(6, distributed.World(0, 1))
