"""Landmark backends: shipped, synthetic, face-alignment offline, dlib; and "auto"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fer_models.data.landmarks import default_backend
from fer_models.data.manifest import Manifest, Sample
from fer_models.errors import ConfigError, MissingWeightsError
from fer_models.registry import LANDMARKS


def _sample(landmarks=None, box=None, synthetic=False):
    s = Sample(path="/x.jpg", split="train", label=3, landmarks=landmarks, box=box)
    if synthetic:
        s.meta["synthetic"] = True
    return s


def _points(seed=0):
    return np.random.default_rng(seed).uniform(5, 60, (68, 2)).astype(np.float32)


def drawn_face(size=160):
    """A grey cartoon face (skin ellipse, brows, eyes, nose, mouth) on a dark background."""
    img = Image.new("RGB", (size, size), (40, 40, 50))
    d = ImageDraw.Draw(img)
    s = size / 160
    d.ellipse([35 * s, 20 * s, 125 * s, 140 * s], fill=(205, 170, 145))
    for cx in (62, 98):
        d.ellipse([(cx - 11) * s, 58 * s, (cx + 11) * s, 70 * s], fill=(250, 250, 250))
        d.ellipse([(cx - 4) * s, 60 * s, (cx + 4) * s, 68 * s], fill=(30, 20, 20))
        d.line([(cx - 14) * s, 48 * s, (cx + 12) * s, 46 * s], fill=(60, 40, 30), width=max(1, int(3 * s)))
    d.polygon([(80 * s, 70 * s), (72 * s, 95 * s), (88 * s, 95 * s)], fill=(180, 140, 120))
    d.chord([62 * s, 100 * s, 98 * s, 122 * s], 0, 180, fill=(150, 50, 60))
    return np.asarray(img)


def test_registry_has_the_four_backends_with_versions():
    assert {"face-alignment", "dlib", "dataset", "synthetic"} <= set(LANDMARKS.names())
    for name in ("face-alignment", "dlib"):
        cls = LANDMARKS.get(name)
        # the package version is part of the cache key, readable without constructing
        assert any(ch.isdigit() for ch in cls.version) and name.split("-")[0] in cls.version
    assert LANDMARKS.get("face-alignment").uses_gpu and not LANDMARKS.get("dlib").uses_gpu


def test_dataset_backend_returns_shipped_or_none():
    pts = _points()
    bad = pts.copy()
    bad[3, 0] = np.nan
    backend = LANDMARKS.get("dataset")()
    out = backend.detect([np.zeros((64, 64, 3), np.uint8)] * 3, [_sample(pts), _sample(None), _sample(bad)])
    assert out[0].dtype == np.float32 and np.array_equal(out[0], pts)
    assert out[0] is not pts  # a copy: the manifest is never mutated through it
    assert out[1] is None and out[2] is None


def test_synthetic_backend_needs_synthetic_rows():
    pts = _points(1)
    backend = LANDMARKS.get("synthetic")()
    out = backend.detect([np.zeros((64, 64, 3), np.uint8)], [_sample(pts, synthetic=True)])
    assert np.allclose(out[0], pts)
    with pytest.raises(ConfigError, match="only works on the synthetic datasets"):
        backend.detect([np.zeros((64, 64, 3), np.uint8)], [_sample(pts)])


def test_face_alignment_offline_names_files_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    from fer_models.data.landmarks import fan

    assert fan.checkpoints_dir() == tmp_path / "th" / "hub" / "checkpoints"
    names = fan.missing_weights()
    assert any(n.startswith("2DFAN4") for n in names) and any(n.startswith("s3fd") for n in names)
    with pytest.raises(MissingWeightsError) as err:
        LANDMARKS.get("face-alignment")()
    msg = str(err.value)
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg and "--landmarks dlib" in msg
    assert all(n in msg for n in names)
    # once the files are there, nothing is reported missing
    (tmp_path / "th" / "hub" / "checkpoints").mkdir(parents=True)
    for n in names:
        (tmp_path / "th" / "hub" / "checkpoints" / n).write_bytes(b"")
    assert fan.missing_weights() == []


def test_default_backend_auto(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))  # no FAN weights here
    synth = Manifest("synthetic-rafdb", tmp_path, [_sample(_points(), synthetic=True) for _ in range(3)])
    shipped = Manifest("affectnet", tmp_path, [_sample(_points()) for _ in range(3)])
    plain = Manifest("rafdb", tmp_path, [_sample() for _ in range(3)])
    assert default_backend(synth) == "synthetic"
    assert default_backend(shipped) == "dataset"
    assert default_backend(plain) == "dlib"
    from fer_models.data.landmarks import fan

    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for n in fan.weight_urls():
        (ckpt / n).write_bytes(b"")
    assert default_backend(plain) == "face-alignment"


def test_dlib_with_box_inside_and_blank_without_face():
    pytest.importorskip("dlib")
    backend = LANDMARKS.get("dlib")()
    face = drawn_face(160)
    box = (35.0, 20.0, 90.0, 120.0)
    blank = np.full((96, 96, 3), 127, np.uint8)
    out = backend.detect([face, blank], [_sample(box=box), _sample()])
    pts = out[0]
    assert pts is not None and pts.shape == (68, 2) and pts.dtype == np.float32
    x, y, w, h = box
    margin = 0.15 * max(w, h)
    assert (pts[:, 0] >= x - margin).all() and (pts[:, 0] <= x + w + margin).all()
    assert (pts[:, 1] >= y - margin).all() and (pts[:, 1] <= y + h + margin).all()
    # iBUG order: jaw (0-16) spans left to right; the nose tip (30) lies above the chin (8)
    assert pts[0, 0] < pts[16, 0] and pts[30, 1] < pts[8, 1]
    assert out[1] is None  # no face on a blank image


@pytest.mark.slow
def test_face_alignment_runs_with_local_weights(tmp_path, monkeypatch):
    """The full FAN path offline: randomly initialised weights written where the package
    looks, so construction and a box-driven detection run (the points are meaningless)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    from fer_models.data.landmarks import fan

    ckpt = fan.checkpoints_dir()
    ckpt.mkdir(parents=True)
    fan_name, sfd_name = fan.weight_urls()
    torch.save(FAN(4).state_dict(), ckpt / fan_name)
    torch.save(s3fd().state_dict(), ckpt / sfd_name)
    backend = LANDMARKS.get("face-alignment")(device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    (pts,) = backend.detect([img], [_sample(box=(10.0, 12.0, 70.0, 72.0))])
    assert pts.shape == (68, 2) and pts.dtype == np.float32 and np.isfinite(pts).all()
