"""Readers + landmark backends through the preprocessing cache (fer_models.data.cache)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fer_models.config import DataConfig
from fer_models.data import cache
from fer_models.data.images import load_image
from fer_models.data.landmarks import default_backend
from fer_models.data.readers import read_dataset
from fer_models.registry import DATASETS, LANDMARKS


def test_affectnet_auto_uses_shipped_landmarks_and_counts_corrupt(tmp_path, monkeypatch, make_affectnet):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    make_affectnet(tmp_path / "aff", corrupt=("1/b.jpg",))
    m = read_dataset("affectnet", tmp_path / "aff", val_fraction=0)
    info = cache.prepare(m, "auto", "paper002", 16, 32, tmp_path / "cache", progress=False)
    assert info.meta["inputs"]["backend"] == "dataset"
    assert info.failures == {"unreadable": 1}  # the corrupt JPEG fails at load time, counted
    assert info.reader_skipped["missing image"] == 1 and info.reader_skipped["expression 8 (none)"] == 1
    test = cache.load_split(info.dir, "test")
    # shipped landmarks, mapped from the 64 px image with its box into the 32 px stored crop
    assert np.isfinite(test["landmarks"]).all() and test["landmarks"].shape[1:] == (68, 2)


def test_synthetic_rafdb_through_real_reader_and_auto_backend(tmp_path):
    m = read_dataset("synthetic-rafdb", tmp_path / "s", n_train=21, n_test=7, image_size=32,
                     n_identities=3, progress=False)
    assert m.counts()["test"] == 7 and m.counts()["train"] + m.counts()["val"] == 21
    assert all(s.path.endswith("_aligned.jpg") for s in m.samples)  # read by the real rafdb reader
    assert default_backend(m) == "synthetic"
    backend = LANDMARKS.get("synthetic")()
    images = [load_image(s.path) for s in m.samples[:4]]
    out = backend.detect(images, m.samples[:4])
    assert all(o.shape == (68, 2) and np.allclose(o, s.landmarks) for o, s in zip(out, m.samples[:4]))


# A dataset reader and a landmark backend written as the single file a user would add.
TOY_READER = '''
    """``toy-folders``: <root>/<split>/<label>/<name>.png, labels in the project's order."""

    from fer_models.data.manifest import Sample
    from fer_models.data.readers import DatasetReader, add_if_exists
    from fer_models.registry import DATASETS


    @DATASETS.register("toy-folders", classes=7)
    class ToyFolders(DatasetReader):
        """A throw-away dataset: one folder per split, one per label."""

        name = "toy-folders"
        title = "Toy"

        def check(self, root, opts):
            self.require(root, "train", what="a train/ folder")

        def collect(self, root, manifest, opts):
            for p in sorted(root.glob("*/*/*.png")):
                split, label = p.parts[-3], int(p.parts[-2])
                add_if_exists(manifest, Sample(path=str(p), split=split, label=label))
'''
TOY_BACKEND = '''
    """``toy-face``: one synthetic identity's neutral face stretched over the image."""

    import numpy as np

    from fer_models.data.landmarks import LandmarkBackend
    from fer_models.data.synth.face import identity_params, neutral_landmarks
    from fer_models.registry import LANDMARKS


    @LANDMARKS.register("toy-face", auto_order=1)
    class ToyFace(LandmarkBackend):
        """A throw-away backend: a fixed face; no face on a uniform image."""

        name = "toy-face"
        version = "1"

        @classmethod
        def suits(cls, manifest):
            return manifest.dataset == "toy-folders"

        def detect(self, images, samples):
            face = neutral_landmarks(identity_params(np.random.default_rng(0)))
            out = []
            for img in images:
                h, w = img.shape[:2]
                pts = np.stack([w / 2 + 0.4 * w * face[:, 0], 0.48 * h + 0.4 * h * face[:, 1]], 1)
                out.append(None if img.std() < 1.0 else pts.astype(np.float32))
            return out
'''


def test_a_new_reader_and_backend_are_one_file_each(tmp_path, entry_module, write_img):
    """Dropping one module into each package is all it takes: the registries list them,
    ``landmarks: auto`` picks the backend by its ``auto_order``/``suits``, and preprocessing
    writes their cache (the reader's counts, the backend's no-face failure)."""
    entry_module(DATASETS, "toy_folders", TOY_READER)
    entry_module(LANDMARKS, "toy_face", TOY_BACKEND)
    root = tmp_path / "toy"
    for split, n in (("train", 3), ("test", 1)):
        for label in range(7):
            for i in range(n):
                write_img(root / split / str(label) / f"{i}.png", (40, 40), value=60 + 20 * label)
    Image.new("RGB", (40, 40), (128, 128, 128)).save(root / "test" / "3" / "blank.png")

    assert "toy-folders" in DATASETS.names() and "toy-face" in LANDMARKS.names()
    m = read_dataset("toy-folders", root, val_fraction=0.2)
    assert m.counts() == {"train": 14, "val": 7, "test": 8}  # validation: one row per label
    assert default_backend(m) == "toy-face"
    cfg = DataConfig(dataset="toy-folders", root=str(root), landmarks="auto", image_size=32,
                     map_size=16, val_fraction=0.2)
    target = cache.cache_dir_for(cfg, tmp_path / "cache")
    assert target.backend is LANDMARKS.get("toy-face")
    info = cache.build(target, 16, 32, cache.serial, progress=False)
    assert info.meta["inputs"]["backend"] == "toy-face" and info.dataset == "toy-folders"
    assert info.failures == {cache.NO_FACE: 1} and info.counts == {"train": 14, "val": 7, "test": 8}
    test = cache.load_split(info.dir, "test")
    face = ~np.char.endswith(test["path"], "blank.png")
    assert np.array_equal(test["au_valid"], face & (test["label"] != 6))
    assert np.allclose(test["au_map"][test["au_valid"]].max(axis=(1, 2)), 1.0)
    # a second build finds it; other datasets' "auto" is untouched by the new backend
    assert cache.prepare(m, "auto", "paper002", 16, 32, tmp_path / "cache", progress=False).hit
    synthetic = read_dataset("synthetic-rafdb", tmp_path / "s", n_train=7, n_test=7, image_size=32,
                             n_identities=2, progress=False)
    assert default_backend(synthetic) == "synthetic"
