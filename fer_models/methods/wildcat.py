"""WILDCAT (Durand et al., CVPR 2017): multi-map transfer layer + class-wise pooling + spatial pooling.

Layer-5 features -> 1x1 conv to K x M modality maps (M = 5) -> class-wise average over
the modalities -> class maps; the class score is the mean of the k+ highest regions plus
alpha times the mean of the k- lowest regions (kmax = 0.5, kmin = 0.1 as fractions of
the h*w regions, alpha = 0.6, the original paper's values). Paper 002's released code
(``dlib/poolings/wildcat.py``) computed the kmin/alpha term with a non in-place ``add`` whose
result it discarded, so its scores are the mean of the k+ highest regions alone. Option
``kmin_term`` (default True) keeps the term; False reproduces the released scores. (The
released line meant ``(top + alpha * bottom) / 2``, as in WILDCAT's own code; we follow the
WILDCAT paper's Eq., without the halving, which only scales the logits.)
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones import Backbone
from fer_models.methods._base import FERModel, ModelOutput
from fer_models.registry import METHODS


def _count(k: float, n: int) -> int:
    """k < 1 is a fraction of the n regions (at least one), k >= 1 a number of regions."""
    return max(1, min(n, round(k * n))) if k < 1 else min(n, int(k))


def wildcat_pool(maps: torch.Tensor, kmax: float = 0.5, kmin: float = 0.1, alpha: float = 0.6,
                 kmin_term: bool = True) -> torch.Tensor:
    """(B, K, h, w) -> (B, K): mean of the top-kmax regions + alpha * mean of the bottom-kmin
    regions (the second term only with ``kmin_term``)."""
    flat = maps.flatten(2)
    n = flat.shape[-1]
    srt, _ = flat.sort(dim=-1, descending=True)
    score = srt[..., : _count(kmax, n)].mean(-1)
    if kmin_term and kmin > 0 and alpha != 0:
        score = score + alpha * srt[..., n - _count(kmin, n) :].mean(-1)
    return score


@METHODS.register("wildcat", backbone="cnn", family="CNN-based", table1=2)
class WILDCAT(FERModel):
    """WILDCAT (Durand et al. 2017): 5 modalities/class, kmax 0.5 + 0.6 * kmin 0.1 pooling."""

    name = "wildcat"

    def __init__(
        self, backbone: Backbone, num_classes: int, image_size: int = 48,
        kmax: float = 0.5, kmin: float = 0.1, alpha: float = 0.6, modalities: int = 5, kmin_term: bool = True,
    ):
        super().__init__(num_classes)
        self.backbone = backbone
        self.kmax, self.kmin, self.alpha, self.modalities = kmax, kmin, alpha, modalities
        self.kmin_term = bool(kmin_term)
        self.head = nn.Conv2d(backbone.channels[5], num_classes * modalities, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        m = self.head(feats[5])
        B, _, h, w = m.shape
        cams = m.view(B, self.num_classes, self.modalities, h, w).mean(2)
        logits = wildcat_pool(cams, self.kmax, self.kmin, self.alpha, self.kmin_term)
        return ModelOutput(logits=logits, features=feats, cams=cams)
