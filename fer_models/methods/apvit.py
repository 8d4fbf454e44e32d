"""APViT (Xue et al., IEEE TAC 2022): a ViT on IR-50 features with attentive patch and token pooling.

As paper 002's released code builds it (``dlib/diverse_models/apvit.py``,
``apvit_vit_vit_siam_merge.py``, ``apvit_backbones_modules_vit_pooling.py``), on the hybrid
encoder of ``fer_models.backbones.irvit`` (IR-50 stages 1-3, then a ViT):

- the IR map (layer 5; 256 x 14 x 14 for a 112 px face) is projected to tokens by a 1x1 conv;
- attentive patch pooling (APP): each token's score is the sum of the absolute values of its
  projected features (APViT's ``SUM_ABS_1``), computed before the position embedding is
  added; the ``k`` best tokens are kept in grid order (k = 160 of 196; on another grid,
  ``ceil(160 / 196 * N)``);
- a class token joins, the blocks run; in the second half of the blocks (4 of 8), attentive
  token pooling (ATP) keeps, after each block's attention and before its MLP, the
  ``int(r * n)`` patch tokens (r = 0.9) that the class token's pre-softmax attention logits,
  summed over the heads, rate highest (APViT's ``SUM``), again in grid order;
- the class token after the final LayerNorm goes through a linear classifier.

APViT has no CAM: paper 002's Table 1 leaves its CAM-COS blank (``has_cam = False``, the
metrics report NaN). Its map M (``class_maps``, for the analysis jobs) is the APP score map,
class-agnostic, as the released code's ``cams``. Layer 5 (the IR map the ViT reads) is the
layer whose attention the AU loss aligns and ATT-COS measures, as in the released code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_models.backbones.irvit import IRViT
from fer_models.methods._base import FERModel, ModelOutput, minmax
from fer_models.registry import METHODS


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))


def keep_count(k: int, n: int) -> int:
    """APP's k of 196 scaled to an ``n``-token grid (exactly ``k`` on 14 x 14)."""
    return min(n, max(1, math.ceil(k * n / 196)))


@METHODS.register("apvit", backbone="hybrid", family="Transformer-based", table1=11)
class APViT(FERModel):
    """APViT (Xue et al. 2022): IR-50 map -> ViT with attentive patch (k=160) and token (r=0.9) pooling."""

    name = "apvit"
    map_source = "attention"
    has_cam = False

    def __init__(self, backbone: IRViT, num_classes: int, image_size: int = 112, k: int = 160, r: float = 0.9):
        super().__init__(num_classes)
        self.backbone = backbone
        self.k, self.r = k, r
        depth = len(backbone.blocks)
        self.keep_rates = [1.0] * (depth // 2) + [float(r)] * (depth - depth // 2)
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def new_modules(self) -> list[nn.Module]:
        return [self.head, self.backbone.proj]  # the projection is in no released checkpoint

    def _block(self, blk: nn.Module, x: torch.Tensor, idx: torch.Tensor, rate: float):
        """One block, with ATP between its attention and its MLP (the released PoolingBlock)."""
        a = blk.attn
        h = blk.norm1(x)
        B, N, C = h.shape
        qkv = a.qkv(h).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        logits = (q * a.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
        att = a.attn_drop(logits.softmax(dim=-1))
        o = (att @ v).transpose(1, 2).reshape(B, N, -1)
        o = a.proj_drop(a.proj(a.norm(o)))
        x = x + blk.drop_path1(blk.ls1(o))
        keep = max(int((N - 1) * rate), 1)
        if keep < N - 1:
            score = logits[:, :, 0, 1:].sum(1)  # class-token row, summed over heads, pre-softmax
            sel = score.topk(keep, dim=1).indices.sort(dim=1).values
            x = torch.cat([x[:, :1], _gather(x[:, 1:], sel)], dim=1)
            idx = idx.gather(1, sel)
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return x, idx

    def _run(self, x: torch.Tensor):
        bb = self.backbone
        feats = bb(x)
        t = bb.proj(feats[5])  # (B, D, h, w)
        B, D, h, w = t.shape
        app = t.abs().sum(1)  # (B, h, w): APP scores
        tok = t.flatten(2).transpose(1, 2) + bb.pos_embed((h, w))
        idx = app.flatten(1).topk(keep_count(self.k, h * w), dim=1).indices.sort(dim=1).values
        tok = _gather(tok, idx)
        cls = bb.cls_token.expand(B, -1, -1) + bb.cls_pos_embed
        z = torch.cat([cls, tok], dim=1)
        kept = [idx.shape[1]]
        for blk, rate in zip(bb.blocks, self.keep_rates):
            z, idx = self._block(blk, z, idx, rate)
            kept.append(idx.shape[1])
        z = bb.norm(z)
        return self.head(z[:, 0]), feats, app, kept

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        logits, feats, app, kept = self._run(x)
        return ModelOutput(logits=logits, features=feats, cams=None, aux={"app_map": app, "kept_tokens": kept})

    def class_maps(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The APP score map (class-agnostic; ``target`` is ignored), min-max normalised."""
        with torch.no_grad():
            _, _, app, _ = self._run(x)
        return minmax(app.float())

    def tap_layers(self) -> dict[str, nn.Module]:
        return {**super().tap_layers(), "proj": self.backbone.proj}
