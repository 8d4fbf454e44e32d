"""Readers + landmark backends through the preprocessing cache (fer_models.data.cache)."""

from __future__ import annotations

import numpy as np

from fer_models.data import cache
from fer_models.data.images import load_image
from fer_models.data.landmarks import default_backend
from fer_models.data.readers import read_dataset
from fer_models.registry import LANDMARKS


def test_affectnet_auto_uses_shipped_landmarks_and_counts_corrupt(tmp_path, monkeypatch, make_affectnet):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    make_affectnet(tmp_path / "aff", corrupt=("1/b.jpg",))
    m = read_dataset("affectnet", tmp_path / "aff", val_fraction=0)
    info = cache.prepare(m, "auto", "paper002", 16, 32, tmp_path / "cache", progress=False)
    assert info.meta["inputs"]["backend"] == "dataset"
    assert info.failures == {"unreadable": 1}  # the corrupt JPEG fails at load time, counted
    assert info.reader_skipped["missing image"] == 1 and info.reader_skipped["expression 8 (none)"] == 1
    test = cache.load_split(info.dir, "test")
    # shipped landmarks, mapped from the 64 px image with its box into the 32 px stored crop
    assert np.isfinite(test["landmarks"]).all() and test["landmarks"].shape[1:] == (68, 2)


def test_synthetic_rafdb_through_real_reader_and_auto_backend(tmp_path):
    m = read_dataset("synthetic-rafdb", tmp_path / "s", n_train=21, n_test=7, image_size=32,
                     n_identities=3, progress=False)
    assert m.counts()["test"] == 7 and m.counts()["train"] + m.counts()["val"] == 21
    assert all(s.path.endswith("_aligned.jpg") for s in m.samples)  # read by the real rafdb reader
    assert default_backend(m) == "synthetic"
    backend = LANDMARKS.get("synthetic")()
    images = [load_image(s.path) for s in m.samples[:4]]
    out = backend.detect(images, m.samples[:4])
    assert all(o.shape == (68, 2) and np.allclose(o, s.landmarks) for o, s in zip(out, m.samples[:4]))
