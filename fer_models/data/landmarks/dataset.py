"""``dataset``: the 68 landmarks a dataset ships (AffectNet's ``facial_landmarks``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fer_models.data.landmarks._base import LandmarkBackend, as_landmarks
from fer_models.data.manifest import Sample
from fer_models.registry import LANDMARKS


@LANDMARKS.register("dataset")
class DatasetLandmarks(LandmarkBackend):
    """Landmarks shipped with the dataset (Sample.landmarks); None where a row has none."""

    name = "dataset"
    version = "1"

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        return [as_landmarks(s.landmarks) for s in samples]
