"""Data protocols of papers 001, 003, 004 and the landmark fallback on aligned crops.

Tiny trees in each dataset's official layout: faces cropped from whole frames, reader options
(typed, validated, in the manifest and the cache key), subject-wise validation and folds,
paper 003's RaFD splits, identity targets, the sequence column and the ``all`` split.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_models.data.synth import io as synth_io
from fer_models.data.cache import key_inputs, load_split, prepare
from fer_models.data.cache.stages import FACE_BOX_SCALE, face_box
from fer_models.data.manifest import ALL, Manifest, Sample, carve_validation
from fer_models.data.readers import check_options, fold_options, read_dataset
from fer_models.data.synth.frames import write_ckplus
from fer_models.errors import ConfigError
from fer_models.labels import INDEX


class TruthBackend:
    """The synthetic ground truth of a tree written by ``fer_models.data.synth.frames``, looked up by path:
    what a real detector returns on the real dataset, without one."""

    name, version, uses_gpu = "truth", "1", False

    def __init__(self, root: Path):
        root = Path(root).resolve()
        self.truth = {str(root / rel): t.landmarks for rel, t in synth_io.load_truth(root).items()}

    def detect(self, images, samples):
        return [self.truth.get(str(Path(s.path).resolve())) for s in samples]


@pytest.fixture(scope="module")
def ck_tree(tmp_path_factory):
    """CK+'s layout, 640x490 grey frames, a 64 px face off-centre: 6 subjects x 2 sequences."""
    return write_ckplus(tmp_path_factory.mktemp("ck") / "CK+", n_identities=6, n_sequences=2, image_size=64,
                        frame="640x490", seed=3)


# --------------------------------------------------------------------------- faces are cropped


def test_an_off_centre_face_in_a_640x490_frame_comes_out_cropped(ck_tree, tmp_path):
    m = read_dataset("ckplus", ck_tree, val_fraction=0)  # the real reader: whole frames
    assert m.frames == "whole" and m.samples
    raw = np.stack([TruthBackend(ck_tree).truth[str(Path(s.path).resolve())] for s in m.samples])
    raw_span = (raw.max(1) - raw.min(1)).max(1)
    assert (raw_span < 0.1 * 640).all()  # the face is a small part of the frame
    centre = (raw.max(1) + raw.min(1)) / 2
    assert (np.abs(centre[:, 0] - 320) > 60).any()  # and off-centre
    info = prepare(m, TruthBackend(ck_tree), "paper002", 16, 48, tmp_path / "cache", progress=False)
    d = load_split(info.dir, ALL)
    lm = d["landmarks"]
    assert np.isfinite(lm).all() and lm.min() >= -0.5 and lm.max() <= 47.5
    span = (lm.max(1) - lm.min(1)).max(1)
    np.testing.assert_allclose(span, 48 / FACE_BOX_SCALE, atol=1.0)  # landmarks span most of the image
    mid = (lm.max(1) + lm.min(1)) / 2
    np.testing.assert_allclose(mid, 23.5, atol=1.0)  # centred
    # the face, not the flat backdrop, fills the stored image: the whole frame resized would
    # show a near-uniform grey with a 5 px face somewhere
    img = d["image"].astype(np.float32)
    assert img[:, 16:32, 16:32].std(axis=(1, 2, 3)).min() > 5
    # the AU maps follow the crop: a codebook map lies on the face, i.e. inside the stored image
    valid = d["au_valid"]
    assert valid.any() and (d["au_map"][valid].reshape(valid.sum(), -1).max(1) > 0.5).all()
    assert info.meta["inputs"]["face_crop"] == {"box": "landmarks-square", "scale": FACE_BOX_SCALE}


def test_face_box_is_square_centred_and_padded_at_the_border():
    lm = np.array([[0.0, 10.0], [20.0, 50.0]] * 34, np.float32)  # extent 20 x 40, touching x = 0
    x, y, w, h = face_box(lm)
    assert w == h == pytest.approx(40 * FACE_BOX_SCALE)
    assert (x + w / 2, y + h / 2) == pytest.approx((10.0, 30.0))
    assert x < 0  # reaches outside the frame: the crop pads instead of squashing


