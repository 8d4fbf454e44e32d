"""Probe sets drawn across identities (paper 004, Study 3), the `all` split, loaders over rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_analysis.probeset import ConcatSplits, allocate, describe, evenly_spaced, per_identity_rows, rows_loader


def test_allocation_gives_equal_shares_and_small_identities_all_they_have():
    assert allocate([100, 10, 50], 60).tolist() == [25, 10, 25]
    assert allocate([100, 10, 50], 61).tolist() == [26, 10, 25]  # the leftover row goes to the largest
    assert allocate([3, 3], 100).tolist() == [3, 3]  # fewer rows than asked: every row
    assert allocate([5, 5, 5], 7).sum() == 7


def test_rows_are_spread_over_identities_and_over_each_identity_never_the_first_n():
    # a split in dataset order: identity 0's 100 frames, then identity 1's 10, then identity 2's 50
    identity = np.repeat([0, 1, 2], [100, 10, 50])
    rows = per_identity_rows(identity, 60)
    assert len(rows) == 60 and np.all(np.diff(rows) > 0)
    ids, counts = np.unique(identity[rows], return_counts=True)
    assert ids.tolist() == [0, 1, 2] and counts.tolist() == [25, 10, 25]
    # every k-th frame of identity 0 (k = 100 / 25 = 4), spanning its whole "video"
    assert rows[identity[rows] == 0].tolist() == list(range(0, 100, 4))
    assert not np.array_equal(rows, np.arange(60))
    assert describe(identity, rows, ["SN001", "SN002", "SN003"]) == {
        "rows": 60, "identities": 3, "rows_per_identity_min": 10, "rows_per_identity_max": 25,
        "unknown_identity_rows": 0, "per_identity": {"SN001": 25, "SN002": 10, "SN003": 25}}


def test_unknown_identities_give_a_seeded_random_sample_and_a_large_n_gives_every_row():
    identity = np.full(100, -1)
    a, b = per_identity_rows(identity, 10, seed=1), per_identity_rows(identity, 10, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 10 and not np.array_equal(a, np.arange(10))
    assert per_identity_rows(np.array([0, 1, -1]), None).tolist() == [0, 1, 2]
    assert per_identity_rows(np.array([0, 1, -1]), 5).tolist() == [0, 1, 2]
    # known identities: rows of unknown identity are left out
    assert per_identity_rows(np.array([0, -1, 1, -1, 0, 1]), 2).tolist() == [0, 2]
    assert evenly_spaced(np.arange(10), 3).tolist() == [0, 3, 6]


class _Split:
    """FaceDataset-like: get_batch on a list of rows, an identity column."""

    def __init__(self, ids, offset):
        self.identity = torch.as_tensor(ids)
        self.offset = offset

    def __len__(self):
        return len(self.identity)

    def get_batch(self, idx):
        idx = torch.as_tensor(np.asarray(idx))
        return {"image": (idx + self.offset).float()[:, None], "identity": self.identity[idx], "index": idx}

    __getitem__ = get_batch  # ds[list_of_rows] -> a batch, as FaceDataset


def test_concat_splits_reads_rows_across_parts_in_the_asked_order():
    parts = [_Split([0, 0, 1], 100), _Split([], 0), _Split([2, 2], 200)]
    ds = ConcatSplits(parts)
    assert len(ds) == 5 and ds.identity.tolist() == [0, 0, 1, 2, 2]
    b = ds.get_batch([4, 0, 3, 2])
    assert b["image"][:, 0].tolist() == [201.0, 100.0, 200.0, 102.0]
    assert b["index"].tolist() == [4, 0, 3, 2] and b["identity"].tolist() == [2, 0, 2, 1]
    batches = list(rows_loader(ds, [0, 3, 4], 2))
    assert [bb["index"].tolist() for bb in batches] == [[0, 3], [4]]


def test_load_probe_set_draws_across_identities_and_joins_splits_for_all(monkeypatch):
    from types import SimpleNamespace

    from fer_models.config import DataConfig
    from orchestrator.probe import ProbeSpec, _load_probe_set

    train = _Split(np.repeat([0, 1], [40, 40]), 0)
    val = _Split(np.repeat([2], 10), 1000)
    test = _Split(np.repeat([3, 4, 5], [30, 30, 30]), 2000)
    loaders = SimpleNamespace(**{k: SimpleNamespace(dataset=v) for k, v in
                                 (("train", train), ("val", val), ("test", test))})
    seen = {}

    def fake_build(data_cfg, *a, **k):
        seen["augment"] = data_cfg.augment
        return loaders

    monkeypatch.setattr("fer_models.data.dataset.build_loaders", fake_build)
    cfg = SimpleNamespace(seed=0, data=DataConfig())
    loader, info = _load_probe_set(cfg, ProbeSpec(n_samples=30, batch_size=8))
    ids = torch.cat([b["identity"] for b in loader]).tolist()
    assert sorted(set(ids)) == [3, 4, 5] and ids.count(3) == ids.count(4) == 10 and seen["augment"] == ()  # no augmentation steps
    assert info["identities"] == 3 and info["sampling"] == "identity"
    loader, info = _load_probe_set(cfg, ProbeSpec(split="all", n_samples=60, batch_size=16))
    ids = torch.cat([b["identity"] for b in loader]).tolist()
    assert sorted(set(ids)) == [0, 1, 2, 3, 4, 5] and ids.count(2) == 10 and len(ids) == 60
    loader, info = _load_probe_set(cfg, ProbeSpec(n_samples=30, sampling="random", batch_size=64))
    assert len(next(iter(loader))["identity"]) == 30 and info["sampling"] == "random"
    with pytest.raises(Exception, match="split must be one of"):
        ProbeSpec(split="dev").check()
