"""The AU detector contract and the helpers the cache uses (not a registry entry).

A detector (``AU_DETECTORS.register(name)``) is an :class:`AUDetector`:

- ``name``, ``version`` (part of the cache key: bump it when its outputs change), ``au_ids``
  (the FACS numbers of its outputs, in output order), ``threshold`` (an AU is active where its
  score reaches it), ``weights_files`` (the files it loads, under :func:`weights_dir`);
- ``__init__(device="cpu")`` loads the weights, or raises ``MissingWeightsError`` naming the
  missing files (no detector downloads anything);
- ``scores(images, landmarks) -> (B, len(au_ids)) float32`` in [0, 1] for uint8 face crops
  (B, H, W, 3) as the cache stores them and their landmarks in those pixels (NaN: none).

:meth:`AUDetector.predict` turns the scores into intensities over ``au.AU_IDS`` (the AUs that
have a location rule): the score where it reaches ``threshold``, else 0; AUs the detector
does not predict are 0. :func:`detector_fingerprint` (name, version, a hash of the weights
files) is what the cache key holds, so other weights make another cache.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fer_models.errors import MissingWeightsError


def weights_dir() -> Path:
    """``$FER_ORCH_HOME/weights/au_detectors``: where every detector looks for its files."""
    from fer_models import paths

    return paths.home() / "weights" / "au_detectors"


class AUDetector:
    """Base of the AU detectors (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    au_ids: ClassVar[tuple[int, ...]] = ()
    threshold: ClassVar[float] = 0.5
    weights_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device: str = "cpu"):
        self.device = device

    @classmethod
    def weights_paths(cls) -> list[Path]:
        return [weights_dir() / f for f in cls.weights_files]

    @classmethod
    def require_weights(cls) -> list[Path]:
        """The weights files, or one ``MissingWeightsError`` naming those that are missing."""
        paths = cls.weights_paths()
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise MissingWeightsError(
                f"AU detector '{cls.name}' needs its weights file(s) {', '.join(str(p) for p in missing)}; "
                f"download them from the detector's release ({cls.__doc__.strip().splitlines()[0] if cls.__doc__ else cls.name}) "
                f"and put them there (nothing is downloaded at run time), or use another --au-source"
            )
        return paths

    def scores(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(B, len(au.AU_IDS)) float32: the score of each active AU (>= ``threshold``), else 0."""
        from fer_models.data.au import AU_IDS

        s = np.asarray(self.scores(images, landmarks), np.float32)
        if s.shape != (len(images), len(self.au_ids)):
            raise RuntimeError(f"AU detector '{self.name}' returned scores of shape {s.shape}, "
                               f"expected {(len(images), len(self.au_ids))}")
        out = np.zeros((len(images), len(AU_IDS)), np.float32)
        col = {au: j for j, au in enumerate(self.au_ids)}
        for a, au in enumerate(AU_IDS):
            if au in col:
                v = s[:, col[au]]
                out[:, a] = np.where(v >= self.threshold, v, 0.0)
        return out


def detector_class(name: str) -> type[AUDetector]:
    from fer_models.registry import AU_DETECTORS

    return AU_DETECTORS.get(name)


def _file_hash(path: Path) -> str:
    st = path.stat()
    return _file_hash_cached(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_hash_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def detector_fingerprint(name: str) -> dict[str, Any]:
    """What the cache key holds of a detector: name, version, threshold and the hash of each
    weights file. A detector class that makes its own weights (an optional
    ``prepare_weights()``; none does yet) makes them now; missing weights are one
    ``MissingWeightsError`` before any image is read."""
    cls = detector_class(name)
    prepare = getattr(cls, "prepare_weights", None)
    if callable(prepare):
        prepare()
    files = cls.require_weights()
    return {"name": cls.name, "version": cls.version, "threshold": cls.threshold,
            "weights": {p.name: _file_hash(p) for p in files}}


_INSTANCES: dict[tuple[str, str], AUDetector] = {}


def get_detector(name: str, device: str | None = None) -> AUDetector:
    """One instance per (detector, device) and process: the AU stage runs batch after batch
    (in Ray Data's tasks too) without loading the weights again."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (name.lower(), device)
    if key not in _INSTANCES:
        _INSTANCES[key] = detector_class(name)(device=device)
    return _INSTANCES[key]


def predict_aus(name: str, images: np.ndarray, landmarks: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The AU intensities (B, len(au.AU_IDS)) detector ``name`` predicts for ``images``."""
    det = get_detector(name)
    parts = [det.predict(images[i:i + batch_size], landmarks[i:i + batch_size])
             for i in range(0, len(images), batch_size)]
    from fer_models.data.au import AU_IDS

    return np.concatenate(parts) if parts else np.zeros((0, len(AU_IDS)), np.float32)
