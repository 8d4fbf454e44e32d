"""``face-alignment``: Bulat & Tzimiropoulos' FAN (2DFAN-4) with the S3FD face detector.

The default on machines that have its weights (GPU when present). The package downloads
its weights on first use into ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/
checkpoints``); offline they are absent, so *before* constructing ``FaceAlignment`` we
look for the files it would fetch (names read from the installed package's URL tables)
and raise :class:`MissingWeightsError` naming them and the folder. When a sample carries a
face box (AffectNet), it is given to FAN as the detection instead of running S3FD; the
largest detected face is kept otherwise. ``torch.compile`` is off: its one-off compile
costs more than it saves on a preprocessing pass that runs once per dataset.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np

from fer_models.data.landmarks import LandmarkBackend, as_landmarks
from fer_models.data.manifest import Manifest, Sample
from fer_models.errors import MissingWeightsError
from fer_models.registry import LANDMARKS
from fer_models.versions import package_version


def weight_urls() -> dict[str, str]:
    """File name -> URL of the weights ``FaceAlignment(TWO_D, face_detector="sfd")`` loads."""
    from face_alignment.api import models_urls as fan_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls

    urls = [fan_urls["2DFAN-4"], sfd_urls["s3fd"]]
    return {os.path.basename(urlparse(u).path): u for u in urls}


def checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights() -> list[str]:
    """Names of the weight files not yet in :func:`checkpoints_dir` (empty: all present)."""
    folder = checkpoints_dir()
    return [name for name in weight_urls() if not (folder / name).is_file()]


@LANDMARKS.register("face-alignment", auto_order=30)
class FaceAlignmentLandmarks(LandmarkBackend):
    """FAN 2D landmarks (face-alignment package), S3FD detector or the sample's box; GPU when present."""

    name = "face-alignment"
    version = f"face-alignment-{package_version('face-alignment')}-2DFAN4-s3fd"
    uses_gpu = True

    @classmethod
    def suits(cls, manifest: Manifest) -> bool:
        """The package is installed and its weights are on this machine."""
        try:
            return not missing_weights()
        except ImportError:
            return False

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        try:
            import face_alignment
        except ImportError as e:
            raise MissingWeightsError(
                "the face-alignment package is not installed; "
                "pip install face-alignment or use --landmarks dlib"
            ) from e
        missing = missing_weights()
        if missing:
            raise MissingWeightsError(
                f"face-alignment weights {', '.join(missing)} are not in {checkpoints_dir()} "
                "(this machine cannot download them); copy them there from a machine with internet "
                "(set TORCH_HOME to choose the folder) or use --landmarks dlib"
            )
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        self.device = device
        self.fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, face_detector="sfd",
            flip_input=False, compile=False,
        )

    def detect(self, images: Sequence[np.ndarray], samples: Sequence[Sample]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for image, sample in zip(images, samples):
            boxes = None
            if sample.box is not None:
                x, y, w, h = (float(v) for v in sample.box)
                # float64: face_alignment writes box-derived numpy scalars into torch tensors,
                # which accepts Python floats (np.float64) but refuses np.float32
                boxes = [np.array([x, y, x + w, y + h, 1.0], dtype=np.float64)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "No faces were detected" is counted, not warned
                pts, _, found = self.fa.get_landmarks_from_image(
                    np.ascontiguousarray(image), detected_faces=boxes, return_bboxes=True
                )
            if not pts:
                out.append(None)
                continue
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (found if found is not None else boxes)]
            out.append(as_landmarks(np.asarray(pts[int(np.argmax(areas))])[:, :2]))
        return out
