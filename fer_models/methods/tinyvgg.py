"""Tiny VGG of paper 003 (Fang et al., Sec. "The convolutional network", Table 1).

3 x [conv 3x3 32 (pad 1) -> ReLU -> conv 3x3 32 -> ReLU -> max-pool 2/2], then FC 1024,
512, 256 with ReLU and FC K (softmax in the loss). Paper 003 used 224 px RGB faces; the
flatten size follows ``image_size`` (32 x (S/8)^2). No dropout (the paper uses none; the
``dropout`` option adds it before each hidden FC layer). Initialisation ``init`` "glorot"
(paper 003; :mod:`fer_models.methods._seed`); ``in_chans`` 3 (or 1 for grey input).
Paper layers: 1 = relu1_1, 2 = pool1, 3 = pool2, 4 = relu3_1, 5 = relu3_2 (before pool3,
the last conv output: Grad-CAM target).
"""

from __future__ import annotations

from torch import nn

from fer_models.methods._seed import SeedNet
from fer_models.registry import METHODS


@METHODS.register("tiny-vgg", backbone=None, family="seed (paper 003)")
class TinyVGG(SeedNet):
    """Tiny VGG of paper 003: 3x[conv3x3-32, conv3x3-32, maxpool], FC 1024/512/256."""

    name = "tiny-vgg"
    layer_names = {1: "relu1_1", 2: "pool1", 3: "pool2", 4: "relu3_1", 5: "relu3_2"}

    def __init__(self, backbone: None, num_classes: int, image_size: int = 48, dropout: float = 0.0,
                 in_chans: int = 3, init: str = "glorot"):
        super().__init__(num_classes, in_chans)
        self.layers = nn.Sequential()
        cin = in_chans
        for b in (1, 2, 3):
            for j in (1, 2):
                self.layers.add_module(f"conv{b}_{j}", nn.Conv2d(cin, 32, 3, padding=1))
                self.layers.add_module(f"relu{b}_{j}", nn.ReLU())
                cin = 32
            self.layers.add_module(f"pool{b}", nn.MaxPool2d(2, 2))
        side = image_size // 8
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        dims = [32 * side * side, 1024, 512, 256]
        for i in range(3):
            if dropout > 0:
                self.classifier.add_module(f"dropout_fc{i + 1}", nn.Dropout(dropout))
            self.classifier.add_module(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1]))
            self.classifier.add_module(f"relu_fc{i + 1}", nn.ReLU())
        self.classifier.add_module("fc4", nn.Linear(256, num_classes))
        self.init_weights(init)
