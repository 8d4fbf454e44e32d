"""Shared fixtures: tiny synthetic data, a local Ray, a throw-away MLflow store."""

from __future__ import annotations

import os

import pytest

# One intra-op thread per test process: the suite runs on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(autouse=True)
def _fer_orch_home(tmp_path, monkeypatch):
    """Every test writes under its own temporary FER_ORCH_HOME."""
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "fer-orch-out"))
    yield


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by the session (never joins a stray cluster)."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """One MLflow SQLite store made per session: creating its tables takes seconds."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template_db):
    """A fresh, empty MLflow store of this test (a copy of the session's template)."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def mlflow_store(tmp_path, mlflow_uri):
    """A throw-away MLflow store: ``.uri``, ``.client`` and an experiment id ``.exp``."""
    from types import SimpleNamespace

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("test", artifact_location=(tmp_path / "artifacts").as_uri())
    return SimpleNamespace(uri=mlflow_uri, client=client, exp=exp)


@pytest.fixture
def log_trial(tmp_path):
    """Log a trial run in the tracking layout (tags, config.yaml, weights/best.pt) -> run id."""
    import torch

    from orchestrator import tracking

    def _log(c, exp_id: str, parent_id: str, cfg, state: dict, name: str) -> str:
        run = c.create_run(
            exp_id,
            tags={tracking.KIND_TAG: "trial", "mlflow.parentRunId": parent_id, "method": cfg.method},
            run_name=name,
        )
        d = tmp_path / "logged-trials" / name
        (d / "weights").mkdir(parents=True)
        (d / "config.yaml").write_text(tracking.dump_config(cfg))
        torch.save(state, d / "weights" / "best.pt")
        c.log_artifact(run.info.run_id, str(d / "config.yaml"))
        c.log_artifacts(run.info.run_id, str(d / "weights"), "weights")
        c.set_terminated(run.info.run_id)
        return run.info.run_id

    return _log


@pytest.fixture
def entry_module(tmp_path, monkeypatch):
    """Add a module to a registry's package as if it were one more file there.

    ``entry_module(REGISTRY, "module_name", source) -> module name``: writes ``source`` into a
    temporary folder appended to the package's ``__path__`` and lets the registry rescan, so
    the entry is found exactly as a new file in the package would be, with no other file
    edited. Afterwards the entries it registered and the module are removed again.
    """
    import importlib
    import sys
    import textwrap

    added = []

    def _add(registry, name: str, source: str) -> str:
        before = set(registry.names())  # the real entries, loaded before the package grows
        folder = tmp_path / "entry-modules" / registry.package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        pkg = importlib.import_module(registry.package)
        monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(folder)])
        registry.rescan()
        module = f"{registry.package}.{name}"
        added.append((registry, module, before))
        return module

    yield _add
    for registry, module, before in added:
        for entry in set(registry.names()) - before:
            registry.unregister(entry)
        sys.modules.pop(module, None)


# ----------------------------------------------------------------------------- data fakes
# Tiny images in a dataset's layout, a hand-made manifest, and a landmark backend that
# returns the shipped landmarks (None on a blank image), shared by the reader, cache,
# preprocessing and dataset tests. (Imported here, after OMP_NUM_THREADS is set above.)
import math  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fer_models.data.manifest import Manifest, Sample  # noqa: E402


def _template_landmarks(w: float, h: float):
    """A rough frontal 68-point face (iBUG order) filling a w x h image."""
    pts = []
    for k in range(17):  # jaw
        t = math.pi - k * math.pi / 16
        pts.append((0.5 + 0.4 * math.cos(t), 0.35 + 0.6 * math.sin(t)))
    pts += [(0.2 + 0.055 * i, 0.3) for i in range(5)]  # right brow
    pts += [(0.58 + 0.055 * i, 0.3) for i in range(5)]  # left brow
    pts += [(0.5, 0.38 + 0.057 * i) for i in range(4)]  # nose bridge
    pts += [(0.42 + 0.04 * i, 0.6) for i in range(5)]  # nostrils
    for cx in (0.32, 0.68):  # eyes
        pts += [(cx + 0.07 * math.cos(a), 0.4 + 0.03 * math.sin(a))
                for a in np.linspace(math.pi, -math.pi, 6, endpoint=False)]
    pts += [(0.5 + 0.15 * math.cos(a), 0.78 + 0.06 * math.sin(a))
            for a in np.linspace(math.pi, -math.pi, 12, endpoint=False)]
    pts += [(0.5 + 0.1 * math.cos(a), 0.78 + 0.03 * math.sin(a))
            for a in np.linspace(math.pi, -math.pi, 8, endpoint=False)]
    arr = np.asarray(pts, np.float32)
    assert arr.shape == (68, 2)
    return arr * np.array([w - 1, h - 1], np.float32)


class FakeBackend:
    """Returns the shipped landmarks, or None on a blank image (no face)."""

    name = "fake"
    version = "1"
    uses_gpu = False
    constructed = 0

    def __init__(self, device: str = "cpu"):
        type(self).constructed += 1
        self.device = device

    def detect(self, images, samples):
        return [None if img.std() < 1.0 else s.landmarks for img, s in zip(images, samples)]


class ExplodingBackend(FakeBackend):
    """A backend that must never be constructed (cache hits do no work)."""

    def __init__(self, device: str = "cpu"):
        raise AssertionError("the backend was constructed on a cache hit")


def _make_manifest(root, n: int = 24, w: int = 48, h: int = 40, seed: int = 0,
                   blank: int = 1, corrupt: int = 1, with_aus: bool = True):
    """``n`` textured faces (PNG) + ``blank`` uniform images + ``corrupt`` broken JPEGs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    splits = ["train", "train", "val", "test"]
    for i in range(n + blank + corrupt):
        p = root / f"img_{i:03d}.png"
        if i < n:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            img[: h // 2] //= 2  # not symmetric: flips and crops are visible
        elif i < n + blank:
            img = np.full((h, w, 3), 128, np.uint8)
        else:
            p = root / f"img_{i:03d}.jpg"
            p.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
            img = None
        if img is not None:
            Image.fromarray(img).save(p)
        label = i % 7
        aus = {12: 0.8, 6: 0.5} if with_aus and i % 3 == 0 else ({} if with_aus and i % 3 == 1 else None)
        samples.append(Sample(
            path=str(p), split=splits[i % 4], label=label,
            identity=f"id{i % 5}" if i % 6 else None,
            landmarks=_template_landmarks(w, h), valence=0.1 * (i % 3), arousal=math.nan,
            aus=aus,
        ))
    return Manifest(dataset="fake", root=root, samples=samples)


@pytest.fixture
def template_landmarks():
    """``template_landmarks(w, h)`` -> (68, 2) float32: the face every fake image carries."""
    return _template_landmarks


@pytest.fixture
def fake_backend():
    """The :class:`FakeBackend` class, its construction counter reset."""
    FakeBackend.constructed = 0
    return FakeBackend


@pytest.fixture
def exploding_backend():
    """A backend class with FakeBackend's name and version that fails if constructed."""
    return ExplodingBackend


@pytest.fixture
def make_manifest():
    """``make_manifest(root, n=24, w=48, h=40, blank=1, corrupt=1, with_aus=True)`` -> Manifest
    of ``n`` textured faces, ``blank`` faceless images and ``corrupt`` undecodable files."""
    return _make_manifest


def _write_img(path, size=(32, 32), value=128, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    arr = np.clip(rng.normal(value, 20, shape), 0, 255).astype(np.uint8)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(arr, mode).save(path, format=fmt)
    return path


def _write_corrupt(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return path


@pytest.fixture
def write_img():
    """``write_img(path, size=(32, 32), value=128, mode="RGB")``: a noisy image (PNG or JPEG
    by suffix), parent folders made."""
    return _write_img


@pytest.fixture
def write_corrupt():
    """``write_corrupt(path)``: a file with a JPEG header and no image."""
    return _write_corrupt


AFF_TRAIN = [  # (file, expression, valence, arousal)
    ("1/a.jpg", 0, 0.1, 0.2), ("1/b.jpg", 1, 0.8, 0.3), ("1/c.jpg", 6, -0.6, 0.7),
    ("2/d.jpg", 7, -0.3, 0.2), ("2/e.jpg", 8, -2, -2), ("2/f.jpg", 9, 0.0, 0.0),
    ("2/g.jpg", 10, -2, -2), ("3/h.jpg", 3, 0.2, 0.9), ("3/missing.jpg", 2, -0.4, -0.3),
    ("3/i.jpg", 1, 0.7, 0.4), ("3/j.jpg", 6, -2, 0.5),
]
AFF_TEST = [("4/k.jpg", 2, -0.5, -0.2), ("4/l.jpg", 5, -0.6, 0.3)]


def _make_affectnet(root, header=True, corrupt=()):
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for fname, rows in (("training.csv", AFF_TRAIN), ("validation.csv", AFF_TEST)):
        lines = []
        if header:
            lines.append("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                         "facial_landmarks,expression,valence,arousal")
        for i, (f, e, v, a) in enumerate(rows):
            pts = np.stack([np.linspace(5, 60, 68) + i, np.linspace(8, 50, 68)], 1)
            lnd = ";".join(f"{x:.2f}" for x in pts.reshape(-1))
            lines.append(f'{f},4,6,50,52,"{lnd}",{e},{v},{a}')
            if "missing" not in f:
                p = root / "Manually_Annotated_Images" / f
                _write_corrupt(p) if f in corrupt else _write_img(p, (64, 64))
        (lists / fname).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def make_affectnet():
    """``make_affectnet(root, header=True, corrupt=())``: 13 listed AffectNet rows (official
    layout) covering every expression id 0-10, one missing image, -2 valence/arousal."""
    return _make_affectnet
