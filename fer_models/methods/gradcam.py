"""Grad-CAM (Selvaraju et al., ICCV 2017): a plain classifier (backbone, GAP, linear); the maps are
computed post hoc at layer 5 by pytorch-grad-cam's ``GradCAM``.

:class:`GradCAMMethod` is also the template of the other gradient CAM methods (Grad-CAM++,
LayerCAM): a variant subclasses it and sets ``cam_class`` (see ``GradCAMMixin``).
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones._base import Backbone
from fer_models.methods._base import FERModel, GradCAMMixin, ModelOutput
from fer_models.registry import METHODS


class GAPClassifier(FERModel):
    """Backbone + global average pool + linear layer (the top-down methods' classifier)."""

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__(num_classes)
        self.backbone = backbone
        self.head = nn.Linear(backbone.channels[5], num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        return ModelOutput(logits=self.head(feats[5].mean(dim=(2, 3))), features=feats, cams=None)


@METHODS.register("gradcam", backbone="cnn", family="CNN-based", table1=3)
class GradCAMMethod(GradCAMMixin, GAPClassifier):
    """Grad-CAM (Selvaraju et al. 2017) at layer 5, via pytorch-grad-cam."""

    name = "gradcam"
    cam_class = "GradCAM"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48):
        super().__init__(backbone, num_classes)
