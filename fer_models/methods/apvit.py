"""APViT (Xue et al., IEEE TAC 2022): vision transformer with attentive pooling.

Departures, documented: APViT feeds IR-50 CNN features to a ViT; here the ViT's own patch
embeddings play that role (one encoder, as the other transformer method). Attentive patch
pooling (APP) keeps the k patches with the highest channel-mean activation (k = 160 of
DeiT-S's 196 at 224 px; scaled to the token count of small inputs: k = ceil(160/196 * N)).
Attentive token pooling (ATP) keeps, after each of the blocks of layers 1..4, the
ceil(r * n) patch tokens (r = 0.9) that the class token attends to most. The class token
(after the final norm) is classified by a linear layer.

APViT has no CAM (paper 002, Table 1 reports none); its map M[k] is the class-agnostic
class-token attention of the last block, scattered back to the grid (pooled-out tokens
0). Layer features are the kept tokens scattered back to the (h, w) grid with zeros
elsewhere, so the AU loss reaches them as for any method.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_models.backbones.vit import ViTBackbone
from fer_models.methods._base import FERModel, ModelOutput, minmax
from fer_models.registry import METHODS


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))


@METHODS.register("apvit", backbone="vit", family="Transformer-based", table1=11)
class APViT(FERModel):
    """APViT (Xue et al. 2022): attentive patch (k=160) and token (r=0.9) pooling on a ViT."""

    name = "apvit"
    map_source = "attention"

    def __init__(self, backbone: ViTBackbone, num_classes: int, image_size: int = 48, k: int = 160, r: float = 0.9):
        super().__init__(num_classes)
        self.backbone = backbone
        self.k, self.r = k, r
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def _scatter(self, patches: torch.Tensor, idx: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, _, D = patches.shape
        full = patches.new_zeros(B, hw[0] * hw[1], D)
        full = full.scatter(1, idx.unsqueeze(-1).expand(-1, -1, D), patches)
        return full.transpose(1, 2).reshape(B, D, *hw)

    def _run(self, x: torch.Tensor, want_attention: bool = False):
        bb = self.backbone
        t, hw = bb.embed(x)
        p = bb.num_prefix_tokens
        prefix, patches = t[:, :p], t[:, p:]
        n = patches.shape[1]
        # APP: top-k patches by channel-mean activation (k scaled from 160/196)
        k = min(n, max(1, math.ceil(self.k / 196 * n)))
        idx = patches.mean(-1).topk(k, dim=1).indices
        patches = _gather(patches, idx)
        idx_all = idx
        t = torch.cat([prefix, patches], dim=1)
        wanted = {b: l for l, b in bb.layer_blocks.items()}
        last = len(bb.blocks) - 1
        feats: dict[int, torch.Tensor] = {}
        att_last = None
        for i, blk in enumerate(bb.blocks):
            need_att = (i in wanted and wanted[i] < 5) or (i == last and want_attention)
            att = bb.attention_weights(blk, t)[:, :, 0, p:].mean(1) if need_att else None
            t = blk(t)
            if i == last:
                t = bb.net.norm(t)
                att_last = att
            if i in wanted:
                feats[wanted[i]] = self._scatter(t[:, p:], idx_all, hw)
                if wanted[i] < 5 and att is not None:
                    # ATP: keep the r most attended patch tokens
                    n_cur = t.shape[1] - p
                    keep = min(n_cur, max(1, math.ceil(self.r * n_cur)))
                    sel = att.topk(keep, dim=1).indices
                    t = torch.cat([t[:, :p], _gather(t[:, p:], sel)], dim=1)
                    idx_all = idx_all.gather(1, sel)
        logits = self.head(t[:, 0])
        return logits, feats, att_last, idx_all, hw

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        logits, feats, _, _, _ = self._run(x)
        return ModelOutput(logits=logits, features=feats, cams=None)

    def class_maps(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, _, att, idx, hw = self._run(x, want_attention=True)
            full = att.new_zeros(x.shape[0], hw[0] * hw[1]).scatter(1, idx, att)
            return minmax(full.reshape(x.shape[0], *hw).float())
