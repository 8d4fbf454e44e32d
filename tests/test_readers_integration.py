"""Readers + landmark backends through the preprocessing cache (fer_models.data.cache)."""

from __future__ import annotations

import numpy as np
import pytest

from fer_models.data.readers._base import read_dataset

from test_readers import make_affectnet

cache = pytest.importorskip("fer_models.data.cache")


def test_affectnet_auto_uses_shipped_landmarks_and_counts_corrupt(tmp_path, monkeypatch):
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
