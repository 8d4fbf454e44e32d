"""The training map's AU source: codebook, labels, codebook+labels, detector:NAME."""

from __future__ import annotations

import numpy as np
import pytest

from fer_models.config import DataConfig, TrainConfig
from fer_models.data import au, synth
from fer_models.data.cache import cache_key, key_inputs, load_split, prepare
from fer_models.data.cache.reader import open_cache
from fer_models.errors import ConfigError, MissingWeightsError
from fer_models.labels import INDEX

S = 64


@pytest.fixture(scope="module")
def faces():
    return synth.generate(4, S, seed=5, n_identities=2, labels=np.full(4, INDEX["happiness"]))


def _at(m: np.ndarray, pt: np.ndarray) -> float:
    x, y = np.clip(np.round(pt * m.shape[0] / S).astype(int), 0, m.shape[0] - 1)
    return float(m[y, x])


def _peak(lm: np.ndarray, au_number: int) -> np.ndarray:
    """Where a map of ``au_number`` alone peaks (image pixels)."""
    w = np.zeros((1, len(au.AU_IDS)), np.float32)
    w[0, au.AU_INDEX[au_number]] = 1
    m = au.render_au_maps(lm[None], w, (S, S), S)[0]
    y, x = np.unravel_index(np.argmax(m), m.shape)
    return np.array([x, y], float)


def test_spellings_of_the_sources():
    assert au.parse_au_source("codebook∩labels") == au.parse_au_source("labels+codebook") == "codebook+labels"
    assert au.parse_au_source(" Labels ") == "labels" and au.parse_au_source("detector:X") == "detector:x"
    with pytest.raises(ConfigError, match="unknown AU source 'both'"):
        DataConfig(au_source="both")


def test_labels_map_has_blobs_exactly_at_the_labelled_aus(faces):
    """A happy face labelled with AU1 (inner brows) and AU17 (chin): the labels map lights those
    two places and none of the codebook's (AU6 cheeks, AU12 lip corners), which the codebook map lights."""
    lm = faces.landmarks[:1].astype(np.float64)
    aus = np.zeros((1, len(au.AU_IDS)), np.float32)
    aus[0, au.AU_INDEX[1]], aus[0, au.AU_INDEX[17]] = 1.0, 1.0
    labels = faces.labels[:1]
    m, valid, origin = au.source_au_maps(lm, labels, aus, "paper002", "labels", (S, S), 32)
    cb, _, _ = au.source_au_maps(lm, labels, aus, "paper002", "codebook", (S, S), 32)
    assert valid[0] and origin[0] == au.SRC_MAP
    for a in (1, 17):
        assert _at(m[0], _peak(lm[0], a)) > 0.5, a
        assert _at(cb[0], _peak(lm[0], a)) < 0.2, a
    for a in (6, 12):
        assert _at(m[0], _peak(lm[0], a)) < 0.1, a
        assert _at(cb[0], _peak(lm[0], a)) > 0.5, a


def test_intensity_weights_the_blobs(faces):
    lm = faces.landmarks[:1].astype(np.float64)
    aus = np.zeros((1, len(au.AU_IDS)), np.float32)
    aus[0, au.AU_INDEX[1]], aus[0, au.AU_INDEX[17]] = 1.0, 0.25
    m, _, _ = au.source_au_maps(lm, faces.labels[:1], aus, "paper002", "labels", (S, S), 32)
    assert _at(m[0], _peak(lm[0], 17)) < 0.5 * _at(m[0], _peak(lm[0], 1))


def test_codebook_and_labels_drops_an_inactive_codebook_au(faces):
    """Happiness' codebook AUs are 6, 12 (and 25); labelled active: 12 and 1 (not in the codebook).
    codebook+labels keeps 12 only: AU6 (inactive) and AU1 (not in the codebook) are dropped."""
    cb_aus = set(au.get_codebook("paper002").aus(INDEX["happiness"]))
    assert {6, 12} <= cb_aus and 1 not in cb_aus
    lm = faces.landmarks[:1].astype(np.float64)
    aus = np.zeros((1, len(au.AU_IDS)), np.float32)
    aus[0, au.AU_INDEX[12]], aus[0, au.AU_INDEX[1]] = 1.0, 1.0
    w, origin = au.source_weights(faces.labels[:1], aus, "paper002", "codebook+labels")
    assert w[0, au.AU_INDEX[12]] == 1 and w[0, au.AU_INDEX[6]] == 0 and w[0, au.AU_INDEX[1]] == 0
    assert origin[0] == au.SRC_MAP
    m, _, _ = au.source_au_maps(lm, faces.labels[:1], aus, "paper002", "codebook+labels", (S, S), 32)
    only12 = np.zeros_like(aus)
    only12[0, au.AU_INDEX[12]] = 1.0
    np.testing.assert_allclose(m, au.render_au_maps(lm, only12, (S, S), 32), atol=1e-6)
    cb, _ = au.expression_au_maps(lm, faces.labels[:1], "paper002", (S, S), 32)
    assert np.abs(m - cb).max() > 0.3  # the codebook map also draws AU6 (and AU25)


