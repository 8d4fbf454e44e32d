"""ACoL (Zhang et al., CVPR 2018): adversarial complementary learning.

Two classifier branches (convolutions to K class maps, then GAP) share the layer-5 features.
Branch A's map of the erasing class is min-max normalised; the feature positions where it
reaches ``threshold`` (default 0.1, the released code's ``acol_drop_threshold``) are erased
before branch B, which must then find the complementary regions. Loss = CE(A) + CE(B); the
class map is the element-wise max of the two min-max normalised maps; the logits are A's.

Options (``method_kwargs``):

- ``hidden``: 0 (default) = each branch is 3x3 conv (C -> C) + ReLU + 1x1 conv (C -> K), the
  CPU preset's small head; N > 0 = paper 002's released head (``dlib/div_classifiers/parts/
  acol.py``): 3x3 conv (C -> N) + ReLU + 3x3 conv (N -> N) + ReLU + 1x1 conv (N -> K), with
  N = 1024 on ResNet50.
- ``eval_erase``: which class erases at evaluation. ``"prediction"`` (default: test labels
  are unknown at inference) or ``"label"``, as the released code, whose evaluation passes the
  true label to the model (``dlib/learning/inference_wsol.py``). Training always erases by
  the label.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones import Backbone
from fer_models.errors import ConfigError
from fer_models.methods._base import FERModel, ModelOutput, minmax
from fer_models.registry import METHODS


def _branch(c: int, k: int, hidden: int = 0) -> nn.Sequential:
    if hidden <= 0:
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, k, 1))
    return nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(hidden, k, 1))


@METHODS.register("acol", backbone="cnn", family="CNN-based", table1=5)
class ACoL(FERModel):
    """ACoL (Zhang et al. 2018): two branches, B sees A's top regions erased (threshold 0.1)."""

    name = "acol"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48, threshold: float = 0.1,
                 hidden: int = 0, eval_erase: str = "prediction"):
        super().__init__(num_classes)
        if eval_erase not in ("prediction", "label"):
            raise ConfigError(f"ACoL's eval_erase is 'prediction' or 'label', got '{eval_erase}'")
        self.backbone = backbone
        self.threshold, self.hidden, self.eval_erase = threshold, int(hidden), eval_erase
        c = backbone.channels[5]
        self.head = _branch(c, num_classes, self.hidden)
        self.head_b = _branch(c, num_classes, self.hidden)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        f = feats[5]
        cams_a = self.head(f)
        logits_a = cams_a.mean(dim=(2, 3))
        by_label = labels is not None and (self.training or self.eval_erase == "label")
        target = labels if by_label else logits_a.argmax(1)
        idx = torch.arange(f.shape[0], device=f.device)
        att = minmax(cams_a[idx, target].detach())  # (B, h, w)
        keep = (att < self.threshold).to(f.dtype).unsqueeze(1)
        cams_b = self.head_b(f * keep)
        logits_b = cams_b.mean(dim=(2, 3))
        cams = torch.maximum(minmax(cams_a), minmax(cams_b))
        return ModelOutput(logits=logits_a, features=feats, cams=cams, aux={"extra_logits": [logits_b]})

    def tap_layers(self) -> dict[str, nn.Module]:
        return {**super().tap_layers(), "head_b": self.head_b}
