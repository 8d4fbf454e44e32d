"""``fang2017`` and ``fang2017-identity``: paper 003 (Fang, J. Big Data 2017), Tiny VGG on RaFD.

What the paper states ("Data collection and preprocessing", "Training of the networks",
Table 2) and its released code adds (``xingfang912/Understanding-deep-learning``):

- data: RaFD without the 0- and 180-degree cameras (angles 45, 90, 135), the 8 expressions;
  faces extracted from the 681x1024 portraits (here: cropped by their landmarks) and resized
  to 224 x 224 colour images; pixel values / 256, no mean subtraction (``normalize: none``);
- splits: random, not subject-wise: for expressions 101 test images per (angle, expression),
  2,400 train / 2,424 test (``split=per-class``); for identities 12 test images per (angle,
  subject), 2,412 / 2,412 over 67 subjects (``split=per-identity``), seeded as released
  (22345). The released code keeps the epoch with the best *test* accuracy; fer-orch selects
  on a validation split carved from train (10 %, stratified by expression / subject);
- network: ``tiny-vgg``, Glorot initialisation, no dropout;
- training: plain SGD (no momentum, no weight decay), learning rate 0.01, mini-batch 12,
  100 epochs, no augmentation ("future work" in the paper);
- ``fang2017-identity`` trains the same network for the 67 identities (``target: identity``),
  which the backtracking comparison of paper 003 needs; AU loss off in both.
"""

from __future__ import annotations

from fer_models.config import DataConfig, TrainConfig
from orchestrator.config import GridConfig, Resources
from orchestrator.registry import PRESETS

RAFD_003 = {"classes": 8, "angles": "045,090,135"}


def _fang(target: str, split: str) -> GridConfig:
    base = TrainConfig(
        method="tiny-vgg",
        au=False,
        target=target,
        epochs=100,
        batch_size=12,
        optimizer="sgd",
        lr=0.01,
        momentum=0.0,
        weight_decay=0.0,
        scheduler="none",
        method_kwargs={"init": "glorot", "dropout": 0.0},
        data=DataConfig(image_size=224, normalize="none", color="rgb", augment=(),
                        options={**RAFD_003, "split": split}),
    )
    return GridConfig(seeds=(0, 1, 2), datasets=("rafd",), methods=("tiny-vgg",), au=(False,), ablations=False, base=base,
                      resources=Resources(cpus=2, gpus=0.5), max_failures=2)


@PRESETS.register("fang2017", paper="003")
def fang2017() -> GridConfig:
    """Paper 003: Tiny VGG, 8 RaFD expressions, 224 px RGB, paper's random split, SGD 0.01, batch 12, 100 epochs."""
    return _fang("expression", "per-class")


@PRESETS.register("fang2017-identity", paper="003")
def fang2017_identity() -> GridConfig:
    """Paper 003: the same Tiny VGG trained for the 67 RaFD identities (target identity)."""
    return _fang("identity", "per-identity")
