"""Base of the landmark backends (docs/contracts.md, "Landmark backends") and ``default_backend``.

A backend is a class registered in ``LANDMARKS`` with class attributes ``name``, ``version``
(part of the preprocessing cache key, read from the class so a cache hit never constructs
a backend; it includes the versions of the packages and weights that produce the points)
and ``uses_gpu``, built as ``Backend(device="cpu")``, whose
``detect(images, samples)`` returns one ``(68, 2)`` float32 array in the pixels of the
image it was given (iBUG 300-W order), or ``None`` for "no face" (counted downstream).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from fer_models.data.manifest import Manifest, Sample

# "auto" uses the dataset's own landmarks when at least this fraction of rows ships them;
# the rows without become counted "no face" failures of the `dataset` backend.
SHIPPED_FRACTION = 0.95


def as_landmarks(points) -> np.ndarray | None:
    """``points`` as a finite (68, 2) float32 array, else None."""
    if points is None:
        return None
    arr = np.asarray(points, dtype=np.float32)
    if arr.shape != (68, 2) or not np.isfinite(arr).all():
        return None
    return arr.copy()


class LandmarkBackend:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    uses_gpu: ClassVar[bool] = False

    def __init__(self, device: str = "cpu"):
        self.device = device

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, device={self.device!r})"


def default_backend(manifest: Manifest) -> str:
    """The LANDMARKS name that ``landmarks: auto`` means for ``manifest``.

    synthetic data -> ``synthetic`` (ground truth); landmarks shipped with the dataset
    (AffectNet) -> ``dataset``; else ``face-alignment`` when its weights are on this
    machine, else ``dlib`` (offline CPU).
    """
    samples = manifest.samples
    if samples and all(s.meta.get("synthetic") for s in samples):
        return "synthetic"
    if samples:
        shipped = sum(as_landmarks(s.landmarks) is not None for s in samples)
        if shipped >= SHIPPED_FRACTION * len(samples):
            return "dataset"
    from fer_models.data.landmarks.fan import missing_weights

    try:
        if not missing_weights():
            return "face-alignment"
    except ImportError:
        pass
    return "dlib"
