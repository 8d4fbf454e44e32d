"""APViT's encoder (Xue et al., IEEE TAC 2022), as paper 002's released code builds it: an
IR-50 front-end whose 14 x 14 map feeds a ViT.

- Front-end: the first three stages of IR-50 (the ArcFace ResNet of face.evoLVe: input layer
  3x3 conv 64 + BN + PReLU, then "bottleneck_IR" units BN-conv3x3-PReLU-conv3x3-BN with a
  max-pool or 1x1-conv shortcut; stages of 3, 4 and 14 units at 64, 128, 256 channels, each
  starting with stride 2), so a 112 px face gives a (256, 14, 14) map. Module names follow
  face.evoLVe (``input_layer``, ``body.<unit>``), so its MS1M checkpoint
  ``backbone_ir50_ms1m_epoch120.pth`` loads strictly once the parts the encoder does not
  build (stage 4, ``output_layer``) are set aside by name. The released code loads it with
  ``strict=False`` (``dlib/diverse_models/irse.py``).
- ViT: a 1x1 conv projects the map to ``embed_dim`` tokens (APViT's ``projs``), learned
  patch and class position embeddings and a class token, then ``depth`` timm ``Block``s and
  a final LayerNorm. The released configuration (``dlib/diverse_models/apvit.py``) is timm's
  original ViT-S: width 768, depth 8, 8 heads, MLP ratio 3, no qkv bias, LayerNorm eps 1e-6,
  initialised from ``vit_small_p16_224-15ec54c9.pth`` (its ``pos_embed`` split into the class
  and patch parts, resampled when the grid differs; patch embedding and head dropped). The
  attentive pooling of APViT runs in the method (``fer_models.methods.apvit``), not here.

Paper 002's layers: 1 = input layer, 2 = stage 1, 3 = stage 2, 4 = the first half of stage
3, 5 = the end of stage 3, the map the ViT reads (released: the one 2-D feature the AU loss
aligns). ``ir-tiny-vit`` is the CPU-preset counterpart (stages of 1, 1, 2 units at 16, 32, 64
channels, ViT width 64, depth 4, 2 heads; the same stride-8 grid, 4x4 at 32 px).

``pretrained=True`` looks for the two released files in ``$FER_ORCH_HOME/weights/apvit/``; a
path is either that kind of folder or one fer-orch state_dict of the whole encoder (strict).
Neither file is on a hub, so a missing one is a ``MissingWeightsError`` naming it.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from fer_models.backbones._base import Backbone, StageTransform, local_weights_only, wants_pretrained
from fer_models.errors import MissingWeightsError
from fer_models.registry import BACKBONES

WEIGHTS_DIR = "weights/apvit"  # under FER_ORCH_HOME: where pretrained=True looks
IR50_FILE = "backbone_ir50_ms1m_epoch120.pth"
VIT_FILE = "vit_small_p16_224-15ec54c9.pth"


class IRUnit(nn.Module):
    """face.evoLVe's ``bottleneck_IR``: BN-conv3x3-PReLU-conv3x3(stride)-BN plus a shortcut."""

    def __init__(self, cin: int, depth: int, stride: int):
        super().__init__()
        if cin == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRViT(Backbone):
    """IR front-end (layers 1..5) plus the ViT parts APViT runs on its layer-5 map."""

    family = "hybrid"

    def __init__(self, name: str, widths: tuple[int, ...], units: tuple[int, ...], embed_dim: int, depth: int,
                 heads: int, mlp_ratio: float, image_size: int):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.name = name
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                         nn.PReLU(widths[0]))
        body, cin = [], widths[0]
        for w, n in zip(widths, units):
            for i in range(n):
                body.append(IRUnit(cin, w, 2 if i == 0 else 1))
                cin = w
        self.body = nn.Sequential(*body)
        ends = [sum(units[: i + 1]) for i in range(len(units))]  # unit count after each stage
        half = ends[1] + max(1, units[2] // 2)
        # layer -> number of body units run when it is reached (0: the input layer)
        self.layer_units = {1: 0, 2: ends[0], 3: ends[1], 4: half, 5: ends[2]}
        self.channels = {1: widths[0], 2: widths[0], 3: widths[1], 4: widths[2], 5: widths[2]}
        self.embed_dim, self.num_heads = embed_dim, heads
        self.grid = max(1, image_size // 8)
        self.proj = nn.Conv2d(widths[2], embed_dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, embed_dim))
        norm = functools.partial(nn.LayerNorm, eps=1e-6)  # timm's ViT-S
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio, qkv_bias=False, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(embed_dim)
        for p in (self.cls_token, self.cls_pos_embed, self.patch_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def stage(self, layer: int) -> nn.Module:
        n = self.layer_units[layer]
        return self.input_layer if n == 0 else self.body[n - 1]

    def forward(self, x: torch.Tensor, transform: StageTransform = None) -> dict[int, torch.Tensor]:
        t = transform or (lambda _l, f: f)
        x = self.input_layer(x)
        out, done = {1: x}, 0
        x = t(1, x)
        for layer in (2, 3, 4, 5):
            for unit in self.body[done : self.layer_units[layer]]:
                x = unit(x)
            done = self.layer_units[layer]
            out[layer] = x
            if layer < 5:
                x = t(layer, x)
        return out

    def pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Patch position embeddings for an (h, w) grid (resampled when it is not the built one)."""
        if hw == (self.grid, self.grid):
            return self.patch_pos_embed
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(self.patch_pos_embed, new_size=list(hw), old_size=[self.grid, self.grid],
                                      num_prefix_tokens=0)


def _released_vit_state(vit: dict, model: IRViT) -> dict:
    """The released ViT-S checkpoint in this encoder's names: ``pos_embed`` split into the class
    and (resampled) patch parts; patch embedding and classifier dropped, as APViT does."""
    from timm.layers import resample_abs_pos_embed

    vit = dict(vit.get("model", vit.get("state_dict", vit)))
    pos = vit.pop("pos_embed")
    n_old = pos.shape[1] - 1
    patch = pos[:, 1:]
    if n_old != model.patch_pos_embed.shape[1]:
        old = int(math.isqrt(n_old))
        patch = resample_abs_pos_embed(patch, new_size=[model.grid, model.grid], old_size=[old, old],
                                       num_prefix_tokens=0)
    out = {k: v for k, v in vit.items() if not k.startswith(("patch_embed.", "head."))}
    out["patch_pos_embed"], out["cls_pos_embed"] = patch, pos[:, :1]
    return out


def _load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise MissingWeightsError(
            f"APViT needs the {what} weights file '{path}' (paper 002's released code uses it; it is on no hub); "
            f"put it there or pass pretrained=False"
        )
    from fer_models.torch_utils import load_state_file

    state = load_state_file(path, what=f"APViT's {what} weights file",
                            fix="put an intact copy of the released file there, or pass pretrained=False")
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_released_weights(model: IRViT, folder: Path) -> None:
    """IR-50 (MS1M) and ViT-S files of the released code, each loaded strictly into its part:
    only the IR-50 parts this encoder does not build and the ViT's patch embedding and head
    are set aside (by name); the 1x1 projection is new. Any other mismatch is an error."""
    from fer_models.torch_utils import first_state_mismatch

    ir = _load(folder / IR50_FILE, "IR-50 (MS1M)")
    n_units = len(model.body)
    own_ir = {k: v for k, v in ir.items() if k.startswith("input_layer.")
              or (k.startswith("body.") and int(k.split(".")[1]) < n_units)}
    vit = _released_vit_state(_load(folder / VIT_FILE, "ViT-S"), model)
    state = {**own_ir, **vit}
    own = model.state_dict()
    new = {k for k in own if k.startswith("proj.")}
    first = first_state_mismatch(own, state, new)
    if first is not None:
        raise MissingWeightsError(
            f"weights in '{folder}' do not match backbone '{model.name}' (first mismatch: {first}); "
            f"pass the released IR-50 and ViT-S files of that exact architecture"
        )
    model.load_state_dict({**{k: own[k] for k in new}, **state}, strict=True)


def _pretrained(model: IRViT, pretrained) -> IRViT:
    pretrained = wants_pretrained(pretrained)
    if not pretrained:
        return model
    if pretrained is True:
        from fer_models import paths

        pretrained = paths.home() / WEIGHTS_DIR
    path = Path(pretrained).expanduser()
    if path.is_dir() or not path.suffix:
        load_released_weights(model, path)
        return model
    from fer_models.backbones._base import load_local_weights

    load_local_weights(model, path, model.name)
    return model


@BACKBONES.register("ir50-vit", family="hybrid", weights_dir=WEIGHTS_DIR)
def ir50_vit(pretrained: str | bool = False, image_size: int = 112) -> IRViT:
    """APViT's encoder: IR-50 stages 1-3 (14x14 at 112 px) + ViT-S (768, depth 8, 8 heads), released weights from files."""
    net = IRViT("ir50-vit", (64, 128, 256), (3, 4, 14), embed_dim=768, depth=8, heads=8, mlp_ratio=3.0,
                image_size=image_size)
    return _pretrained(net, pretrained)


@BACKBONES.register("ir-tiny-vit", family="hybrid")
def ir_tiny_vit(pretrained: str | bool = False, image_size: int = 32) -> IRViT:
    """CPU-preset APViT encoder: IR stages of 1/1/2 units (16-64 ch, 4x4 at 32 px) + ViT (64, depth 4, 2 heads)."""
    pretrained = local_weights_only("ir-tiny-vit", pretrained)
    net = IRViT("ir-tiny-vit", (16, 32, 64), (1, 1, 2), embed_dim=64, depth=4, heads=2, mlp_ratio=2.0,
                image_size=image_size)
    return _pretrained(net, pretrained)
