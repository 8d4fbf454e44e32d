"""The planted-shortcut synthetic dataset: a corner colour predicts the expression
in train and validation, and is random in test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_models.data.readers import read_dataset
from fer_models.data.synth.shortcut import CUE_COLOURS, corner_size, cue_classes, read_cues
from fer_models.errors import ConfigError


def _corner_class(path: str) -> int:
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    s = corner_size(img.shape[0])
    colour = img[1 : s - 1, 1 : s - 1].reshape(-1, 3).mean(0)
    return int(np.argmin(np.abs(CUE_COLOURS.astype(int) - colour).sum(1)))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc") / "d"
    m = read_dataset("synthetic-rafdb-shortcut", root, val_fraction=0.2, seed=0, n_train=140, n_test=70,
                     n_identities=6, shortcut=1.0, progress=False)
    return root, m


def test_the_cue_is_the_label_in_train_and_val_and_random_in_test(tree):
    root, m = tree
    cues = read_cues(root)
    by_split = {s: [(cues[Path(x.path).relative_to(root.resolve()).as_posix()], x.label) for x in m.samples
                    if x.split == s] for s in ("train", "val", "test")}
    assert by_split["val"] and by_split["test"]
    for split in ("train", "val"):
        assert all(c == y for c, y in by_split[split])
    agree = np.mean([c == y for c, y in by_split["test"]])
    assert agree < 0.4  # chance is 1/7
    for x in m.samples[:20]:  # what is on disk is the recorded cue
        assert _corner_class(x.path) == cues[Path(x.path).relative_to(root.resolve()).as_posix()]


def test_strength_sets_how_often_the_cue_is_the_label():
    labels = np.random.default_rng(0).integers(0, 7, 5000)
    splits = np.array(["train"] * 4000 + ["test"] * 1000)
    cues = cue_classes(labels, splits, 0.6, seed=1)
    train = np.mean(cues[:4000] == labels[:4000])
    assert train == pytest.approx(0.6 + 0.4 / 7, abs=0.03)
    assert np.mean(cues[4000:] == labels[4000:]) == pytest.approx(1 / 7, abs=0.04)
    with pytest.raises(ConfigError, match="strength"):
        cue_classes(labels, splits, 1.5, seed=1)


def test_the_faces_are_synthetic_rafdbs_and_the_corners_hold_no_landmark(tree, tmp_path):
    root, m = tree
    s = corner_size(64)
    for x in m.samples:
        lm = x.landmarks
        assert not ((lm[:, 1] < s) & ((lm[:, 0] < s) | (lm[:, 0] >= 64 - s))).any()
    plain = read_dataset("synthetic-rafdb", tmp_path / "p", val_fraction=0.2, seed=0, n_train=140, n_test=70,
                         n_identities=6, progress=False)
    assert [x.label for x in plain.samples] == [x.label for x in m.samples]
    np.testing.assert_allclose(plain.samples[0].landmarks, m.samples[0].landmarks)
