"""``khorrami2015``: paper 001 (Khorrami et al., ICCVW 2015), the zero-bias CNN on CK+ and TFD.

What the paper states (Sec. 3.2, 4) and what its released code adds
(``ifp-uiuc/do-neural-networks-learn-faus-iccvw-2015``, ``ck_plus/cnn_ad/train.py``):

- data: CK+ (8 classes: the first frame as neutral plus the last three of each sequence,
  10 subject-wise folds; ``--data-opt classes=6`` for Table 3) and TFD (its 5 official folds,
  96 px faces: ``resolution=96``); 96 x 96 grey faces, the CK+ face cropped from the
  640x490 frame (here: by its landmarks, ``fer_models.data.cache.stages.face_box``);
  ``--folds all`` runs every fold and the report gives mean ± sd over folds;
- normalisation: "patchwise mean subtraction and scaling to unit variance" -> per-image
  standardisation (``normalize: per_image``; the released code's ``Normer3`` normalises
  5x5 neighbourhoods, which fer-orch does not have);
- network: ``zerobias-cnn``, Gaussian initialisation scaled by fan-in (``init: khorrami``),
  dropout 0.5 on FC300 (the "+D" rows; ``method_kwargs.dropout: 0`` for the others);
- training: SGD, batch 64, momentum 0.9, weight decay 1e-5, constant learning rate 0.01;
  31,000 steps in the released code, i.e. about 1,900 epochs on a CK+ fold (~1,050 training
  faces) and 700 on a TFD fold (~2,900); model selection on validation (CK+: one subject
  fold's worth of subjects carved from the training folds, as the released code holds out a
  fold; TFD: its own validation split);
- augmentation (the "+A" rows; ``data.augment: []`` for the others): random translations,
  horizontal flips, rotations, scaling and intensity changes. Departure: the released code's
  ``anna.util.DataAugmenter2`` defaults rotate by +-5 deg and scale by 0.7-1.4 (anna is not in the
  released repository); ``AUGMENT_001`` rotates by +-10 deg and crops 80-100 % (scales 1-1.25);
- the AU alignment loss is off: paper 001 asks whether a network learns AUs without being
  told, so training its conv3 towards AU maps would make the question circular.
"""

from __future__ import annotations

from fer_models.config import DataConfig, TrainConfig
from orchestrator.config import GridConfig, Resources
from orchestrator.registry import PRESETS

#: paper 001's augmentation: translations + scaling, flips, rotations, intensity
AUGMENT_001 = ("resized_crop:0.8-1.0", "flip:0.5", "rotate:10", "jitter:0.4,0.4,0,0")


@PRESETS.register("khorrami2015", paper="001")
def khorrami2015() -> GridConfig:
    """Paper 001: zero-bias CNN, 96 px grey, per-image standardisation, SGD 0.01, CK+ 10 folds + TFD 5 folds."""
    base = TrainConfig(
        method="zerobias-cnn",
        au=False,
        epochs=1900,
        batch_size=64,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-5,
        scheduler="none",
        method_kwargs={"dropout": 0.5, "init": "khorrami"},
        data=DataConfig(image_size=96, normalize="per_image", color="gray", augment=AUGMENT_001),
    )
    return GridConfig(
        datasets=("ckplus", "tfd"),
        methods=("zerobias-cnn",),
        au=(False,),
        folds="all",
        seeds=(0, 1, 2),
        ablations=False,
        base=base,
        dataset_overrides={"tfd": {"epochs": 700, "data": {"options": {"resolution": 96}}}},
        resources=Resources(cpus=2, gpus=0.25),
        max_failures=2,
    )
