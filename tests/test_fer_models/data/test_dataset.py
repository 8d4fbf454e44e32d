"""FaceDataset items follow docs/contracts.md; build_loaders prepares and reads the cache."""

from __future__ import annotations

import math

import pytest
import torch

from fer_models.config import DataConfig
from fer_models.data import cache
from fer_models.data.dataset import IMAGENET_MEAN, IMAGENET_STD, FaceDataset, build_loaders

torch.set_num_threads(1)


@pytest.fixture
def built(tmp_path, make_manifest, fake_backend):
    m = make_manifest(tmp_path / "data", n=24)
    info = cache.prepare(m, fake_backend, "paper002", 16, 32, tmp_path / "cache", progress=False)
    return m, info


def test_items_follow_the_contract(built):
    m, info = built
    ds = FaceDataset(info.dir, "train", 32, augment=False, seed=0)
    assert len(ds) == info.counts["train"] > 0
    item = ds[0]
    n_au = len(info.meta["inputs"]["au_ids"])
    spec = {
        "image": (torch.float32, (3, 32, 32)), "label": (torch.int64, ()),
        "au_map": (torch.float32, (1, 16, 16)), "au_valid": (torch.bool, ()),
        "gt_au_map": (torch.float32, (1, 16, 16)), "gt_valid": (torch.bool, ()),
        "identity": (torch.int64, ()), "valence": (torch.float32, ()),
        "arousal": (torch.float32, ()), "aus": (torch.float32, (n_au,)), "index": (torch.int64, ()),
        "landmarks": (torch.float32, (68, 2)), "row": (torch.int64, ()),
        "sequence": (torch.int64, ()),  # a cache column, passed through by name (-1: no sequence)
    }  # fmt: skip
    assert set(item) == set(spec)
    for k, (dtype, shape) in spec.items():
        assert item[k].dtype == dtype and tuple(item[k].shape) == shape, k
    # ImageNet normalisation of the stored uint8 pixels
    stored = cache.load_split(info.dir, "train")
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (item["image"] * std + mean) * 255
    assert torch.allclose(pixels, torch.from_numpy(stored["image"][0]).permute(2, 0, 1).float(), atol=1e-3)
    # landmarks in network-input pixels (here the stored size), NaN where the face was not found
    lm = torch.stack([ds[i]["landmarks"] for i in range(len(ds))])
    assert torch.allclose(lm, torch.from_numpy(stored["landmarks"]), equal_nan=True)
    assert torch.equal(torch.stack([ds[i]["row"] for i in range(len(ds))]), torch.from_numpy(stored["row"]))
    for i in range(len(ds)):
        it = ds[i]
        s = m.samples[int(stored["row"][i])]
        assert int(it["label"]) == s.label and int(it["index"]) == i
        assert (int(it["identity"]) == -1) == (s.identity is None)
        assert math.isnan(float(it["arousal"])) and float(it["valence"]) == pytest.approx(s.valence)
        if not it["au_valid"]:
            assert float(it["au_map"].abs().sum()) == 0.0
    ids = [int(ds[i]["identity"]) for i in range(len(ds))]
    names = [m.samples[int(r)].identity for r in stored["row"]]
    # the same identity string always maps to the same int, different strings to different ints
    assert len({(a, b) for a, b in zip(ids, names)}) == len(set(names))


def test_batch_indexing_equals_stacked_items_and_resizes(built):
    _, info = built
    ds = FaceDataset(info.dir, "train", augment=False)
    batch = ds[[2, 0, 1]]
    for k, v in batch.items():
        assert torch.allclose(v, torch.stack([ds[i][k] for i in (2, 0, 1)]), equal_nan=True), k
    big = FaceDataset(info.dir, "train", 48)
    assert big[0]["image"].shape == (3, 48, 48)
    with pytest.raises(IndexError):
        ds[len(ds)]
    from fer_models.errors import ConfigError

    with pytest.raises(ConfigError, match="split"):
        FaceDataset(info.dir, "trian")


def test_augmentation_moves_images_and_maps_but_not_targets(built):
    _, info = built
    plain = FaceDataset(info.dir, "train", augment=False)
    aug = FaceDataset(info.dir, "train", augment=True, seed=1)
    idx = list(range(len(plain)))
    a, b = plain[idx], aug[idx]
    assert not torch.allclose(a["image"], b["image"])
    valid = a["au_valid"]
    assert not torch.allclose(a["au_map"][valid], b["au_map"][valid])
    for k in ("label", "au_valid", "gt_valid", "identity", "aus", "index"):
        assert torch.allclose(a[k].float(), b[k].float(), equal_nan=True), k
    again = FaceDataset(info.dir, "train", augment=True, seed=1)[idx]
    assert torch.equal(again["image"], b["image"])  # seeded


