"""AU codebook and AU maps (paper 002, Sec. 3.2)."""

from __future__ import annotations

import numpy as np
import pytest

from fer_models.data import au, synth
from fer_models.errors import ConfigError, UnknownNameError
from fer_models.labels import INDEX, NEUTRAL
from fer_models.registry import CODEBOOKS

S = 64


@pytest.fixture(scope="module")
def faces():
    return synth.generate(7, S, seed=11, n_identities=3, labels=np.arange(7))


def one_hot(au_number: int, b: int = 1) -> np.ndarray:
    w = np.zeros((b, len(au.AU_IDS)), np.float32)
    w[:, au.AU_INDEX[au_number]] = 1
    return w


def peak_xy(m: np.ndarray, image_size: int = S) -> np.ndarray:
    """Image-pixel coordinates of the map's maximum."""
    y, x = np.unravel_index(np.argmax(m), m.shape)
    scale = image_size / m.shape[0]
    return np.array([(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5])


def test_codebook_contents_and_released_variant():
    cb = CODEBOOKS.get("paper002")
    assert cb.aus(INDEX["happiness"]) == (6, 12, 25)
    assert cb.aus(INDEX["anger"]) == (4, 5, 7, 10, 17, 23, 24, 25, 26)
    assert cb.aus(INDEX["disgust"]) == (9, 10, 16, 17, 25, 26)
    assert cb.aus(INDEX["fear"]) == (1, 2, 4, 5, 20, 25, 26, 27)
    assert cb.aus(INDEX["sadness"]) == (1, 4, 6, 15, 17)
    assert cb.aus(INDEX["surprise"]) == (1, 2, 5, 26, 27)
    assert cb.aus(NEUTRAL) == ()
    rel = CODEBOOKS.get("paper002-released")
    assert 10 not in rel.aus(INDEX["disgust"]) and 5 in rel.aus(INDEX["disgust"])
    for label in range(7):  # the variant differs in disgust only
        if label != INDEX["disgust"]:
            assert rel.aus(label) == cb.aus(label)
    assert au.AU_IDS == tuple(sorted(au.AU_IDS)) and 10 in au.AU_IDS and 27 in au.AU_IDS
    with pytest.raises(UnknownNameError, match="paper002"):
        CODEBOOKS.get("nope")


def test_bad_codebook_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("expression,aus\nhappiness,6 12 99\n")
    with pytest.raises(ConfigError, match="AU99"):
        au.load_codebook(p)
    p.write_text("expression,aus\njoy,6\n")
    with pytest.raises(ConfigError, match="joy"):
        au.load_codebook(p)


def test_vectorised_equals_naive(faces):
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (len(faces), len(au.AU_IDS))) * (rng.random((len(faces), len(au.AU_IDS))) < 0.4)
    w[0] = 0  # all-zero weights -> zero map
    fast = au.render_au_maps(faces.landmarks, w, (S, S), 24, chunk_elems=50_000)  # several chunks
    slow = au.render_au_maps_naive(faces.landmarks, w, (S, S), 24)
    assert fast.shape == (len(faces), 24, 24) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert fast[0].max() == 0


@pytest.mark.parametrize(
    "au_number, landmark_sets",
    [
        (12, [[48], [54]]),  # lip corners
        (4, [[21, 22]]),  # between the brows
        (6, [[46, 10], [41, 6]]),  # cheeks: lower eye + jaw (paper 002, Fig. 2)
        (9, [[28, 31], [28, 35]]),  # sides of the nose
        (25, [list(range(60, 68))]),  # the lips
        (1, [[20, 21], [22, 23]]),  # inner brows
        (17, [[57, 8]]),  # chin
    ],
)
def test_peak_lands_on_its_landmark_region(faces, au_number, landmark_sets):
    m = au.render_au_maps(faces.landmarks, one_hot(au_number, len(faces)), (S, S), S)
    iod, _, _ = au.face_frame(faces.landmarks)
    for b in range(len(faces)):
        p = peak_xy(m[b])
        dists = [np.linalg.norm(p - faces.landmarks[b, idx].mean(0)) for idx in landmark_sets]
        assert min(dists) < 0.3 * iod[b], (au_number, b, dists, iod[b])
        # and far from an unrelated region (the other end of the face)
        far = faces.landmarks[b, 8] if au_number in (1, 4) else faces.landmarks[b, 27]
        if au_number not in (9,):
            assert np.linalg.norm(p - far) > 0.5 * iod[b]


