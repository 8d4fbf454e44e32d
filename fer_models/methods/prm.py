"""PRM (Zhou et al., CVPR 2018): peak response maps via peak stimulation.

A 1x1 conv gives class response maps; the class score is the mean of the map's local peaks
(maxima of a 3x3 window that also exceed the map's median, the PRM peak finder's median
filter), so the gradient flows only through the peaks. The peak mask is not differentiated.

Option ``pooling``: ``"peaks"`` (default, the above) or ``"maxpool"``, paper 002's released
PRM (``dlib/poolings/core.py``): a 3x3 max-pool of stride 1 (no padding) over the response
maps, then their global average, with no peak finding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_models.backbones import Backbone
from fer_models.errors import ConfigError
from fer_models.methods._base import FERModel, ModelOutput
from fer_models.registry import METHODS


def peak_stimulation(crm: torch.Tensor, window: int = 3) -> torch.Tensor:
    """(B, K, h, w) -> (B, K): mean response over the local peaks above the median."""
    with torch.no_grad():
        local_max = F.max_pool2d(crm, window, stride=1, padding=window // 2)
        med = crm.flatten(2).median(dim=-1).values[..., None, None]
        mask = ((crm >= local_max) & (crm >= med)).to(crm.dtype)
    return (crm * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1.0)


@METHODS.register("prm", backbone="cnn", family="CNN-based", table1=6)
class PRM(FERModel):
    """PRM (Zhou et al. 2018): class response maps scored by peak stimulation."""

    name = "prm"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48, window: int = 3,
                 pooling: str = "peaks"):
        super().__init__(num_classes)
        if pooling not in ("peaks", "maxpool"):
            raise ConfigError(f"PRM's pooling is 'peaks' or 'maxpool', got '{pooling}'")
        self.backbone = backbone
        self.window, self.pooling = window, pooling
        self.head = nn.Conv2d(backbone.channels[5], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        crm = self.head(feats[5])
        if self.pooling == "maxpool":
            w = min(self.window, *crm.shape[-2:])
            logits = F.max_pool2d(crm, w, stride=1).mean(dim=(2, 3))
        else:
            logits = peak_stimulation(crm, self.window)
        return ModelOutput(logits=logits, features=feats, cams=crm)