def test_build_loaders_prepares_once_then_reads(tmp_path, make_manifest, fake_backend):
    m = make_manifest(tmp_path / "data", n=40)
    cfg = DataConfig(dataset="fake", codebook="paper002", image_size=32, map_size=16, augment=True)
    loaders = build_loaders(cfg, batch_size=8, seed=0, cache_root=tmp_path / "cache",
                            manifest=m, backend=fake_backend, progress=False)
    assert fake_backend.constructed == 1 and loaders.num_classes == 7
    n_train = loaders.info.counts["train"]
    batches = list(loaders.train)
    assert len(batches) == n_train // 8 and all(b["image"].shape == (8, 3, 32, 32) for b in batches)
    seen = torch.cat([b["index"] for b in batches])
    assert len(set(seen.tolist())) == len(seen)  # a permutation, no repeats
    test_rows = torch.cat([b["index"] for b in loaders.test])
    assert test_rows.tolist() == list(range(loaders.info.counts["test"]))  # in order, all rows
    again = build_loaders(cfg, batch_size=8, seed=0, cache_root=tmp_path / "cache",
                          manifest=m, backend=fake_backend, progress=False)
    assert fake_backend.constructed == 1 and again.cache_dir == loaders.cache_dir
    first = [b["index"] for b in again.train]
    assert all(torch.equal(x["index"], y) for x, y in zip(batches, first))  # seeded order


def test_memory_mapped_shards_read_like_in_memory(built, tmp_path, monkeypatch, fake_backend):
    from fer_models.data import dataset as dsmod

    m, info = built
    whole = FaceDataset(info.dir, "train")
    monkeypatch.setattr(dsmod, "MAX_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(cache.writer, "SHARD_ROWS", 3)
    small = cache.prepare(m, fake_backend, "paper002", 16, 32, tmp_path / "c3", progress=False)
    assert len(small.meta["shards"]["train"]) > 3
    mapped = FaceDataset(small.dir, "train")
    assert mapped.memory_mapped and not whole.memory_mapped and len(mapped._arrays["image"]) > 1
    idx = torch.randperm(len(whole), generator=torch.Generator().manual_seed(0)).tolist()
    a, b = whole[idx], mapped[idx]
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k].nan_to_num(-1), b[k].nan_to_num(-1)), k
    raw, restore = mapped.gather_sorted(idx)  # read in storage order, put back on the device
    assert restore is not None and raw["index"].tolist() == sorted(idx)
    assert torch.equal(raw["image"][restore], mapped.gather(idx)["image"])
    assert raw["image"].dtype == torch.uint8


def test_synthetic_rafdb_through_the_real_reader_backend_and_renderer(tmp_path):
    from fer_models.data.readers import read_dataset

    m = read_dataset("synthetic-rafdb", tmp_path / "s", n_train=28, n_test=14, image_size=48,
                     n_identities=3, progress=False)
    cfg = DataConfig(dataset="synthetic-rafdb", image_size=32, map_size=16, augment=False)
    loaders = build_loaders(cfg, batch_size=8, seed=0, cache_root=tmp_path / "cache",
                            manifest=m, progress=False)
    assert loaders.info.meta["inputs"]["backend"] == "synthetic"  # "auto" on synthetic data
    assert loaders.info.failures == {}
    b = next(iter(loaders.test))
    non_neutral = b["label"] != 6
    assert torch.equal(b["au_valid"], non_neutral)
    assert set(b["identity"].tolist()) <= {0, 1, 2} and torch.isfinite(b["valence"]).all()
    both = b["au_valid"] & b["gt_valid"]
    assert both.any()
    # the truly active AUs are a subset of the codebook's: their maps overlap strongly
    cos = torch.nn.functional.cosine_similarity(b["au_map"][both].flatten(1), b["gt_au_map"][both].flatten(1))
    assert cos.mean() > 0.5


