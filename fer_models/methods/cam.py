"""CAM (Zhou et al., CVPR 2016): layer-5 features -> 1x1 conv to K class maps -> global average pool.

A 1x1 conv followed by GAP equals GAP followed by the usual linear classifier; keeping the
conv makes the class activation maps M[k] a by-product of the forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones import Backbone
from fer_models.methods._base import FERModel, ModelOutput
from fer_models.registry import METHODS


class CAMHead(FERModel):
    """Shared body of CAM-style methods: backbone + 1x1 conv class maps + GAP logits."""

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__(num_classes)
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.channels[5], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        cams = self.head(feats[5])
        return ModelOutput(logits=cams.mean(dim=(2, 3)), features=feats, cams=cams)


@METHODS.register("cam", backbone="cnn", family="CNN-based", table1=1)
class CAM(CAMHead):
    """CAM (Zhou et al. 2016): class maps from a 1x1 conv on layer 5, GAP logits."""

    name = "cam"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48):
        super().__init__(backbone, num_classes)
