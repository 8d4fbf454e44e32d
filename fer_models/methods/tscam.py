"""TS-CAM (Gao et al., ICCV 2021): token semantic coupled attention maps on a DeiT-S encoder.

The last block's patch tokens (after the final LayerNorm) are reshaped to a map and a 3x3
conv turns them into K semantic maps; GAP gives the logits (TS-CAM classifies from these
maps, not from the class token). At inference, M[k] = semantic map k (x) the class token's
attention to the patches, averaged over heads and blocks, then min-max normalised.
The attention weights are recomputed from each block's qkv projection (timm's fused
attention does not expose them), without hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones.vit import ViTBackbone
from fer_models.methods._base import FERModel, ModelOutput, minmax
from fer_models.registry import METHODS


def cls_attention(backbone: ViTBackbone, x: torch.Tensor) -> torch.Tensor:
    """Class-token -> patch attention averaged over heads and blocks, (B, h, w)."""
    t, hw = backbone.embed(x)
    p = backbone.num_prefix_tokens
    acc = 0.0
    for blk in backbone.blocks:
        a = backbone.attention_weights(blk, t)  # (B, H, N, N)
        acc = acc + a[:, :, 0, p:].mean(1)
        t = blk(t)
    acc = acc / len(backbone.blocks)
    return acc.reshape(x.shape[0], *hw)


@METHODS.register("tscam", backbone="vit", family="Transformer-based", table1=10)
class TSCAM(FERModel):
    """TS-CAM (Gao et al. 2021): semantic maps from patch tokens x class-token attention."""

    name = "tscam"

    map_source = "cam-x-attention"  # semantic map x class-token attention (class_maps)

    def __init__(self, backbone: ViTBackbone, num_classes: int, image_size: int = 48):
        super().__init__(num_classes)
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.embed_dim, num_classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        feats = self.backbone(x)
        sem = self.head(feats[5])
        return ModelOutput(logits=sem.mean(dim=(2, 3)), features=feats, cams=sem)

    def class_maps(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sem = self(x).cams
            att = cls_attention(self.backbone, x)
            idx = torch.arange(x.shape[0], device=x.device)
            return minmax((sem[idx, target.to(x.device)] * att).float())