def _old_path():
    """The data path before the device-side loader, as benchmarks/bench_loader.py keeps it verbatim."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_loader.py"
    spec = importlib.util.spec_from_file_location("bench_loader_old_path", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("image_size", [32, 24])
def test_without_augmentation_the_new_path_gives_the_old_batches(built, image_size):
    old = _old_path()
    _, info = built
    new = FaceDataset(info.dir, "train", image_size, augment=False)
    ref = old.OldFaceDataset(info.dir, "train", image_size, augment=False)
    idx = torch.randperm(len(new), generator=torch.Generator().manual_seed(1)).tolist()
    a, b = ref[idx], new[idx]
    assert set(a) <= set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].nan_to_num(-1), b[k].nan_to_num(-1)), k


def test_without_augmentation_a_training_run_gives_the_old_metrics(tmp_path, make_manifest, fake_backend):
    from types import SimpleNamespace

    from fer_models.config import TrainConfig
    from fer_models.train import train

    old = _old_path()
    m = make_manifest(tmp_path / "data", n=48)
    info = cache.prepare(m, fake_backend, "paper002", 16, 32, tmp_path / "cache", progress=False)
    cfg = TrainConfig(method="cam", backbone="resnet-tiny", epochs=2, batch_size=8, device="cpu",
                      data=DataConfig(dataset="fake", image_size=32, map_size=16, augment=False))
    new = train(cfg, tmp_path / "new", cache_dir=info.dir, progress=False)
    ds = {s: old.OldFaceDataset(info.dir, s, 32, augment=False, seed=cfg.seed) for s in ("train", "val", "test")}
    loaders = SimpleNamespace(
        train=old.old_batch_loader(ds["train"], 8, True, cfg.seed, drop_last=True),
        val=old.old_batch_loader(ds["val"], 8, False), test=old.old_batch_loader(ds["test"], 8, False),
        num_classes=7)
    ref = train(cfg, tmp_path / "old", loaders=loaders, progress=False)
    strip = lambda h: [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in h]  # noqa: E731
    assert strip(new.history) == strip(ref.history)
    assert new.test.metrics == ref.test.metrics and new.best_epoch == ref.best_epoch


def test_other_numeric_columns_of_the_cache_pass_through_by_name(built, monkeypatch):
    import numpy as np

    from fer_models.data.cache import reader

    _, info = built
    for name in info.meta["shards"]["train"]:  # a reader adds a column: no change in dataset.py
        n = len(np.load(info.dir / name / "row.npy"))
        np.save(info.dir / name / "sequence.npy", np.arange(n, dtype=np.int32) + 100)
    monkeypatch.setattr(reader, "SHARD_COLUMNS", (*reader.SHARD_COLUMNS, "sequence"))
    ds = FaceDataset(info.dir, "train")
    assert ds[[1, 0]]["sequence"].tolist() == [101, 100]
    assert "path" not in ds[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_hands_uint8_to_the_device_side_and_transforms_only_there(built, workers):
    """The CPU side of a loader (``load``, run in the worker threads) only gathers: uint8 images
    and the stored maps, never a float image; conversion and augmentation happen in ``finish``,
    on the loader's device. On CUDA the raw batch is already on the GPU when ``finish`` runs."""
    from fer_models.data.dataset import DeviceLoader

    _, info = built
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ds = FaceDataset(info.dir, "train", augment=True, seed=2)
    seen = []
    transform = ds.transform

    def spy(raw):
        seen.append({k: (v.dtype, v.device.type) for k, v in raw.items()})
        return transform(raw)

    ds.transform = spy
    loader = DeviceLoader(ds, 4, True, seed=0, device=device, num_workers=workers, prefetch=2)
    raw, _, _ = loader.load([0, 1, 2, 3])
    assert raw["image"].dtype == torch.uint8 and raw["image"].shape[-1] == 3 and not seen
    assert raw["image"].device.type == device
    batches = list(loader)
    assert len(seen) == len(batches) == len(loader)
    assert all(s["image"] == (torch.uint8, device) for s in seen)
    assert all(b["image"].dtype == torch.float32 and b["image"].device.type == device for b in batches)
    # threads and prefetch change nothing in what comes out
    ds.transform = transform
    again = FaceDataset(info.dir, "train", augment=True, seed=2)
    ref = list(DeviceLoader(again, 4, True, seed=0, device=device, num_workers=0))
    for x, y in zip(batches, ref):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])


def test_the_loader_threads_persist_across_epochs_on_one_openmp_thread_each(built):
    """Two epochs, one pool of loader threads (started once); each thread runs torch on one
    OpenMP thread while the training thread keeps its own count."""
    import threading

    from fer_models.data.dataset import DeviceLoader

    _, info = built
    ds = FaceDataset(info.dir, "train", seed=2)
    threads, counts = set(), []
    gather = ds.gather_sorted

    def spy(*a, **k):
        threads.add(threading.get_ident())
        counts.append(torch.get_num_threads())
        return gather(*a, **k)

    ds.gather_sorted = spy
    main_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = DeviceLoader(ds, 4, True, seed=0, num_workers=2, prefetch=2)
        first = list(loader)
        pool = loader.pool()
        second = list(loader)
        assert loader.pool() is pool and len(first) == len(second) == len(loader)
        assert len(threads) <= 2 and counts and set(counts) == {1}
        assert torch.get_num_threads() == 2
        loader.close()
    finally:
        torch.set_num_threads(main_threads)
