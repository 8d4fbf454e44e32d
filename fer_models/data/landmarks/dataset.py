"""``dataset``: the 68 landmarks a dataset ships (AffectNet's ``facial_landmarks``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fer_models.data.landmarks import LandmarkBackend, as_landmarks
from fer_models.data.manifest import Manifest, Sample
from fer_models.registry import LANDMARKS

# "auto" uses the dataset's own landmarks when at least this fraction of rows ships them;
# the rows without become counted "no face" failures.
SHIPPED_FRACTION = 0.95


@LANDMARKS.register("dataset", auto_order=20)
class DatasetLandmarks(LandmarkBackend):
    """Landmarks shipped with the dataset (Sample.landmarks); None where a row has none."""

    name = "dataset"
    version = "1"
    detects = False

    @classmethod
    def suits(cls, manifest: Manifest) -> bool:
        """At least :data:`SHIPPED_FRACTION` of the rows ship landmarks, usable or not (the
        rest, and the unusable ones, become counted "no face" failures)."""
        samples = manifest.samples
        # a row whose shipped landmarks the reader found unusable (Manifest.bad_landmarks) still
        # shows the dataset ships them: it is one landmark failure, not a vote for a detector
        shipped = sum(as_landmarks(s.landmarks) is not None or "landmark_error" in s.meta for s in samples)
        return bool(samples) and shipped >= SHIPPED_FRACTION * len(samples)

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        return [as_landmarks(s.landmarks) for s in samples]
