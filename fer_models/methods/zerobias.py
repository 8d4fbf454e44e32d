"""Zero-bias CNN of paper 001 (Khorrami et al., ICCVW 2015, Sec. 3.1, Fig. 2).

conv 5x5 64 -> ReLU -> max-pool 2 -> conv 5x5 128 -> ReLU -> max-pool 2 -> conv 5x5 256 ->
ReLU -> quadrant pooling -> FC 300 -> ReLU -> FC K; convolutions without bias; dropout 0.5
on the FC layer (paper 001's "+D"; ``dropout=0`` turns it off, the "+A"-only and plain rows
of its Tables 1-2). Quadrant pooling (Coates et al.) pools each of the four quadrants of the
conv3 map (256 x 4 features); the paper does not say how, its released code
(``ck_plus/model.py``) max-pools 12x12 windows of the 24x24 conv3 map, so ``quadrant_pool``
defaults to "max" ("avg": Coates et al.'s average). 'same' padding keeps the quadrants
meaningful on small inputs. Input: ``in_chans`` 1 (paper 001's grey 96 px faces) or 3;
initialisation ``init`` "khorrami" (paper 001, see :mod:`fer_models.methods._seed`).
Paper layers: 1 = conv1 (after ReLU), 2 = pool1, 3 = relu2, 4 = pool2, 5 = relu3.
"""

from __future__ import annotations

from torch import nn

from fer_models.errors import ConfigError
from fer_models.methods._seed import SeedNet
from fer_models.registry import METHODS


@METHODS.register("zerobias-cnn", backbone=None, family="seed (paper 001)")
class ZeroBiasCNN(SeedNet):
    """Zero-bias CNN of paper 001: 3 conv 64/128/256 5x5 without bias, quadrant pooling, FC300."""

    name = "zerobias-cnn"
    layer_names = {1: "relu1", 2: "pool1", 3: "relu2", 4: "pool2", 5: "relu3"}
    hidden_fc = "fc1"

    def __init__(self, backbone: None, num_classes: int, image_size: int = 48, dropout: float = 0.5,
                 in_chans: int = 3, init: str = "khorrami", quadrant_pool: str = "max"):
        super().__init__(num_classes, in_chans)
        if quadrant_pool not in ("max", "avg"):
            raise ConfigError(f"quadrant_pool must be max or avg, got '{quadrant_pool}'")
        self.layers = nn.Sequential()
        self.layers.add_module("conv1", nn.Conv2d(in_chans, 64, 5, padding=2, bias=False))
        self.layers.add_module("relu1", nn.ReLU())
        self.layers.add_module("pool1", nn.MaxPool2d(2))
        self.layers.add_module("conv2", nn.Conv2d(64, 128, 5, padding=2, bias=False))
        self.layers.add_module("relu2", nn.ReLU())
        self.layers.add_module("pool2", nn.MaxPool2d(2))
        self.layers.add_module("conv3", nn.Conv2d(128, 256, 5, padding=2, bias=False))
        self.layers.add_module("relu3", nn.ReLU())
        self.classifier = nn.Sequential()
        pool = nn.AdaptiveMaxPool2d(2) if quadrant_pool == "max" else nn.AdaptiveAvgPool2d(2)
        self.classifier.add_module("quadrant_pool", pool)
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("fc1", nn.Linear(256 * 4, 300))
        self.classifier.add_module("relu_fc1", nn.ReLU())
        self.classifier.add_module("dropout", nn.Dropout(dropout))
        self.classifier.add_module("fc2", nn.Linear(300, num_classes))
        self.init_weights(init)