def test_footprint_scales_with_face_size(faces):
    lm = faces.landmarks[:1].astype(np.float64)
    centre = lm[0].mean(0)
    small = (lm - centre) * 0.5 + centre
    big_m = au.render_au_maps(lm, one_hot(25), (S, S), S)[0]
    small_m = au.render_au_maps(small, one_hot(25), (S, S), S)[0]
    area_big, area_small = (big_m > 0.5).sum(), (small_m > 0.5).sum()
    assert area_big > 0 and area_small > 0
    assert 2.5 < area_big / area_small < 6  # half the face -> about a quarter of the area


def test_maps_follow_rotation(faces):
    lm = faces.landmarks[1].astype(np.float64)
    c = lm.mean(0)
    th = np.deg2rad(30)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lm_r = (lm - c) @ rot.T + c
    m = au.render_au_maps(np.stack([lm, lm_r]), one_hot(12, 2), (S, S), S)
    # the rotated map's peak sits near one of the rotated corners
    p = peak_xy(m[1])
    assert min(np.linalg.norm(p - lm_r[i]) for i in (48, 54)) < 6


def test_expression_maps_range_and_validity(faces):
    lm = faces.landmarks.copy()
    lm[2, 5] = np.nan  # missing landmarks
    maps, valid = au.expression_au_maps(lm, faces.labels, "paper002", (S, S), 32)
    assert maps.shape == (7, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    for b in range(7):
        expect = faces.labels[b] != NEUTRAL and b != 2
        assert valid[b] == expect
        if expect:
            assert maps[b].max() == pytest.approx(1.0)
        else:
            assert maps[b].max() == 0
    # contempt has no codebook entry: undefined too
    m, v = au.expression_au_maps(faces.landmarks[:1], [INDEX["contempt"]], "paper002", (S, S), 16)
    assert not v[0] and m.max() == 0


def test_codebook_map_covers_its_aus(faces):
    """Happiness lights cheeks and mouth but not brows; surprise lights brows."""
    labels = np.array([INDEX["happiness"], INDEX["surprise"]])
    lm = faces.landmarks[:2]
    maps, _ = au.expression_au_maps(lm, labels, au.get_codebook("paper002"), (S, S), S)

    def at(m, pt):
        x, y = np.clip(np.round(pt).astype(int), 0, S - 1)
        return m[y, x]

    brow = lambda b: lm[b, [21, 22]].mean(0) + [0, -2]  # noqa: E731
    assert at(maps[0], lm[0, 48]) > 0.5 and at(maps[0], brow(0)) < 0.1
    assert at(maps[1], lm[1, [21, 22]].mean(0) + (lm[1, [21, 22]].mean(0) - lm[1, 30]) * 0.15) > 0.3


def test_bad_shapes_are_clear_errors(faces):
    with pytest.raises(ConfigError, match="68, 2"):
        au.render_au_maps(np.zeros((2, 5, 2)), np.zeros((2, len(au.AU_IDS))), (S, S), 8)
    with pytest.raises(ConfigError, match="AU_IDS"):
        au.render_au_maps(faces.landmarks, np.zeros((len(faces), 3)), (S, S), 8)
    with pytest.raises(ConfigError, match="labels"):
        au.get_codebook("paper002").weights([9])


def test_aus_to_vector():
    v = au.aus_to_vector({12: 0.7, 6: 0.2, 99: 1.0})
    assert v[au.AU_INDEX[12]] == pytest.approx(0.7) and v[au.AU_INDEX[6]] == pytest.approx(0.2)
    assert v.sum() == pytest.approx(0.9)
    assert np.isnan(au.aus_to_vector(None)).all()
