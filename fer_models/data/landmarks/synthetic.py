"""``synthetic``: the ground-truth landmarks of the synthetic faces (fer_models.data.synth)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fer_models.data.landmarks import LandmarkBackend, as_landmarks
from fer_models.data.manifest import Manifest, Sample
from fer_models.errors import ConfigError
from fer_models.registry import LANDMARKS


@LANDMARKS.register("synthetic", auto_order=10)
class SyntheticLandmarks(LandmarkBackend):
    """Ground-truth landmarks of the synthetic datasets (rows with meta["synthetic"])."""

    name = "synthetic"
    version = "1"
    detects = False

    @classmethod
    def suits(cls, manifest: Manifest) -> bool:
        """Every row is synthetic (its ground truth is known)."""
        return bool(manifest.samples) and all(s.meta.get("synthetic") for s in manifest.samples)

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        for s in samples:
            if not s.meta.get("synthetic"):
                raise ConfigError(
                    f"landmark backend 'synthetic' only works on the synthetic datasets, but {s.path} "
                    "is not synthetic; use --landmarks auto, dataset, face-alignment or dlib"
                )
        return [as_landmarks(s.landmarks) for s in samples]
