"""Lightweight CNN of paper 004 (Devanand T et al., Table 1a / Fig. 1; Sharma 2020's Kaggle net).

3 cascades of [conv -> ELU -> batch norm] x 2 -> max-pool 2 -> dropout (5x5 64, 3x3 128,
3x3 256; dropout 0.4, 0.4, 0.5), flatten (9216 = 256 x 6 x 6 at 48 px: 'same' padding),
dense 128 -> ELU -> batch norm -> dropout 0.6 -> output K. Layer names are the paper's
Keras names (``batchnorm_1``, ``flatten``, ``dropout_4``...), which paper 004's probing
uses. Paper layers: 1 = batchnorm_1, 2 = dropout_1, 3 = dropout_2, 4 = batchnorm_5,
5 = batchnorm_6 (last conv block before pooling: Grad-CAM target).
Input: ``in_chans`` 1 (paper 004's 48 px grey FER2013 faces) or 3; initialisation ``init``
"he_normal" (the Keras net's; :mod:`fer_models.methods._seed`); ``dropout``: the four dropout
rates (default the paper's 0.4, 0.4, 0.5, 0.6; one number sets all four).
"""

from __future__ import annotations

from torch import nn

from fer_models.errors import ConfigError
from fer_models.methods._seed import SeedNet
from fer_models.registry import METHODS

DROPOUT = (0.4, 0.4, 0.5, 0.6)  # paper 004, Table 1a

@METHODS.register("light-cnn", backbone=None, family="seed (paper 004)")
class LightCNN(SeedNet):
    """Lightweight CNN of paper 004: 3x[2 conv ELU+BN, maxpool, dropout], dense 128, dropout 0.6."""

    name = "light-cnn"
    layer_names = {1: "batchnorm_1", 2: "dropout_1", 3: "dropout_2", 4: "batchnorm_5", 5: "batchnorm_6"}

    def __init__(self, backbone: None, num_classes: int, image_size: int = 48,
                 dropout: float | tuple[float, ...] = DROPOUT, in_chans: int = 3, init: str = "he_normal"):
        super().__init__(num_classes, in_chans)
        rates = tuple(dropout) if isinstance(dropout, (tuple, list)) else (float(dropout),) * 4
        if len(rates) != 4:
            raise ConfigError(f"light-cnn: dropout takes one rate or four (blocks 1-3, dense), got {dropout}")
        self.layers = nn.Sequential()
        spec = [(64, 5, rates[0]), (128, 3, rates[1]), (256, 3, rates[2])]
        cin, n = in_chans, 1
        for blk, (c, k, p) in enumerate(spec, start=1):
            for _ in range(2):
                self.layers.add_module(f"conv2d_{n}", nn.Conv2d(cin, c, k, padding=k // 2))
                self.layers.add_module(f"elu_{n}", nn.ELU())
                self.layers.add_module(f"batchnorm_{n}", nn.BatchNorm2d(c))
                cin, n = c, n + 1
            self.layers.add_module(f"maxpool2d_{blk}", nn.MaxPool2d(2))
            self.layers.add_module(f"dropout_{blk}", nn.Dropout(p))
        side = image_size // 8
        self.classifier = nn.Sequential()
        self.classifier.add_module("flatten", nn.Flatten())
        self.classifier.add_module("dense_1", nn.Linear(256 * side * side, 128))
        self.classifier.add_module("elu_dense", nn.ELU())
        self.classifier.add_module("batchnorm_7", nn.BatchNorm1d(128))
        self.classifier.add_module("dropout_4", nn.Dropout(rates[3]))
        self.classifier.add_module("out_layer", nn.Linear(128, num_classes))
        self.init_weights(init)
