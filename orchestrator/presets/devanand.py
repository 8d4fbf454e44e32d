"""``devanand-t``: paper 004 (Devanand T et al.), the lightweight CNN trained on FER2013.

What the paper states (Table 1, Fig. 1, Sec. 3) and the network's source adds (Sharma 2020,
the Kaggle notebook the paper takes it from; ``greatsharma/Facial_Emotion_Recognition``):

- data: FER2013, 48 x 48 grey faces (``color: gray``), its Training / PublicTest /
  PrivateTest usage as train / validation / test; pixel values / 255 (``normalize: none``);
  NN2 uses all 7 expressions (this preset); NN1 the three of ``--data-opt
  classes=happiness,sadness,neutral`` (3 outputs, ``fer_models.labels.output_classes``);
- network: ``light-cnn`` with He-normal initialisation (``init: he_normal``), ELU, batch
  norm, dropout 0.4 / 0.4 / 0.5 / 0.6;
- training: Adam, learning rate 1e-3, batch 32, 100 epochs; the notebook's early stopping
  and ReduceLROnPlateau become best-validation selection at a constant learning rate
  (fer-orch has no plateau schedule);
- augmentation: rotations up to 15 degrees, shifts and zoom of 15 %, horizontal flips
  (Keras ``ImageDataGenerator``; shear has no counterpart here);
- the probing of paper 004 runs on other datasets (DISFA, KDEF): ``fer-orch probe --run ...
  --dataset kdef`` on the trained runs; AU loss off.
"""

from __future__ import annotations

from fer_models.config import DataConfig, TrainConfig
from orchestrator.config import GridConfig, Resources
from orchestrator.registry import PRESETS

AUGMENT_004 = ("rotate:15", "resized_crop:0.75-1.0", "flip:0.5")


@PRESETS.register("devanand-t", paper="004")
def devanand_t() -> GridConfig:
    """Paper 004: light CNN (NN2), 48 px grey FER2013, He-normal init, Adam 1e-3, batch 32, 100 epochs."""
    base = TrainConfig(
        method="light-cnn",
        au=False,
        epochs=100,
        batch_size=32,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        scheduler="none",
        method_kwargs={"init": "he_normal"},
        data=DataConfig(image_size=48, normalize="none", color="gray", augment=AUGMENT_004),
    )
    return GridConfig(seeds=(0, 1, 2), datasets=("fer2013",), methods=("light-cnn",), au=(False,), ablations=False, base=base,
                      resources=Resources(cpus=2, gpus=0.25), max_failures=2)
