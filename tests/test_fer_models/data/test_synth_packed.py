"""Synthetic TFD and FER2013 (faces packed in a .mat / a csv), read by the real readers."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from fer_models.data.images import load_image
from fer_models.data.readers import fold_options, read_dataset
from fer_models.data.synth.io import load_truth
from fer_models.data.synth.packed import write_fer2013, write_tfd


@pytest.fixture(scope="module")
def tfd_root(tmp_path_factory):
    return write_tfd(tmp_path_factory.mktemp("tfd") / "TFD", n_faces=120, n_identities=10, seed=1)


def test_synthetic_tfd_has_tfd_folds_by_subject_and_unlabelled_rows(tfd_root):
    from scipy.io import loadmat

    mat = loadmat(tfd_root / "TFD_96x96.mat")
    n_unlabelled = int((mat["labs_ex"] == -1).sum())
    assert mat["images"].shape == (120, 96, 96) and mat["folds"].shape == (120, 5) and n_unlabelled > 0
    tested = Counter()
    for fold in range(5):
        m = read_dataset("tfd", tfd_root, resolution=96, fold=fold)
        assert m.skipped == Counter({"unlabelled": n_unlabelled})
        assert len(m.samples) == 120 - n_unlabelled and {s.label for s in m.samples} <= set(range(7))
        who = {split: {s.identity for s in m.split(split)} for split in ("train", "val", "test")}
        assert who["test"] and who["val"] and not (who["test"] & who["train"]) and not (who["val"] & who["train"])
        tested.update(s.meta["index"] for s in m.split("test"))
    assert len(tested) == 120 - n_unlabelled and set(tested.values()) == {1}  # each face tested in one fold
    small = read_dataset("tfd", tfd_root, resolution=48)
    img = load_image(small.samples[0].path)
    assert img.shape[:2] == (48, 48) and np.ptp(img[..., 0]) > 0
    assert np.array_equal(img[..., 0], img[..., 1])  # grey


def test_synthetic_tfd_reader_attaches_the_truth_of_the_resolution_read(tmp_path):
    lms = {}
    for size in (96, 48):
        m = read_dataset("synthetic-tfd", tmp_path / "tfd", n_faces=60, n_identities=5, resolution=size,
                         progress=False)
        assert m.samples and all(s.landmarks is not None and s.meta["synthetic"] for s in m.samples)
        lms[size] = np.stack([s.landmarks for s in sorted(m.samples, key=lambda s: s.meta["index"])])
        truth = load_truth(tmp_path / "tfd")
        for s in m.samples[:5]:
            assert s.label == truth[f"TFD_{size}x{size}.mat#index={s.meta['index']}"].label
    assert np.allclose((lms[96] + 0.5) / 2 - 0.5, lms[48], atol=2e-3)  # each file's own pixels
    assert [o["fold"] for o in fold_options("synthetic-tfd", {}, "all")] == [0, 1, 2, 3, 4]


def test_synthetic_fer2013_is_the_kaggle_csv_read_by_the_real_reader(tmp_path):
    root = write_fer2013(tmp_path / "FER2013", n_train=40, n_val=10, n_test=12, n_identities=6, seed=1)
    with open(root / "fer2013.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["emotion", "pixels", "Usage"] and len(rows[0]["pixels"].split()) == 48 * 48
    m = read_dataset("fer2013", root)
    assert m.counts() == {"train": 40, "val": 10, "test": 12} and not m.skipped
    s = m.samples[7]
    assert np.array_equal(load_image(s.path)[..., 0].ravel(),
                          np.array(rows[s.meta["row"] - 1]["pixels"].split(), np.uint8))
    nn1 = read_dataset("synthetic-fer2013", tmp_path / "syn", n_train=40, n_val=10, n_test=12, n_identities=6,
                       classes="happiness,sadness,neutral", progress=False)
    assert {s.label for s in nn1.samples} == {3, 4, 6} and all(s.landmarks is not None for s in nn1.samples)
    truth = load_truth(tmp_path / "syn")
    assert all(truth[f"fer2013.csv#row={s.meta['row']}"].label == s.label for s in nn1.samples)


def test_data_synth_writes_tfd_and_fer2013(tmp_path):
    from orchestrator.cli import main

    for layout, opts, n in (("tfd", {"resolution": 96}, None), ("fer2013", {}, 20 + 2 * 5)):
        res = CliRunner().invoke(main, ["data", "synth", "--layout", layout, "--out", str(tmp_path / layout),
                                        "--n-train", "20", "--n-test", "5", "--identities", "5"])
        assert res.exit_code == 0, res.output
        m = read_dataset(layout, tmp_path / layout, **opts)
        assert len(m.samples) + sum(m.skipped.values()) == (n or 25), res.output
