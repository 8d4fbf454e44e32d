"""ACoL (Zhang et al., CVPR 2018): adversarial complementary learning.

Two classifier branches (3x3 conv + ReLU + 1x1 conv to K maps, GAP) share the layer-5
features. Branch A's map of the true class (the prediction when no label is given) is
min-max normalised; the feature positions where it reaches ``threshold`` (default 0.1, the
value the issue fixes; configurable) are erased before branch B, which must then find the
complementary regions. Loss = CE(A) + CE(B); the class map is the element-wise max of the
two normalised maps, as in ACoL; the reported logits are branch A's.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones import Backbone
from fer_models.methods._base import FERModel, ModelOutput, minmax
from fer_models.registry import METHODS


def _branch(c: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, k, 1))


@METHODS.register("acol", backbone="cnn", family="CNN-based", table1=5)
class ACoL(FERModel):
    """ACoL (Zhang et al. 2018): two branches, B sees A's top regions erased (threshold 0.1)."""

    name = "acol"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48, threshold: float = 0.1):
        super().__init__(num_classes)
        self.backbone = backbone
        self.threshold = threshold
        c = backbone.channels[5]
        self.head = _branch(c, num_classes)
        self.head_b = _branch(c, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        f = feats[5]
        cams_a = self.head(f)
        logits_a = cams_a.mean(dim=(2, 3))
        target = labels if labels is not None else logits_a.argmax(1)
        idx = torch.arange(f.shape[0], device=f.device)
        att = minmax(cams_a[idx, target].detach())  # (B, h, w)
        keep = (att < self.threshold).to(f.dtype).unsqueeze(1)
        cams_b = self.head_b(f * keep)
        logits_b = cams_b.mean(dim=(2, 3))
        cams = torch.maximum(minmax(cams_a), minmax(cams_b))
        return ModelOutput(logits=logits_a, features=feats, cams=cams, aux={"extra_logits": [logits_b]})

    def tap_layers(self) -> dict[str, nn.Module]:
        return {**super().tap_layers(), "head_b": self.head_b}
