"""``dlib``: offline CPU landmarks with dlib's 68-point shape predictor (Kazemi & Sullivan 2014).

Needs the ``[dlib]`` extra: the ``dlib-bin`` wheel and ``face-recognition-models``, which
ships ``models/shape_predictor_68_face_landmarks.dat`` (iBUG 300-W order). That package's
own ``__init__`` imports ``pkg_resources`` (absent from recent setuptools), so we locate the
file through ``importlib.util.find_spec(...).submodule_search_locations`` and never import it.
The sample's face box is used when given (AffectNet); otherwise dlib's HOG frontal face
detector, upsampling once for images under 400 px (FER faces are small), keeping the
largest face; no face -> None.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_models.data.landmarks import LandmarkBackend
from fer_models.data.manifest import Sample
from fer_models.errors import MissingWeightsError
from fer_models.registry import LANDMARKS
from fer_models.versions import package_version

PREDICTOR = "shape_predictor_68_face_landmarks.dat"
UPSAMPLE_BELOW = 400  # px: smaller images are upsampled once before detection


def predictor_path() -> Path:
    """The 68-point predictor shipped by face_recognition_models (MissingWeightsError if absent)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / "models" / PREDICTOR
        if p.is_file():
            return p
    raise MissingWeightsError(
        f"dlib's {PREDICTOR} was not found (it ships with the package face-recognition-models); "
        "pip install 'fer-orch[dlib]' or choose another --landmarks backend"
    )


@LANDMARKS.register("dlib", auto_order=90)
class DlibLandmarks(LandmarkBackend):
    """dlib 68-point shape predictor (offline, CPU); HOG face detector or the sample's box."""

    name = "dlib"
    version = (
        f"dlib-{package_version('dlib-bin', 'dlib')}-sp68-"
        f"frm{package_version('face-recognition-models', 'face_recognition_models')}"
    )
    uses_gpu = False

    def __init__(self, device: str = "cpu"):
        super().__init__("cpu")  # dlib's pip wheels run on the CPU
        try:
            import dlib
        except ImportError as e:
            raise MissingWeightsError(
                "the dlib backend needs dlib, which is not installed; pip install 'fer-orch[dlib]' "
                "or choose another --landmarks backend"
            ) from e
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(str(predictor_path()))
        self.detector = dlib.get_frontal_face_detector()

    def _face(self, image: np.ndarray, sample: Sample):
        dlib = self._dlib
        if sample.box is not None:
            x, y, w, h = (float(v) for v in sample.box)
            return dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
        upsample = 1 if min(image.shape[:2]) < UPSAMPLE_BELOW else 0
        faces = list(self.detector(image, upsample))
        if not faces:
            return None
        return max(faces, key=lambda r: r.width() * r.height())

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for image, sample in zip(images, samples):
            img = np.ascontiguousarray(image, dtype=np.uint8)
            rect = self._face(img, sample)
            if rect is None:
                out.append(None)
                continue
            shape = self.predictor(img, rect)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            out.append(pts if pts.shape == (68, 2) else None)
        return out
