"""Base of the landmark backends (docs/contracts.md, "Landmark backends") and ``default_backend``.

A backend is a class registered in ``LANDMARKS`` with class attributes ``name``, ``version``
(part of the preprocessing cache key, read from the class so a cache hit never constructs
a backend; it includes the versions of the packages and weights that produce the points)
and ``uses_gpu``, built as ``Backend(device="cpu")``, whose
``detect(images, samples)`` returns one ``(68, 2)`` float32 array in the pixels of the
image it was given (iBUG 300-W order), or ``None`` for "no face" (counted downstream).

``landmarks: auto`` is registry metadata, not a list kept here: a backend registered with
``LANDMARKS.register(name, auto_order=N)`` takes part, tried in increasing ``N``, and the
first whose :meth:`LandmarkBackend.suits` accepts the manifest is chosen (ground truth 10,
shipped 20, face-alignment 30, dlib 90 as the offline fallback).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from fer_models.data.manifest import Manifest, Sample
from fer_models.errors import ConfigError


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
    # False for a backend that reads the landmarks the rows already carry (no model, no image
    # work): its cache costs only decoding, which the grid does in the driver for a small
    # dataset (orchestrator.preprocess.SERIAL_MAX_ROWS)
    detects: ClassVar[bool] = True

    def __init__(self, device: str = "cpu"):
        self.device = device

    @classmethod
    def suits(cls, manifest: Manifest) -> bool:
        """Whether ``landmarks: auto`` may choose this backend for ``manifest`` (cheap: no
        image is read, nothing is constructed). Only asked of backends registered with
        ``auto_order``; the default accepts every manifest."""
        return True

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, device={self.device!r})"


def default_backend(manifest: Manifest) -> str:
    """The LANDMARKS name that ``landmarks: auto`` means for ``manifest``.

    The registered backends with an ``auto_order`` are asked in that order whether they
    :meth:`~LandmarkBackend.suits` the manifest: synthetic data -> ``synthetic`` (ground
    truth); landmarks shipped with the dataset (AffectNet) -> ``dataset``; else
    ``face-alignment`` when its weights are on this machine, else ``dlib`` (offline CPU).
    """
    from fer_models.registry import LANDMARKS

    ranked = sorted((LANDMARKS.meta(n)["auto_order"], n) for n in LANDMARKS.names()
                    if LANDMARKS.meta(n).get("auto_order") is not None)
    for _, name in ranked:
        if LANDMARKS.get(name).suits(manifest):
            return name
    raise ConfigError(f"no landmark backend suits dataset '{manifest.dataset}' for landmarks 'auto' "
                      f"(tried {', '.join(n for _, n in ranked) or 'none'}); pass --landmarks NAME")
