"""Vision transformers through timm: patch tokens reshaped to spatial maps for layers 1..5.

Paper 002 uses DeiT-S (``deit_small_patch16_224``) for TS-CAM and APViT. A transformer has
no stages, so we map the paper's layers onto blocks: layer 5 = the last block (after the
final LayerNorm, as TS-CAM reads it), layers 1..4 = blocks ``round(depth*l/5) - 1``
(evenly spaced; blocks 1, 4, 6, 9 of DeiT-S's 12; blocks 0..3 of the 5-block tiny ViT).
Each layer's map is its patch tokens (class token dropped) reshaped to (B, D, h, w).

``vit-tiny-small`` is the CPU-preset transformer: patch 8, width 64, depth 5, 2 heads,
timm's ``VisionTransformer`` with ``dynamic_img_size`` (32-64 px inputs give 4x4-8x8 maps).
``vit-tiny-convstem`` is the same transformer whose 8x8 patch projection is replaced by a
convolutional stem of three stride-2 3x3 convolutions (BN, ReLU) and a 1x1 projection
(Xiao et al., "Early convolutions help transformers see better", NeurIPS 2021): the same
4x4 token grid at 32 px, but a ViT trained from scratch on a few thousand faces learns in a
CPU budget (the cpu preset's TS-CAM; ``orchestrator/presets/cpu.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones._base import Backbone, StageTransform, create_timm, load_local_weights, local_weights_only
from fer_models.registry import BACKBONES


class ViTBackbone(Backbone):
    family = "vit"

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.name = name
        self.net = net
        depth = len(net.blocks)
        self.layer_blocks = {l: max(0, round(depth * l / 5) - 1) for l in range(1, 6)}
        self.layer_blocks[5] = depth - 1
        self.num_prefix_tokens = int(net.num_prefix_tokens)
        self.embed_dim = int(net.embed_dim)
        self.channels = {l: self.embed_dim for l in range(1, 6)}

    @property
    def blocks(self) -> nn.ModuleList:
        return self.net.blocks

    def stage(self, layer: int) -> nn.Module:
        return self.net.blocks[self.layer_blocks[layer]]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding + class token + position embedding -> (tokens (B, P+N, D), grid (h, w))."""
        n = self.net
        t = n.patch_embed(x)
        if t.ndim == 4:  # dynamic_img_size: (B, h, w, D)
            hw = (int(t.shape[1]), int(t.shape[2]))
        else:
            g = n.patch_embed.grid_size
            hw = (int(g[0]), int(g[1]))
        t = n._pos_embed(t)
        t = n.patch_drop(t)
        t = n.norm_pre(t)
        return t, hw

    def to_map(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        p = tokens[:, self.num_prefix_tokens :, :]
        return p.transpose(1, 2).reshape(p.shape[0], p.shape[2], hw[0], hw[1])

    def forward(self, x: torch.Tensor, transform: StageTransform = None) -> dict[int, torch.Tensor]:
        feats, _ = self.forward_tokens(x)
        return feats

    def forward_tokens(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Layer maps and the final (normed) token sequence."""
        t, hw = self.embed(x)
        wanted = {b: l for l, b in self.layer_blocks.items()}
        out: dict[int, torch.Tensor] = {}
        last = len(self.net.blocks) - 1
        for i, blk in enumerate(self.net.blocks):
            t = blk(t)
            if i == last:
                t = self.net.norm(t)
            if i in wanted:
                out[wanted[i]] = self.to_map(t, hw)
        return out, t

    @staticmethod
    def attention_weights(block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Softmax attention (B, heads, N, N) of ``block`` on its input tokens.

        timm's fused attention never materialises the weights, so we recompute q, k from the
        block's own qkv projection (no hook, no change to the block).
        """
        a = block.attn
        h = block.norm1(tokens)
        B, N, _ = h.shape
        qkv = a.qkv(h).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k = a.q_norm(qkv[0]), a.k_norm(qkv[1])
        return ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@BACKBONES.register("deit-small", family="vit", hybrid="ir50-vit", weights="fb_in1k")
def deit_small(pretrained: str | bool = False, image_size: int = 224, tag: str | None = None) -> ViTBackbone:
    """DeiT-S (timm ``deit_small_patch16_224``, hub weights ``fb_in1k``), paper 002's transformer encoder."""
    net = create_timm(
        "deit_small_patch16_224", pretrained, tag, num_classes=0, img_size=image_size, dynamic_img_size=True
    )
    return ViTBackbone(net, "deit-small")


@BACKBONES.register("vit-tiny-small", family="vit", hybrid="ir-tiny-vit")
def vit_tiny_small(pretrained: str | bool = False, image_size: int = 48) -> ViTBackbone:
    """Tiny ViT for CPU (patch 8, width 64, depth 5, 2 heads): the CPU-preset transformer."""
    return _tiny_vit("vit-tiny-small", pretrained, image_size)


def _tiny_vit(name: str, pretrained: str | bool, image_size: int, stem: nn.Module | None = None) -> ViTBackbone:
    """The tiny ViT (patch 8, width 64, depth 5, 2 heads), its patch projection replaced by
    ``stem`` when given (a stride-8 module to 64 channels), local weights loaded after."""
    from timm.models.vision_transformer import VisionTransformer

    pretrained = local_weights_only(name, pretrained)
    net = VisionTransformer(
        img_size=image_size, patch_size=8, embed_dim=64, depth=5, num_heads=2, mlp_ratio=2.0,
        num_classes=0, dynamic_img_size=True,
    )
    if stem is not None:
        net.patch_embed.proj = stem
    if pretrained:
        load_local_weights(net, pretrained, name)
    return ViTBackbone(net, name)


def conv_stem(channels: tuple[int, ...], embed_dim: int) -> nn.Sequential:
    """Stride-2 3x3 conv + BN + ReLU per entry of ``channels`` (total stride 2**len), then a
    1x1 projection to ``embed_dim`` (Xiao et al. 2021's convolutional stem)."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    layers.append(nn.Conv2d(c_in, embed_dim, 1))
    return nn.Sequential(*layers)


@BACKBONES.register("vit-tiny-convstem", family="vit", hybrid="ir-tiny-vit")
def vit_tiny_convstem(pretrained: str | bool = False, image_size: int = 48) -> ViTBackbone:
    """Tiny ViT for CPU with a convolutional stem (stride 8, 16-32-64 ch) instead of 8x8 patches."""
    return _tiny_vit("vit-tiny-convstem", pretrained, image_size, stem=conv_stem((16, 32, 64), 64))
