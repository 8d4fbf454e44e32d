"""Base of the seed networks (papers 001, 003, 004): full classifiers with named layers.

They take no backbone; ``features`` maps paper 002's layers 1..5 onto their conv stages
(each subclass documents which), so the AU loss and the metrics work for them too; M[k]
is Grad-CAM at layer 5 (their last conv block), through pytorch-grad-cam. Inputs are RGB
(the project's images); the papers used grayscale, a 3-channel first conv is the only
change that implies.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.methods._base import FERModel, GradCAMMixin, ModelOutput


class SeedNet(GradCAMMixin, FERModel):
    # paper layer -> name of the module (in self.layers) whose output is that layer
    layer_names: dict[int, str] = {}

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.layers = nn.Sequential()  # filled by subclasses: the conv part, in order
        self.classifier = nn.Sequential()  # flatten/pool + dense part

    def cam_layer(self) -> nn.Module:
        return self.layers.get_submodule(self.layer_names[5])

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        want = {v: k for k, v in self.layer_names.items()}
        feats: dict[int, torch.Tensor] = {}
        for name, mod in self.layers.named_children():
            x = mod(x)
            if name in want:
                feats[want[name]] = x
        return ModelOutput(logits=self.classifier(x), features=feats, cams=None)

    def tap_layers(self) -> dict[str, nn.Module]:
        taps = dict(self.layers.named_children())
        taps.update(dict(self.classifier.named_children()))
        return taps
