"""Readers of the datasets of papers 001/003/004 (CK+, FER2013, KDEF, RaFD, TFD, DISFA)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fer_models.data.images import load_image
from fer_models.data.readers import read_dataset
from fer_models.errors import ConfigError, DatasetError
from fer_models.labels import INDEX


# --------------------------------------------------------------------------- CK+


@pytest.fixture
def make_ckplus(write_img):
    def make(root, n_subjects=4):
        # (subject, sequence, CK+ id or None, n frames)
        seqs = []
        for i in range(n_subjects):
            subj = f"S{5 + i:03d}"
            seqs += [(subj, "001", (i % 7) + 1, 5), (subj, "002", None, 3)]
        seqs.append(("S005", "003", 2, 4))  # contempt
        for subj, seq, ck, n in seqs:
            for f in range(1, n + 1):
                write_img(root / "cohn-kanade-images" / subj / seq / f"{subj}_{seq}_{f:08d}.png", (40, 32), mode="L")
            if ck is not None:
                emo = root / "Emotion" / subj / seq / f"{subj}_{seq}_{n:08d}_emotion.txt"
                emo.parent.mkdir(parents=True, exist_ok=True)
                emo.write_text(f"   {ck:.7e}\n")
                facs = root / "FACS" / subj / seq / f"{subj}_{seq}_{n:08d}_facs.txt"
                facs.parent.mkdir(parents=True, exist_ok=True)
                facs.write_text("   1.0000000e+00   2.0000000e+00\n   1.2000000e+01   0.0000000e+00\n")
        return root

    return make


def test_ckplus_protocol_folds_and_aus(tmp_path, make_ckplus):
    make_ckplus(tmp_path)
    m = read_dataset("ckplus", tmp_path, fold=1, n_folds=4, val_fraction=0)
    assert m.num_classes == 8
    assert m.skipped["unlabelled sequence"] == 4
    seq = [s for s in m.samples if s.meta["sequence"] == "S005/001"]
    assert [s.meta["role"] for s in seq] == ["onset", "peak", "peak", "peak"]
    assert seq[0].label == INDEX["neutral"] and seq[0].aus == {1: 0.0, 12: 0.0}
    assert all(s.label == INDEX["anger"] for s in seq[1:])  # CK+ 1 = anger
    assert seq[-1].aus == {1: 2.0, 12: 1.0}  # unscored intensity 0 -> present (1.0)
    assert seq[-1].path.endswith("S005_001_00000005.png")
    assert any(s.label == INDEX["contempt"] for s in m.samples)
    test_ids = {s.identity for s in m.split("test")}
    train_ids = {s.identity for s in m.split("train")}
    assert test_ids == {"S006"} and not (test_ids & train_ids)
    # 6-class mode drops neutral and contempt, counted
    m6 = read_dataset("ckplus", tmp_path, classes=6, fold=0, n_folds=4)
    assert m6.num_classes == 6 and all(s.label < 6 for s in m6.samples)
    # 5 onset frames are neutral; S006/001 and S005/003 are contempt (3 peak frames each)
    assert m6.skipped["neutral (6-class mode)"] == 5 and m6.skipped["contempt (6-class mode)"] == 6


def test_ckplus_missing_and_bad_fold(tmp_path, make_ckplus):
    with pytest.raises(DatasetError, match="cohn-kanade-images"):
        read_dataset("ckplus", tmp_path)
    make_ckplus(tmp_path)
    with pytest.raises(ConfigError, match="fold 10"):
        read_dataset("ckplus", tmp_path, fold=10)


# --------------------------------------------------------------------------- FER2013


def make_fer2013(root, header="emotion, pixels, Usage"):
    rng = np.random.default_rng(0)
    rows = [header]
    usages = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    for i, usage in enumerate(usages):
        pix = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
        rows.append(f"{i % 7},{pix},{usage}")
    rows.append(f"3,1 2 3,Training")  # too few pixels
    rows.append(f"9,{' '.join(['0'] * 2304)},Training")  # unknown emotion
    (root / "fer2013.csv").write_text("\n".join(rows) + "\n")
    return root


def test_fer2013_writes_pngs_once_and_maps_usage(tmp_path):
    make_fer2013(tmp_path)
    m = read_dataset("fer2013", tmp_path)
    assert m.counts() == {"train": 6, "val": 2, "test": 2}  # PublicTest is val: nothing carved
    assert m.skipped["pixels not 48x48"] == 1 and m.skipped["unknown emotion id"] == 1
    first = m.samples[0]
    assert first.label == INDEX["anger"] and m.samples[3].label == INDEX["happiness"]
    img = load_image(first.path)
    assert img.shape == (48, 48, 3)
    # the decoded pixels are those of the CSV row
    line = (tmp_path / "fer2013.csv").read_text().splitlines()[1]
    expected = np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48)
    assert np.array_equal(img[..., 0], expected)
    mtime = {s.path: __import__("os").stat(s.path).st_mtime_ns for s in m.samples}
    m2 = read_dataset("fer2013", tmp_path)
    assert {s.path: __import__("os").stat(s.path).st_mtime_ns for s in m2.samples} == mtime


def test_fer2013_bad_header(tmp_path):
    with pytest.raises(DatasetError, match="fer2013.csv"):
        read_dataset("fer2013", tmp_path)
    (tmp_path / "fer2013.csv").write_text("label,img\n1,2\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        read_dataset("fer2013", tmp_path)


# --------------------------------------------------------------------------- KDEF


@pytest.fixture
def make_kdef(write_img):
    def make(root, ids=("F01", "F02", "M01", "M02", "M03")):
        for ident in ids:
            for session in "AB":
                folder = root / "KDEF" / f"{session}{ident}"
                for expr in ("AF", "AN", "DI", "HA", "NE", "SA", "SU"):
                    for angle in ("S", "HL"):
                        write_img(folder / f"{session}{ident}{expr}{angle}.JPG", (32, 40))
        (root / "KDEF" / "AF01" / "notes.txt").write_text("x")
        write_img(root / "KDEF" / "AF01" / "AF01XXS.JPG")
        return root

    return make


def test_kdef_frontal_subject_split(tmp_path, make_kdef):
    make_kdef(tmp_path)
    m = read_dataset("kdef", tmp_path, val_fraction=0)
    assert len(m.samples) == 5 * 2 * 7  # straight only, both sessions
    assert all(s.meta["angle"] == "S" for s in m.samples)
    assert m.skipped["unparsable file name"] + m.skipped["unknown expression code"] == 1
    s = next(s for s in m.samples if s.path.endswith("BM02SUS.JPG"))
    assert s.identity == "M02" and s.label == INDEX["surprise"] and s.meta["session"] == "B"
    test_ids = {s.identity for s in m.split("test")}
    assert test_ids and not (test_ids & {s.identity for s in m.split("train")})
    both = read_dataset("kdef", tmp_path, angles="S,HL", val_fraction=0)
    assert len(both.samples) == 2 * len(m.samples)
    with pytest.raises(ConfigError, match="angles"):
        read_dataset("kdef", tmp_path, angles="XX")


def test_kdef_missing(tmp_path):
    with pytest.raises(DatasetError, match="KDEF/AF01"):
        read_dataset("kdef", tmp_path)


# --------------------------------------------------------------------------- RaFD


@pytest.fixture
def make_rafd(write_img):
    def make(root):
        emotions = ["angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
        for ident in (1, 2, 3, 5, 7):
            for emo in emotions:
                for angle in ("090", "045"):
                    write_img(root / "RaFD" / f"Rafd{angle}_{ident:02d}_Caucasian_female_{emo}_frontal.jpg", (40, 32))
        write_img(root / "RaFD" / "Rafd090_01_Caucasian_female_bored_frontal.jpg")
        return root

    return make


def test_rafd_frontal_contempt_and_subjects(tmp_path, make_rafd):
    make_rafd(tmp_path)
    m = read_dataset("rafd", tmp_path, val_fraction=0)
    assert len(m.samples) == 5 * 7 and m.skipped["contempt (7-class mode)"] == 5
    assert m.skipped["unknown emotion"] == 1
    s = next(s for s in m.samples if "Rafd090_03_Caucasian_female_fearful" in s.path)
    assert s.label == INDEX["fear"] and s.identity == "03" and s.meta["angle"] == "090"
    test_ids = {s.identity for s in m.split("test")}
    assert len(test_ids) == 1 and not (test_ids & {s.identity for s in m.split("train")})
    m8 = read_dataset("rafd", tmp_path, classes=8, angles="all", val_fraction=0)
    assert len(m8.samples) == 5 * 8 * 2 and m8.num_classes == 8


def test_rafd_missing(tmp_path):
    with pytest.raises(DatasetError, match="Rafd090_01"):
        read_dataset("rafd", tmp_path)


# --------------------------------------------------------------------------- TFD


def make_tfd(root, n=20):
    rng = np.random.default_rng(0)
    labs = np.array([(i % 7) + 1 for i in range(n)])
    labs[[3, 11]] = -1
    folds = np.zeros((n, 5), dtype=np.int32)
    folds[:, 0] = [1] * 12 + [2] * 3 + [3] * 4 + [0]
    folds[:, 1] = [3] * 5 + [1] * 15
    savemat(root / "TFD_48x48.mat", {
        "images": rng.integers(0, 256, (n, 48, 48)).astype(np.uint8),
        "labs_ex": labs.reshape(-1, 1), "labs_id": np.arange(n).reshape(-1, 1) // 4,
        "folds": folds,
    })
    return root


def test_tfd_folds_and_images(tmp_path):
    make_tfd(tmp_path)
    m = read_dataset("tfd", tmp_path, fold=0)
    assert m.skipped["unlabelled"] == 2
    assert m.counts() == {"train": 10, "val": 3, "test": 4}  # rows 3, 11 unlabelled; row 19 unused
    s = next(s for s in m.samples if s.meta["index"] == 6)
    assert s.label == INDEX["neutral"] and s.identity == "1"  # TFD 7 = neutral
    assert load_image(s.path).shape == (48, 48, 3)
    m1 = read_dataset("tfd", tmp_path, fold=1, val_fraction=0)
    assert m1.counts()["test"] == 4 and m1.counts()["val"] == 0


def test_tfd_missing_variable(tmp_path):
    with pytest.raises(DatasetError, match="TFD_48x48.mat"):
        read_dataset("tfd", tmp_path)
    savemat(tmp_path / "TFD_48x48.mat", {"images": np.zeros((2, 48, 48), np.uint8)})
    with pytest.raises(DatasetError, match="labs_ex"):
        read_dataset("tfd", tmp_path)


# --------------------------------------------------------------------------- DISFA


@pytest.fixture
def make_disfa(write_img):
    def make(root, n_frames=6):
        for subj in ("SN001", "SN002"):
            lab = root / "ActionUnit_Labels" / subj
            lab.mkdir(parents=True)
            for au in (1, 12):
                (lab / f"{subj}_au{au}.txt").write_text(
                    "".join(f"{f},{(f * au) % 6}\n" for f in range(1, n_frames + 1)))
            for f in range(1, n_frames + 1):
                if not (subj == "SN002" and f == 4):
                    write_img(root / "Frames_LeftCamera" / subj / f"{f:05d}.png", (32, 32))
        return root

    return make


def test_disfa_joins_aus_to_frames(tmp_path, make_disfa):
    make_disfa(tmp_path)
    m = read_dataset("disfa", tmp_path)
    assert len(m.samples) == 11 and m.skipped["missing frame"] == 1
    assert all(s.split == "test" and s.meta["no_expression_label"] for s in m.samples)
    s = next(s for s in m.samples if s.identity == "SN001" and s.meta["frame"] == 3)
    assert s.aus == {1: 3.0, 12: 0.0} and s.path.endswith("00003.png")
    sub = read_dataset("disfa", tmp_path, subjects="SN001", every=2)
    assert [s.meta["frame"] for s in sub.samples] == [1, 3, 5]


def test_disfa_missing_frames_folder(tmp_path):
    (tmp_path / "ActionUnit_Labels" / "SN001").mkdir(parents=True)
    with pytest.raises(DatasetError, match="Frames_LeftCamera"):
        read_dataset("disfa", tmp_path)


def test_fer2013_pixel_value_300_is_a_counted_skip_on_every_read(tmp_path):
    """A value outside 0..255 was an OverflowError; it is a counted skip, and the
    second read (PNG folder complete, pixels not decoded again) skips the same row."""
    from fer_models.data.readers.fer2013 import BAD_PIXELS

    make_fer2013(tmp_path)
    csv = tmp_path / "fer2013.csv"
    bad = " ".join(["300"] + ["0"] * 2303)
    word = " ".join(["x"] * 2304)
    csv.write_text(csv.read_text() + f"3,{bad},Training\n3,{word},Training\n")
    for _ in range(2):
        m = read_dataset("fer2013", tmp_path)
        assert m.skipped[BAD_PIXELS] == 2 and m.counts() == {"train": 6, "val": 2, "test": 2}