def test_pre_cropped_sets_are_left_whole_and_keep_their_cache_key(tmp_path):
    m = read_dataset("synthetic-rafdb", tmp_path / "sr", n_train=14, n_test=7, image_size=32, n_identities=3,
                     progress=False)
    assert m.frames == "face"
    inputs = key_inputs(m, BoxOnlyBackend(), "paper002", 16, 32)
    assert "face_crop" not in inputs and "options" in inputs  # generation options passed: in the key
    plain = read_dataset("synthetic-rafdb", tmp_path / "sr", progress=False)  # no option given
    assert "options" not in key_inputs(plain, BoxOnlyBackend(), "paper002", 16, 32)


# --------------------------------------------------------------------------- landmark fallback


class BoxOnlyBackend:
    """A detector that finds no face in a tight aligned crop unless given a face box
    (as a face detector misses RAF-DB's 100 px crops), and none on a blank image."""

    name, version, uses_gpu = "box-only", "1", False

    def detect(self, images, samples):
        out = []
        for img, s in zip(images, samples):
            if s.box is None or img.std() < 1.0:
                out.append(None)
            else:
                x, y, w, h = s.box
                out.append(np.stack([np.linspace(x + 0.2 * w, x + 0.8 * w, 68),
                                     np.linspace(y + 0.2 * h, y + 0.8 * h, 68)], 1).astype(np.float32))
        return out


def test_aligned_crop_fallback_and_per_class_failure_rate(tmp_path, write_img):
    samples = []
    for i in range(6):  # 3 anger faces, 3 happiness rows of which one blank image
        label = INDEX["anger"] if i < 3 else INDEX["happiness"]
        p = write_img(tmp_path / f"f{i}.png", (40, 40), value=0 if i == 5 else 128)
        if i == 5:
            from PIL import Image

            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(p)
        samples.append(Sample(path=str(p), split="train", label=label))
    m = Manifest("aligned", tmp_path, samples)
    info = prepare(m, BoxOnlyBackend(), "paper002", 8, 32, tmp_path / "cache", progress=False)
    assert info.meta["landmark_fallback_rows"] == 5  # the whole image became the face box
    assert info.failures == {"no-face": 1}
    assert info.landmark_failure_rates() == {"anger": 0.0, "happiness": pytest.approx(1 / 3)}
    assert "landmark failure rate per class: anger 0.0%, happiness 33.3%" in info.summary()
    d = load_split(info.dir, "train")
    assert np.isfinite(d["landmarks"][:5]).all() and np.isnan(d["landmarks"][5]).all()


def test_whole_frames_get_no_whole_image_fallback(tmp_path, write_img):
    p = write_img(tmp_path / "frame.png", (64, 48))
    m = Manifest("frames", tmp_path, [Sample(path=str(p), split="train", label=0)], frames="whole")
    info = prepare(m, BoxOnlyBackend(), "paper002", 8, 32, tmp_path / "cache", progress=False)
    assert info.failures == {"no-face": 1} and info.meta["landmark_fallback_rows"] == 0


# --------------------------------------------------------------------------- reader options


def test_options_change_the_manifest_and_the_cache_key(ck_tree):
    base = read_dataset("ckplus", ck_tree, val_fraction=0)
    six = read_dataset("ckplus", ck_tree, classes=6, val_fraction=0)
    assert six.options == {"classes": 6} and base.options == {}
    assert len(six.samples) < len(base.samples) and six.num_classes == 6
    one = read_dataset("ckplus", ck_tree, peak_frames=1, val_fraction=0)
    assert len(one.samples) == len(base.samples) // 2  # onset + 1 peak instead of onset + 3
    keys = {key_inputs(m, BoxOnlyBackend(), "paper002", 8, 32)["manifest"] for m in (base, six, one)}
    assert len(keys) == 3
    assert key_inputs(six, BoxOnlyBackend(), "paper002", 8, 32)["options"] == {"classes": 6}


