"""ADL (Choe & Shim, CVPR 2019): attention-based dropout layer, on a CAM classifier.

While training, after the stages of ``adl_layers`` (paper layers 4 and 5 = the outputs of
ResNet's layer3 and layer4, the high-level stages Choe & Shim use), the self-attention
(channel mean) gives either a drop mask (0 where attention > ``threshold`` x max) or an
importance map (sigmoid of attention), the drop mask chosen with probability
``drop_rate``; features are multiplied by it. Defaults drop_rate 0.4, threshold 0.1 as the
issue fixes (configurable). ADL has no parameters, so the backbone's pretrained weights
load strictly (paper 002's code shifted block indices and loaded them with strict=False),
and it is applied at the stage outputs, not inside a wrongly indexed bottleneck. At
inference ADL is the identity. ``features`` (for the AU loss and the metrics) are the
stage outputs before ADL.
"""

from __future__ import annotations

import torch

from fer_models.backbones import Backbone
from fer_models.methods._base import ModelOutput
from fer_models.methods.cam import CAMHead
from fer_models.registry import METHODS


def adl(f: torch.Tensor, drop_rate: float, threshold: float) -> torch.Tensor:
    att = f.mean(dim=1, keepdim=True)
    if float(torch.rand(())) < drop_rate:
        peak = att.amax(dim=(2, 3), keepdim=True)
        mask = (att <= threshold * peak).to(f.dtype)
    else:
        mask = torch.sigmoid(att)
    return f * mask


@METHODS.register("adl", backbone="cnn", family="CNN-based", table1=7)
class ADL(CAMHead):
    """ADL (Choe & Shim 2019): attention-based dropout (drop 0.4, threshold 0.1) on layers 4, 5."""

    name = "adl"

    def __init__(
        self, backbone: Backbone, num_classes: int, image_size: int = 48,
        drop_rate: float = 0.4, threshold: float = 0.1, adl_layers: tuple[int, ...] = (4, 5),
    ):
        super().__init__(backbone, num_classes)
        self.drop_rate, self.threshold = drop_rate, threshold
        self.adl_layers = tuple(int(l) for l in adl_layers)

    def _transform(self, layer: int, f: torch.Tensor) -> torch.Tensor:
        if self.training and layer in self.adl_layers:
            return adl(f, self.drop_rate, self.threshold)
        return f

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x, transform=self._transform)
        cams = self.head(self._transform(5, feats[5]))
        return ModelOutput(logits=cams.mean(dim=(2, 3)), features=feats, cams=cams)