def test_an_image_without_labels_falls_back_to_the_codebook_and_is_counted(faces):
    lm = faces.landmarks[:3].astype(np.float64)
    aus = np.zeros((3, len(au.AU_IDS)), np.float32)
    aus[0, au.AU_INDEX[1]] = 1.0
    aus[1] = np.nan  # no AU labels
    # row 2: labelled, nothing active: no map
    for source in ("labels", "codebook+labels"):
        m, valid, origin = au.source_au_maps(lm, faces.labels[:3], aus, "paper002", source, (S, S), 32)
        cb, _ = au.expression_au_maps(lm[1:2], faces.labels[1:2], "paper002", (S, S), 32)
        assert origin.tolist() == [au.SRC_MAP if source == "labels" else au.SRC_EMPTY, au.SRC_FALLBACK, au.SRC_EMPTY]
        np.testing.assert_allclose(m[1], cb[0], atol=1e-6)
        assert valid.tolist() == [source == "labels", True, False]


@pytest.fixture(scope="module")
def labelled_manifest(tmp_path_factory):
    """A synthetic-rafdb tree (ground-truth AU intensities), a quarter of its rows without them."""
    from fer_models.data.readers import read_dataset
    from fer_models.data.synth.io import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("d") / "r", "rafdb", n_train=32, n_test=12, image_size=48, seed=2,
                         n_identities=4, progress=False)
    m = read_dataset("synthetic-rafdb", root, val_fraction=0.2, seed=0)
    for s in m.samples[::4]:
        s.aus = None
    return m


class _Truth:
    name, version, uses_gpu = "truth", "1", False

    def __init__(self, device="cpu"):
        pass

    def detect(self, images, samples):
        return [s.landmarks for s in samples]


def test_cache_key_changes_with_the_source_and_counts_the_fallbacks(labelled_manifest, tmp_path):
    m = labelled_manifest
    keys = {s: cache_key(m, _Truth, au.get_codebook("paper002"), 16, 48, s)
            for s in ("codebook", "labels", "codebook+labels")}
    assert len(set(keys.values())) == 3
    assert "au_source" not in key_inputs(m, _Truth, au.get_codebook("paper002"), 16, 48)  # old keys kept
    info = prepare(m, _Truth, "paper002", 16, 48, tmp_path, progress=False, au_source="labels")
    assert info.au_source == "labels" and info.dir.name.endswith(keys["labels"]) or keys["labels"] in str(info.dir)
    n_unlabelled = {split: sum(s.aus is None for s in m.samples if s.split == split) for split in ("train", "test")}
    for split in ("train", "test"):
        assert open_cache(info.dir).au_source_counts(split).get("fallback", 0) == n_unlabelled[split]
    rates = open_cache(info.dir).au_source_rates()
    assert rates["data_au_fallback_rate"] == pytest.approx(n_unlabelled["train"] / sum(
        s.split == "train" for s in m.samples))
    d = load_split(info.dir, "train")
    assert {"src_au_map", "src_valid", "src_origin"} <= set(d)
    fb = d["src_origin"] == au.SRC_FALLBACK
    np.testing.assert_allclose(d["src_au_map"][fb], d["au_map"][fb], atol=1e-6)  # the stated rule
    assert not np.allclose(d["src_au_map"][~fb & d["src_valid"]], d["au_map"][~fb & d["src_valid"]])


def test_train_split_aligns_to_the_source_map_eval_splits_keep_the_codebook(labelled_manifest, tmp_path):
    import torch

    from fer_models.data.dataset import FaceDataset

    info = prepare(labelled_manifest, _Truth, "paper002", 16, 48, tmp_path, progress=False, au_source="labels")
    d = load_split(info.dir, "train")
    src = FaceDataset(info.dir, "train", 48, False, source_maps=True)
    ref = FaceDataset(info.dir, "train", 48, False)
    idx = list(range(len(src)))
    assert torch.equal(src[idx]["au_map"][:, 0], torch.from_numpy(d["src_au_map"]))
    assert torch.equal(ref[idx]["au_map"][:, 0], torch.from_numpy(d["au_map"]))


def test_a_detector_without_its_weights_is_one_sentence_naming_the_file(labelled_manifest, tmp_path):
    with pytest.raises(MissingWeightsError, match="OpenGprahAU-ResNet50_first_stage.pth"):
        cache_key(labelled_manifest, _Truth, au.get_codebook("paper002"), 16, 48, "detector:opengraphau-resnet50")
    with pytest.raises(Exception, match="unknown AU detector 'nope'"):
        cache_key(labelled_manifest, _Truth, au.get_codebook("paper002"), 16, 48, "detector:nope")


def test_hash_and_tag_of_a_trial_carry_the_source():
    from orchestrator.config import Trial

    t = Trial(TrainConfig(method="cam", au=True, data=DataConfig(au_source="labels")), "grid")
    assert t.tags()["au_source"] == "labels" and "-labels-" in t.name
    plain = Trial(TrainConfig(method="cam", au=True), "grid")
    assert plain.hash != t.hash and "codebook" not in plain.name