@pytest.mark.parametrize("options, match", [
    ({"clases": 6}, r"unknown reader option\(s\) clases; valid options: classes \(6, 7 or 8; default 8\)"),
    ({"classes": 5}, r"option classes=5 is not valid; valid options: classes \(6, 7 or 8"),
    ({"fold": "three"}, r"option fold='three' is not valid; valid options: .*n_folds \(default 10\)"),
    ({"fold": 10}, r"fold 10 is outside 0..9"),
    ({"peak_frames": 0}, r"peak_frames=0 must be at least 1; valid options"),
])
def test_a_bad_option_is_one_sentence_listing_the_valid_ones(options, match):
    with pytest.raises(ConfigError, match=match) as e:
        check_options("ckplus", options)
    assert "\n" not in str(e.value)


def test_option_values_are_cast_to_the_defaults_types():
    assert check_options("ckplus", {"classes": "6", "neutral_first": "false"})["classes"] == 6
    assert check_options("ckplus", {"neutral_first": "no"})["neutral_first"] is False
    assert check_options("rafd", {"angles": ["045", "090"]})["angles"] == "045,090"
    with pytest.raises(ConfigError, match="fer2013: option classes='joy'"):
        check_options("fer2013", {"classes": "joy"})
    with pytest.raises(ConfigError, match="takes no option|valid options"):
        check_options("synthetic-rafdb", {"fold": 1})


def test_fer2013_class_subset_and_tfd_resolution(tmp_path):
    rows = ["emotion,pixels,Usage"] + [f"{k % 7},{' '.join(['7'] * 2304)},Training" for k in range(14)]
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    m = read_dataset("fer2013", tmp_path, classes="happiness,sadness,neutral", val_fraction=0)
    assert sorted({s.label for s in m.samples}) == [3, 4, 6] and len(m.samples) == 6 and not m.skipped
    assert m.options == {"classes": "happiness,sadness,neutral"}
    from fer_models.errors import DatasetError

    with pytest.raises(DatasetError, match="TFD_96x96.mat"):
        read_dataset("tfd", tmp_path, resolution=96)


# --------------------------------------------------------------------------- folds and validation


def test_folds_partition_subjects(ck_tree):
    folds = fold_options("ckplus", {}, 3)
    assert folds == [{"fold": k, "n_folds": 3} for k in range(3)]
    subjects = {s.identity for s in read_dataset("ckplus", ck_tree, val_fraction=0).samples}
    seen = []
    for opts in folds:
        m = read_dataset("ckplus", ck_tree, val_fraction=0.2, **opts)
        test = {s.identity for s in m.split("test")}
        assert test and not test & {s.identity for s in m.samples if s.split != "test"}
        seen.append(test)
    assert set().union(*seen) == subjects and sum(map(len, seen)) == len(subjects)  # a partition
    assert len(fold_options("ckplus", {}, "all")) == 10 and len(fold_options("tfd", {}, "all")) == 5
    with pytest.raises(ConfigError, match="tfd has 5 official folds"):
        fold_options("tfd", {}, 10)
    with pytest.raises(ConfigError, match="rafdb has no folds"):
        fold_options("rafdb", {}, "all")
    with pytest.raises(ConfigError, match="rafd has no folds"):
        fold_options("rafd", {"split": "per-class"}, "all")


def test_ckplus_peak_frames_of_a_sequence_never_straddle_train_and_val(ck_tree):
    for seed in range(4):
        m = read_dataset("ckplus", ck_tree, n_folds=3, fold=seed % 3, val_fraction=0.3, seed=seed)
        assert m.split("val") and m.split("train")
        by_seq: dict[str, set] = {}
        for s in m.samples:
            by_seq.setdefault(s.meta["sequence"], set()).add(s.split)
        assert all(len(v) == 1 for v in by_seq.values())
        val_ids = {s.identity for s in m.split("val")}
        assert not val_ids & {s.identity for s in m.split("train")}  # whole subjects


def test_carve_validation_by_label_subject_and_identity():
    def rows():
        return [Sample(path=f"{i}", split="train", label=i % 2, identity=f"s{i % 5}") for i in range(40)]

    by_subject = carve_validation(rows(), 0.2, 0, by="subject")
    val = {s.identity for s in by_subject if s.split == "val"}
    assert val and not val & {s.identity for s in by_subject if s.split == "train"}
    by_identity = carve_validation(rows(), 0.25, 0, by="identity")
    assert {s.identity for s in by_identity if s.split == "train"} == {f"s{k}" for k in range(5)}
    assert sum(s.split == "val" for s in by_identity) == 10  # 2 of the 8 rows of each subject
    by_label = carve_validation(rows(), 0.25, 0)
    assert sum(s.split == "val" and s.label == 0 for s in by_label) == 5


