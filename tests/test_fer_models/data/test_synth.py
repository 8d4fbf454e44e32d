"""Synthetic faces: generator, official layouts on disk, synthetic-* readers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_models.data import au, synth
from fer_models.data.synth import face as synth_face, io as synth_io, render as synth_render
from fer_models.errors import ConfigError, DatasetError
from fer_models.labels import INDEX, NEUTRAL
from fer_models.registry import DATASETS


@pytest.fixture(scope="module")
def batch():
    return synth.generate(84, 48, seed=5, n_identities=6, labels=np.repeat(np.arange(7), 12))


def test_shapes_and_ranges(batch):
    n = len(batch)
    assert batch.images.shape == (n, 48, 48, 3) and batch.images.dtype == np.uint8
    assert batch.aus.shape == (n, len(au.AU_IDS))
    assert batch.landmarks.shape == (n, 68, 2) and np.isfinite(batch.landmarks).all()
    assert (batch.landmarks > -5).all() and (batch.landmarks < 53).all()  # the face is in frame
    assert set(batch.identities) <= set(range(6)) and len(set(batch.identities)) > 3
    assert ((batch.aus >= 0) & (batch.aus <= 1)).all()
    assert (np.abs(batch.valence) <= 1).all() and (np.abs(batch.arousal) <= 1).all()
    assert batch.images.std() > 20  # not blank


def test_deterministic_and_prefix_stable():
    a = synth.generate(6, 32, seed=3, n_identities=4)
    b = synth.generate(6, 32, seed=3, n_identities=4)
    c = synth.generate(9, 32, seed=3, n_identities=4)
    d = synth.generate(6, 32, seed=4, n_identities=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.images, c.images[:6])
    np.testing.assert_array_equal(a.aus, c.aus[:6])
    np.testing.assert_array_equal(c.images[6:], synth.generate(3, 32, seed=3, n_identities=4, start=6).images)
    assert not np.array_equal(a.images, d.images)


def test_expressions_activate_their_codebook_aus(batch):
    cb = au.get_codebook("paper002")
    for label in range(7):
        rows = batch.aus[batch.labels == label]
        inside = [au.AU_INDEX[a] for a in cb.aus(label)]
        outside = [i for i in range(len(au.AU_IDS)) if i not in inside]
        if inside:
            assert (rows[:, inside] > 0).sum(1).min() >= 2  # at least two codebook AUs on
            assert rows[:, inside].mean() > 3 * rows[:, outside].mean()
        else:  # neutral: only faint AU noise
            assert rows.max() < 0.45
    # partial activation: not every codebook AU is present in every image
    anger = batch.aus[batch.labels == INDEX["anger"]][:, [au.AU_INDEX[a] for a in cb.aus(INDEX["anger"])]]
    assert (anger == 0).any()


def test_valence_arousal_follow_the_circumplex(batch):
    def mean(name):
        m = batch.labels == INDEX[name]
        return batch.valence[m].mean(), batch.arousal[m].mean()

    hv, ha = mean("happiness")
    av, aa = mean("anger")
    sv, sa = mean("sadness")
    nv, na = mean("neutral")
    assert hv > 0.3 and av < -0.2 and sv < -0.2
    assert aa > ha > sa and sa < -0.1
    assert abs(nv) < 0.1 and abs(na) < 0.1


def test_landmarks_move_with_aus():
    """Same identity and pose seed, AU12 on vs off: lip corners rise; AU26: jaw drops."""
    p = synth.identities(1, seed=0)[0]
    zero = np.zeros(len(au.AU_IDS))
    base = synth_face.face_landmarks(p, zero)
    smile = synth_face.face_landmarks(p, np.where(np.array(au.AU_IDS) == 12, 1.0, 0.0))
    drop = synth_face.face_landmarks(p, np.where(np.array(au.AU_IDS) == 26, 1.0, 0.0))
    assert smile[48, 1] < base[48, 1] - 0.05 and smile[54, 1] < base[54, 1] - 0.05
    assert smile[48, 0] < base[48, 0] and smile[54, 0] > base[54, 0]  # corners pulled apart
    assert drop[8, 1] > base[8, 1] + 0.05 and drop[66, 1] - drop[62, 1] > 0.05
    # the left/right moves are mirror images
    assert smile[48, 0] - base[48, 0] == pytest.approx(-(smile[54, 0] - base[54, 0]))


def test_appearance_cues_are_drawn():
    """Open mouth (AU25+26) adds dark interior and teeth pixels around the mouth."""
    p = synth.identities(1, seed=2)[0]
    a = 80.0 * np.eye(2)
    t = np.array([64.0, 64.0])

    def mouth_pixels(aus):
        lm = synth_face.face_landmarks(p, aus)
        im = np.asarray(synth_render.render_face(p, lm, aus, a, t, 128, (128, 128, 128))).astype(int)
        m = (lm[60:68] @ a.T + t).mean(0).astype(int)
        return im[m[1] - 10 : m[1] + 11, m[0] - 12 : m[0] + 13]  # the whole mouth, open or closed

    closed = mouth_pixels(np.zeros(len(au.AU_IDS)))
    o = np.zeros(len(au.AU_IDS))
    o[au.AU_INDEX[25]] = o[au.AU_INDEX[26]] = 1.0
    opened = mouth_pixels(o)
    assert (opened.sum(-1) < 150).sum() > (closed.sum(-1) < 150).sum() + 5  # dark mouth
    assert (opened.min(-1) > 200).sum() > (closed.min(-1) > 200).sum()  # teeth


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="image_size"):
        synth.generate(2, 8)
    with pytest.raises(ConfigError, match="layout"):
        synth_io.write_dataset("/tmp/never", layout="ckplus")


def test_rafdb_layout_on_disk(tmp_path):
    root = synth_io.write_dataset(tmp_path / "raf", "rafdb", 14, 7, 40, seed=1, n_identities=3,
                                  progress=False)
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().split()
    names, ids = lines[0::2], [int(x) for x in lines[1::2]]
    assert names[0] == "train_00001.jpg" and names[14] == "test_0001.jpg" and len(names) == 21
    assert set(ids) <= set(range(1, 8))
    for name in names:
        assert (root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")).is_file()
    truth = synth_io.load_truth(root)
    t = truth["Image/aligned/train_00001_aligned.jpg"]
    assert synth_io.PROJECT_TO_RAF[t.label] == ids[0]
    assert t.landmarks.shape == (68, 2) and set(t.aus) == set(au.AU_IDS)
    ref = synth.generate(1, 40, seed=1, n_identities=3)
    np.testing.assert_allclose(t.landmarks, ref.landmarks[0], atol=1e-3)
    assert t.identity == ref.identities[0]
    # refuses to overwrite, then replaces only a synthetic dataset
    with pytest.raises(DatasetError, match="--overwrite"):
        synth_io.write_dataset(root, "rafdb", 3, 1, 40, progress=False)
    synth_io.write_dataset(root, "rafdb", 3, 1, 40, progress=False, overwrite=True)
    assert len(synth_io.load_truth(root)) == 4
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a fer-orch synthetic"):
        synth_io.write_dataset(other, "rafdb", 3, 1, 40, progress=False, overwrite=True)
    assert (other / "keep.txt").exists()


def test_affectnet_layout_on_disk(tmp_path):
    root = synth_io.write_dataset(tmp_path / "an", "affectnet", 10, 4, 40, seed=2, n_identities=3,
                                  progress=False)
    lists = root / "Manually_Annotated_file_lists"
    with (lists / "training.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == synth_io.AFFECTNET_COLUMNS and len(rows) == 11
    with (lists / "validation.csv").open() as f:
        assert len(list(csv.reader(f))) == 5
    truth = synth_io.load_truth(root)
    for row in rows[1:]:
        rel = "Manually_Annotated_Images/" + row[0]
        assert (root / rel).is_file()
        lm = np.array([float(v) for v in row[5].split(";")]).reshape(68, 2)
        t = truth[rel]
        np.testing.assert_allclose(lm, t.landmarks, atol=0.01)
        x, y, w, h = map(int, row[1:5])
        assert x <= lm[:, 0].min() and x + w >= lm[:, 0].max() and y <= lm[:, 1].min()
        assert synth_io.PROJECT_TO_AFFECTNET[t.label] == int(row[6])
        assert float(row[7]) == pytest.approx(t.valence, abs=1e-5)
    assert max(int(r[6]) for r in rows[1:]) <= 6  # no contempt, no 8-10


def test_synthetic_reader_generates_once_and_attaches_truth(tmp_path):
    reader = DATASETS.get("synthetic-rafdb")()
    root = tmp_path / "sr"
    m = reader.read(root, val_fraction=0.3, n_train=21, n_test=7, image_size=32, n_identities=3,
                    progress=False)
    assert m.dataset == "synthetic-rafdb" and m.counts()["test"] == 7
    assert m.counts()["train"] + m.counts()["val"] == 21 and m.counts()["val"] > 0
    truth = synth_io.load_truth(root)
    for s in m.samples:
        t = truth[Path(s.path).relative_to(root.resolve()).as_posix()]
        assert s.label == t.label and s.identity == str(t.identity)
        assert s.meta["synthetic"] and s.landmarks.shape == (68, 2) and set(s.aus) == set(au.AU_IDS)
        assert np.isfinite(s.valence) and (s.label != NEUTRAL or abs(s.valence) < 0.4)
    stamp = (root / synth_io.INFO_FILE).stat().st_mtime_ns
    reader.read(root, n_train=21, n_test=7, image_size=32, n_identities=3, progress=False)
    assert (root / synth_io.INFO_FILE).stat().st_mtime_ns == stamp  # not regenerated
    m2 = reader.read(root, n_train=10, n_test=7, image_size=32, n_identities=3, progress=False)
    assert m2.counts()["train"] + m2.counts()["val"] == 10  # other options: regenerated
    m3 = reader.read(root, progress=False)  # no options: the dataset there is used as it is
    assert len(m3.samples) == len(m2.samples)
    with pytest.raises(ConfigError, match="unknown reader option"):
        reader.read(root, n_trian=3)


def test_synthetic_affectnet_default_root(tmp_path):
    from fer_models import paths
    from fer_models.data.readers import read_dataset

    m = read_dataset("synthetic-affectnet", n_train=14, n_test=7, image_size=32, n_identities=2,
                     progress=False)
    assert m.root == (paths.synthetic_dir() / "synthetic-affectnet").resolve()
    s = m.split("test")[0]
    assert s.box is not None and s.meta["synthetic"] and s.identity in {"0", "1"}
    # the AffectNet-like set draws other faces than the RAF-DB-like one (another seed)
    raf = read_dataset("synthetic-rafdb", n_train=14, n_test=7, image_size=32, n_identities=2,
                       progress=False)
    a = np.asarray(Image.open(m.samples[0].path))
    b = np.asarray(Image.open(raf.samples[0].path))
    assert a.shape == b.shape and not np.array_equal(a, b)
