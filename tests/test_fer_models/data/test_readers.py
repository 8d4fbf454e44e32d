"""Dataset readers on tiny trees written in each dataset's exact on-disk layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fer_models.data.images import UnreadableImage, load_image
from fer_models.data.readers import read_dataset, subject_folds
from fer_models.errors import ConfigError, DatasetError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS


# --------------------------------------------------------------------------- images


def test_load_image_gray_to_rgb_and_errors(tmp_path, write_img, write_corrupt):
    p = write_img(tmp_path / "g.png", (40, 30), mode="L")
    arr = load_image(p)
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr[..., 0], arr[..., 2])
    with pytest.raises(UnreadableImage, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImage, match="cannot be decoded"):
        load_image(write_corrupt(tmp_path / "bad.jpg"))
    # a truncated JPEG (valid header, cut body) also fails at load time
    good = write_img(tmp_path / "t.jpg", (64, 64))
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage):
        load_image(tmp_path / "trunc.jpg")


# --------------------------------------------------------------------------- registry / factory


def test_registry_lists_all_readers():
    names = set(DATASETS.names())
    assert {"rafdb", "affectnet", "ckplus", "fer2013", "kdef", "rafd", "tfd", "disfa"} <= names


def test_unknown_option_is_config_error(tmp_path, make_rafdb):
    make_rafdb(tmp_path)
    with pytest.raises(ConfigError, match="unknown reader option"):
        read_dataset("rafdb", tmp_path, colour="blue")


def test_subject_folds_cover_all_identities_once():
    folds = subject_folds([f"S{i:03d}" for i in range(23)], 10)
    assert sorted(set(folds.values())) == list(range(10))
    assert len(folds) == 23


# --------------------------------------------------------------------------- RAF-DB

RAF = {"train_00001.jpg": 5, "train_00002.jpg": 1, "train_00003.jpg": 4, "train_00004.jpg": 4,
       "train_00005.jpg": 7, "train_00006.jpg": 6, "train_00007.jpg": 4, "train_00008.jpg": 3,
       "test_0001.jpg": 2, "test_0002.jpg": 4}


@pytest.fixture
def make_rafdb(write_img):
    def make(root, spelling="list_patition_label.txt", missing=(), with_points=True):
        (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
        (root / "EmoLabel" / spelling).write_text("".join(f"{n} {l}\n" for n, l in RAF.items()))
        for name in RAF:
            stem = name[:-4]
            if name not in missing:
                write_img(root / "Image" / "aligned" / f"{stem}_aligned.jpg", (100, 100))
                write_img(root / "Image" / "original" / name, (120, 90))
            if with_points:
                man = root / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
                man.parent.mkdir(parents=True, exist_ok=True)
                man.write_text("10.5\t20.0\n30.0\t20.5\n20.0\t30.0\n12.0\t40.0\n28.0\t40.0\n0\n1\n")
        return root

    return make


@pytest.mark.parametrize("spelling", ["list_patition_label.txt", "list_partition_label.txt"])
def test_rafdb_both_spellings_labels_and_points(tmp_path, spelling, make_rafdb):
    m = read_dataset("rafdb", make_rafdb(tmp_path, spelling), val_fraction=0.0)
    assert m.counts() == {"train": 8, "val": 0, "test": 2}
    by_name = {s.meta["name"]: s for s in m.samples}
    assert by_name["train_00001.jpg"].label == INDEX["sadness"]
    assert by_name["train_00002.jpg"].label == INDEX["surprise"]
    assert by_name["train_00005.jpg"].label == INDEX["neutral"]
    assert by_name["train_00006.jpg"].label == INDEX["anger"]
    assert by_name["train_00008.jpg"].label == INDEX["disgust"]
    assert by_name["test_0001.jpg"].label == INDEX["fear"]
    assert by_name["train_00001.jpg"].path.endswith("Image/aligned/train_00001_aligned.jpg")
    pts = np.asarray(by_name["train_00001.jpg"].meta["points5"])
    assert pts.shape == (5, 2) and pts[0, 0] == pytest.approx(10.5)


def test_rafdb_original_images_missing_counted_and_val_from_train(tmp_path, make_rafdb):
    make_rafdb(tmp_path, missing=("train_00003.jpg",), with_points=False)
    m = read_dataset("rafdb", tmp_path, images="original", val_fraction=0.34, seed=1)
    assert m.skipped["missing image"] == 1
    assert all("/Image/original/" in s.path for s in m.samples)
    assert m.counts()["test"] == 2  # test untouched by the validation carve
    val = m.split("val")
    assert val and all(s.meta["name"].startswith("train_") for s in val)
    # seeded: the same seed carves the same rows
    m2 = read_dataset("rafdb", tmp_path, images="original", val_fraction=0.34, seed=1)
    assert [s.path for s in m2.split("val")] == [s.path for s in val]


def test_rafdb_missing_and_malformed(tmp_path, make_rafdb):
    with pytest.raises(DatasetError, match="list_patition_label.txt.*under"):
        read_dataset("rafdb", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset("rafdb", tmp_path / "absent")
    make_rafdb(tmp_path)
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg nine\n")
    with pytest.raises(DatasetError, match="line 1"):
        read_dataset("rafdb", tmp_path)


def test_rafdb_verify_drops_corrupt_jpeg(tmp_path, make_rafdb, write_corrupt):
    make_rafdb(tmp_path)
    write_corrupt(tmp_path / "Image" / "aligned" / "train_00004_aligned.jpg")
    lazy = read_dataset("rafdb", tmp_path, val_fraction=0)
    assert len(lazy.samples) == 10 and not lazy.skipped  # the reader does not decode
    strict = read_dataset("rafdb", tmp_path, val_fraction=0, verify=True)
    assert len(strict.samples) == 9 and strict.skipped["unreadable image"] == 1


# --------------------------------------------------------------------------- AffectNet


@pytest.mark.parametrize("header", [True, False])
def test_affectnet_official_with_and_without_header(tmp_path, header, make_affectnet):
    m = read_dataset("affectnet", make_affectnet(tmp_path, header), val_fraction=0)
    assert m.num_classes == 7
    assert m.skipped["expression 8 (none)"] == 1
    assert m.skipped["expression 9 (uncertain)"] == 1
    assert m.skipped["expression 10 (non-face)"] == 1
    assert m.skipped["contempt (7-class mode)"] == 1
    assert m.skipped["missing image"] == 1
    assert m.counts() == {"train": 6, "val": 0, "test": 2}  # validation.csv is the test set
    by = {s.path.split("Manually_Annotated_Images/")[1]: s for s in m.samples}
    assert by["1/a.jpg"].label == INDEX["neutral"] and by["1/c.jpg"].label == INDEX["anger"]
    assert by["4/l.jpg"].label == INDEX["disgust"] and by["4/l.jpg"].split == "test"
    a = by["1/a.jpg"]
    assert a.box == (4.0, 6.0, 50.0, 52.0)
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float32
    assert a.landmarks[0, 0] == pytest.approx(5.0) and a.landmarks[0, 1] == pytest.approx(8.0)
    assert a.valence == pytest.approx(0.1) and a.arousal == pytest.approx(0.2)
    assert math.isnan(by["3/j.jpg"].valence) and by["3/j.jpg"].arousal == pytest.approx(0.5)


def test_affectnet_eight_classes_keeps_contempt_and_corrupt_is_load_time(tmp_path, make_affectnet):
    make_affectnet(tmp_path, corrupt=("1/b.jpg",))
    m = read_dataset("affectnet", tmp_path, classes=8, val_fraction=0)
    assert m.num_classes == 8
    assert any(s.label == INDEX["contempt"] for s in m.samples)
    corrupt = [s for s in m.samples if s.path.endswith("1/b.jpg")]
    assert corrupt, "a corrupt file is not the reader's business unless verify=True"
    with pytest.raises(UnreadableImage):
        load_image(corrupt[0].path)
    v = read_dataset("affectnet", tmp_path, classes=8, val_fraction=0, verify=True)
    assert v.skipped["unreadable image"] == 1 and len(v.samples) == len(m.samples) - 1


def test_affectnet_npy_layout(tmp_path, write_img):
    rows = {"train_set": [(0, 1, 0.5, 0.1), (1, 4, -0.3, 0.8), (2, 8, 0, 0), (3, 0, -2, -2)],
            "val_set": [(4, 6, -0.7, 0.6)]}
    for folder, items in rows.items():
        ann = tmp_path / folder / "annotations"
        ann.mkdir(parents=True)
        for i, e, v, a in items:
            write_img(tmp_path / folder / "images" / f"{i}.jpg", (48, 48))
            np.save(ann / f"{i}_exp.npy", np.array(str(e)))
            np.save(ann / f"{i}_val.npy", np.array(str(v)))
            np.save(ann / f"{i}_aro.npy", np.array(str(a)))
            np.save(ann / f"{i}_lnd.npy", np.arange(136, dtype=np.float64))
    m = read_dataset("affectnet", tmp_path, val_fraction=0)
    assert m.counts() == {"train": 3, "val": 0, "test": 1}
    assert m.skipped["expression 8 (none)"] == 1
    by = {s.path.rsplit("/", 1)[1]: s for s in m.samples}
    assert by["0.jpg"].label == INDEX["happiness"] and by["1.jpg"].label == INDEX["fear"]
    assert by["4.jpg"].label == INDEX["anger"] and by["4.jpg"].split == "test"
    assert by["1.jpg"].landmarks[1].tolist() == [2.0, 3.0]
    assert math.isnan(by["3.jpg"].valence) and by["0.jpg"].valence == pytest.approx(0.5)


def test_affectnet_missing_and_bad_columns(tmp_path, make_affectnet):
    with pytest.raises(DatasetError, match="training.csv"):
        read_dataset("affectnet", tmp_path)
    make_affectnet(tmp_path)
    (tmp_path / "Manually_Annotated_file_lists" / "training.csv").write_text(
        "subDirectory_filePath,face_x,expression\n1/a.jpg,1,2\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        read_dataset("affectnet", tmp_path)


def test_rafdb_all_images_missing_is_one_clear_error(tmp_path, make_rafdb):
    make_rafdb(tmp_path, missing=tuple(RAF))
    (tmp_path / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DatasetError, match=r"no usable image.*missing image"):
        read_dataset("rafdb", tmp_path)


def test_rafdb_label_file_with_a_utf8_bom_is_read(tmp_path, make_rafdb):
    """A label file saved on Windows starts with a byte-order mark."""
    make_rafdb(tmp_path, with_points=False)
    labels = tmp_path / "EmoLabel" / "list_patition_label.txt"
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    m = read_dataset("rafdb", tmp_path, val_fraction=0)
    assert len(m.samples) == 10 and m.samples[0].meta["name"] == "train_00001.jpg"
    assert m.samples[0].label == INDEX["sadness"]


def test_empty_validation_split_is_one_sentence_before_the_cache(tmp_path, make_rafdb, monkeypatch):
    """8 training rows at val_fraction 0.1 give no validation row; refused with the
    row count and the val_fraction that gives one per class, before any cache is built."""
    from click.testing import CliRunner

    from fer_models import paths
    from fer_models.config import DataConfig
    from fer_models.data.dataset import build_loaders
    from orchestrator.cli import main

    make_rafdb(tmp_path / "raf", with_points=False)
    sentence = ("rafdb: the validation split is empty (8 training rows in 6 classes, the smallest with 1) at "
                "val_fraction 0.1; pass --val-fraction 0.34 or more")
    with pytest.raises(DatasetError) as e:
        build_loaders(DataConfig(dataset="rafdb", root=str(tmp_path / "raf")), 4, 0, progress=False)
    assert sentence in str(e.value)
    r = CliRunner().invoke(main, ["preprocess", "--dataset", "rafdb", "--root", str(tmp_path / "raf")])
    assert r.exit_code == 2 and sentence in r.output and "Traceback" not in r.output
    assert not paths.cache_dir().exists() or not any(paths.cache_dir().iterdir())
    assert read_dataset("rafdb", tmp_path / "raf", val_fraction=0.34).split("val")  # the advice works
    assert not read_dataset("rafdb", tmp_path / "raf", val_fraction=0).split("val")  # asked for: no check here


def test_affectnet_bad_landmark_rows_are_counted_and_the_good_rows_keep_theirs(tmp_path, make_affectnet):
    """Non-numeric or 135-value landmark rows were dropped from the 'dataset' source
    silently, and 'auto' then switched the whole dataset to dlib (2 of 8 rows < 95%)."""
    from fer_models.data.landmarks import default_backend

    make_affectnet(tmp_path)
    csv = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv.read_text().splitlines()
    for i, line in enumerate(lines):
        head, lnd, tail = line.split('"') if '"' in line else (line, None, None)
        if lnd is None:
            continue
        if head.startswith("1/b.jpg"):
            lines[i] = f'{head}"n/a;{lnd.split(";", 1)[1]}"{tail}'
        elif head.startswith("3/h.jpg"):
            lines[i] = f'{head}"{lnd.rsplit(";", 1)[0]}"{tail}'  # 135 values
    csv.write_text("\n".join(lines) + "\n")
    m = read_dataset("affectnet", tmp_path, val_fraction=0)
    assert m.landmark_errors == {"landmarks not numeric": 1, "135 landmark values, not 136": 1}
    assert m.counts() == {"train": 6, "val": 0, "test": 2}  # the rows are kept
    by = {s.path.split("Manually_Annotated_Images/")[1]: s for s in m.samples}
    assert by["1/b.jpg"].landmarks is None and by["3/h.jpg"].landmarks is None
    assert sum(s.landmarks is not None for s in m.samples) == 6  # every good row keeps its shipped landmarks
    assert default_backend(m) == "dataset"
    assert "1 135 landmark values, not 136" in m.summary()