# --------------------------------------------------------------------------- RaFD: paper 003's splits


def test_rafd_paper003_random_splits(tmp_path, write_img):
    emotions = ["angry", "disgusted", "happy"]
    for ident in (1, 2, 3, 4):
        for emo in emotions:
            for angle in ("045", "090", "135", "180"):
                for gaze in ("frontal", "left", "right"):
                    write_img(tmp_path / f"Rafd{angle}_{ident:02d}_Caucasian_male_{emo}_{gaze}.jpg", (16, 24))
    common = dict(angles="045,090,135", val_fraction=0)
    per_id = read_dataset("rafd", tmp_path, split="per-identity", test_per_group=4, **common)
    assert len(per_id.samples) == 4 * 3 * 3 * 3 and per_id.frames == "whole"
    for ident in ("01", "02", "03", "04"):
        for angle in ("045", "090", "135"):
            group = [s for s in per_id.samples if s.identity == ident and s.meta["angle"] == angle]
            assert sum(s.split == "test" for s in group) == 4 and len(group) == 9
    per_class = read_dataset("rafd", tmp_path, split="per-class", test_per_group=5, **common)
    assert sum(s.split == "test" for s in per_class.samples) == 3 * 3 * 5
    again = read_dataset("rafd", tmp_path, split="per-class", test_per_group=5, **common)
    assert [s.split for s in again.samples] == [s.split for s in per_class.samples]  # seeded
    val = read_dataset("rafd", tmp_path, split="per-identity", test_per_group=4, angles="045,090,135",
                       val_fraction=0.2)
    assert {s.identity for s in val.split("train")} == {"01", "02", "03", "04"}  # every subject trains
    assert read_dataset("rafd", tmp_path, angles="45", val_fraction=0).options == {"angles": "45"}


# --------------------------------------------------------------------------- the cache's extra columns


def test_sequence_column_all_split_and_caches_without_it(ck_tree, tmp_path):
    m = read_dataset("ckplus", ck_tree, n_folds=3, val_fraction=0.2)
    info = prepare(m, TruthBackend(ck_tree), "paper002", 8, 32, tmp_path / "cache", progress=False)
    names = info.meta["sequences"]
    assert names == sorted({s.meta["sequence"] for s in m.samples})
    every = load_split(info.dir, ALL)
    assert len(every["row"]) == len(m.samples) == sum(info.counts.values())
    for row, seq in zip(every["row"], every["sequence"]):
        assert names[seq] == m.samples[int(row)].meta["sequence"]
    for shard in Path(info.dir).glob("*-0*/sequence.npy"):  # a cache from before the column existed
        shard.unlink()
    assert "sequence" not in load_split(info.dir, "train") and len(load_split(info.dir, "train")["row"])


def test_synthetic_disfa_stands_in_for_paper_004(tmp_path):
    m = read_dataset("synthetic-disfa", tmp_path / "d", n_identities=3, n_frames=6, image_size=48,
                     frame="160x120", progress=False)
    assert m.frames == "whole" and len(m.split(ALL)) == 18 and {s.split for s in m.samples} == {"test"}
    assert {s.identity for s in m.samples} == {"SN001", "SN002", "SN003"}
    assert all(not s.meta["no_expression_label"] and s.aus is not None for s in m.samples)
    every2 = read_dataset("synthetic-disfa", tmp_path / "d", every=2, progress=False)
    assert len(every2.samples) == 9


