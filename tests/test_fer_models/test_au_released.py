"""Paper 002's released AU drawing (filled ellipses, a 28 px round trip) for the codebook
``paper002-released``, against fer-orch's Gaussians for ``paper002``."""

from __future__ import annotations

import numpy as np
import pytest

from fer_models.data.au import expression_au_maps, get_codebook
from fer_models.data.au_released import released_au_map, released_au_maps
from fer_models.data.cache.key import _codebook_content
from fer_models.labels import INDEX, NEUTRAL


def _face(size=224):
    """68 landmarks of a frontal face filling a ``size`` px image (iBUG order, rough)."""
    from fer_models.data import synth

    return synth.generate(1, size, 3, 4, labels=np.array([INDEX["happiness"]])).landmarks[0]


def test_happiness_is_ellipses_at_the_cheeks_lip_corners_and_lips():
    lm = _face()
    m = released_au_map(lm, (12,), (224, 224))  # lip corner puller: 20 px discs at 48 and 54
    assert m.shape == (224, 224) and m.max() == pytest.approx(1.0) and m.min() == pytest.approx(0.0)
    for k in (48, 54):
        x, y = (int(v) for v in lm[k])
        assert m[y, x] > 0.8  # inside a disc
    assert m[5, 5] < 0.05  # far from both
    both = released_au_map(lm, (6, 12, 25), (224, 224))
    assert (both >= m - 1e-6).all()  # AUs combine by their maximum (before min-max, both 0..1 here)
    # an AU drawn entirely outside the image is dropped; none left: undefined
    off = lm + 1000
    assert released_au_map(off, (12,), (224, 224)) is None
    assert released_au_map(lm, (), (224, 224)) is None


def test_the_released_codebook_draws_ellipses_for_the_target_and_the_reference():
    lm = np.stack([_face(), _face()])
    labels = np.array([INDEX["disgust"], NEUTRAL])
    maps, ok = expression_au_maps(lm, labels, "paper002-released", (224, 224), 28)
    cb = get_codebook("paper002-released")
    ref, ref_ok = released_au_maps(lm, [cb.aus(int(y)) for y in labels], (224, 224), 28)
    assert ok.tolist() == [True, False] and np.array_equal(maps, ref) and np.array_equal(ok, ref_ok)
    gauss, _ = expression_au_maps(lm, labels, "paper002", (224, 224), 28)
    cos = (maps[0] * gauss[0]).sum() / np.linalg.norm(maps[0]) / np.linalg.norm(gauss[0])
    assert 0.5 < cos < 0.95  # the same region, not the same map
    assert _codebook_content(cb)["drawing"] == "released-ellipses-v1"  # its own cache
    assert "drawing" not in _codebook_content(get_codebook("paper002"))


def test_the_two_drawings_differ_by_the_measured_cosine():
    """docs/reproducing-paper-002.md quotes the mean cosine between the drawings on the
    synthetic faces (benchmarks/bench_au_drawings.py, 300 faces: 0.80, 0.68-0.91)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_au_drawings.py"
    spec = importlib.util.spec_from_file_location("bench_au_drawings", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.drawings_cosine(n=60)
    assert 0.75 <= res["28px_mean"] <= 0.85 and 0.75 <= res["224px_mean"] <= 0.85