def test_synthetic_rafd_stands_in_for_paper_003(tmp_path):
    """RaFD's file names, subjects, angles and gazes, read by the real reader with paper 003's
    options; both random splits keep about half of every group in test, every subject in both."""
    opts = dict(n_identities=4, image_size=32, frame="64x96", classes=8, angles="045,090,135", progress=False)
    m = read_dataset("synthetic-rafd", tmp_path / "r", val_fraction=0, split="per-class", **opts)
    assert m.frames == "whole" and not m.skipped and m.num_classes == 8
    assert len(m.samples) == 4 * 8 * 3 * 3  # subjects x expressions x gazes x the three angles
    assert {s.meta["angle"] for s in m.samples} == {"045", "090", "135"}
    assert {s.meta["gaze"] for s in m.samples} == {"frontal", "left", "right"}
    names = {Path(s.path).name for s in m.samples}
    assert "Rafd090_01_Caucasian_female_contemptuous_left.jpg" in names
    assert {s.label for s in m.samples if "contemptuous" in s.path} == {INDEX["contempt"]}
    test = [s for s in m.samples if s.split == "test"]
    assert len(test) == 12 * 3 * 8  # 12 per (angle, expression)
    ids = read_dataset("synthetic-rafd", tmp_path / "r", val_fraction=0, split="per-identity", **opts)
    by = {sp: {s.identity for s in ids.samples if s.split == sp} for sp in ("train", "test")}
    assert by["train"] == by["test"] == {"01", "02", "03", "04"}
    assert sum(s.split == "test" for s in ids.samples) == 12 * 3 * 4  # 12 per (angle, subject)


def test_synthetic_kdef_stands_in_for_paper_004(tmp_path):
    m = read_dataset("synthetic-kdef", tmp_path / "k", n_identities=4, image_size=32, frame="64x88",
                     n_folds=2, val_fraction=0, progress=False)
    assert m.frames == "whole" and not m.skipped and len(m.samples) == 4 * 2 * 7  # straight camera only
    assert {s.identity for s in m.samples} == {"F01", "M01", "F02", "M02"}
    assert {s.meta["session"] for s in m.samples} == {"A", "B"}
    assert "AF01ANS.JPG" in {Path(s.path).name for s in m.samples}
    test_ids = {s.identity for s in m.samples if s.split == "test"}
    assert len(test_ids) == 2 and not test_ids & {s.identity for s in m.samples if s.split == "train"}
    every = read_dataset("synthetic-kdef", tmp_path / "k", angles="all", progress=False)
    assert len(every.samples) == 4 * 2 * 7 * 5 and {s.meta["angle"] for s in every.samples} == {
        "FL", "HL", "S", "HR", "FR"}


# --------------------------------------------------------------------------- identity targets


def test_identity_target_trains_on_synthetic_data(tmp_path):
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.data.targets import with_target
    from fer_models.train import train

    data = DataConfig(dataset="synthetic-rafdb", image_size=32, map_size=8,
                      options={"n_train": 64, "n_test": 24, "n_identities": 4, "image_size": 32})
    cfg = TrainConfig(method="tiny-vgg", au=False, target="identity", epochs=1, batch_size=16, optimizer="adam",
                      lr=1e-3, device="cpu", data=data)
    res = train(cfg, tmp_path / "run", progress=False)
    assert res.num_classes == 4 and res.test.confusion.shape == (4, 4)  # 4 identities, not 7 expressions
    assert res.test.confusion.sum() == 24 and math.isfinite(res.test.metrics["cl"])
    plain = build_loaders(data, 16, 0, progress=False)
    loaders = with_target(plain, "identity")
    batch, expr = next(iter(loaders.test)), next(iter(plain.test))
    assert torch.equal(batch["label"], expr["identity"]) and not torch.equal(batch["label"], expr["label"])
    assert not batch["au_valid"].any() and expr["au_valid"].any()
    assert with_target(plain, "expression") is plain


def test_identity_target_refuses_the_au_loss_and_subject_wise_splits(ck_tree, tmp_path):
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.data.targets import identity_classes

    with pytest.raises(ConfigError, match="AU loss does not apply to identity targets"):
        TrainConfig(target="identity", au=True)
    m = read_dataset("ckplus", ck_tree, n_folds=3)
    info = prepare(m, TruthBackend(ck_tree), "paper002", 8, 32, tmp_path / "cache", progress=False)
    with pytest.raises(ConfigError, match="not in its train split, so an identity target cannot be learnt"):
        identity_classes(info.dir)
    assert build_loaders(DataConfig(), 8, 0, cache_dir=info.dir).num_classes == 8
