"""ResNet encoders through timm, exposing paper 002's layers 1..5.

Paper 002 (Table 3) numbers the ResNet50 layers 1 = stem (conv1/bn1/relu), 2 = layer1,
3 = layer2, 4 = layer3, 5 = layer4. The forward below walks timm's ResNet modules in
that order, so every layer is a plain tensor, no hooks needed.

CPU variants (for the embedded preset, where a grid trial must take ~10 s on one core):

- ``resnet18-small``: timm resnet18 without the stem max-pool, so layer 5 is at 1/16 of the
  input (4x4 at 64 px) instead of 1/32; the ImageNet weights still load (no parameter
  changed).
- ``resnet-tiny``: timm's ResNet class with one BasicBlock per stage, widths 16/32/64/128,
  a single 3x3 stride-1 stem conv (16 channels, full input resolution) followed by the usual
  stem max-pool, and a dilated (stride-1) layer4 (timm ``output_stride=16``), so layer 5
  is at 1/8 of the input (4x4 at 32 px, 6x6 at 48 px): a CAM needs some resolution to be
  compared with an AU map. About 7 M multiply-adds per 32 px image.

  Why this stem (measured on synthetic-rafdb, CAM without AU loss, 3 epochs at 32 px, same
  cost per trial): the earlier narrow "deep" stem (3x3 convs 3->8->8->16, the first with
  stride 2, no max-pool) sees the 32 px face only through 8 channels at half resolution, and
  the expression cues there (lips parted, brow furrow, wrinkles) are 1-3 px wide; it learned
  about 1.6x slower than this one (23% vs 37% test accuracy on faces with strong cues,
  16% vs 18% on the default faces). A full-resolution first conv then max-pool is the usual
  small-image CNN stem (it is also what the plain 4-block CNN that learns this data does).
  timm's ``zero_init_last`` (each block's last BatchNorm starting at gamma = 0, so every
  residual branch starts switched off) is turned off: it helps deep nets trained for many
  epochs, but with one block per stage and ~120 optimiser steps the branches never grow
  enough; measured with the stem above, same data and cost: 22% -> 40% test accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones._base import Backbone, StageTransform, create_timm, local_weights_only
from fer_models.registry import BACKBONES


class ResNetBackbone(Backbone):
    family = "cnn"

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.name = name
        self.net = net
        # channels per layer, from a dry run on a small input
        with torch.no_grad():
            was = net.training
            net.eval()
            feats = self.forward(torch.zeros(1, 3, 64, 64))
            net.train(was)
        self.channels = {k: int(v.shape[1]) for k, v in feats.items()}

    def stage(self, layer: int) -> nn.Module:
        n = self.net
        return {1: n.act1, 2: n.layer1, 3: n.layer2, 4: n.layer3, 5: n.layer4}[layer]

    def forward(self, x: torch.Tensor, transform: StageTransform = None) -> dict[int, torch.Tensor]:
        n = self.net
        t = transform or (lambda _l, f: f)
        f1 = n.act1(n.bn1(n.conv1(x)))
        out = {1: f1}
        x = t(1, f1)
        x = n.maxpool(x)
        for layer, mod in ((2, n.layer1), (3, n.layer2), (4, n.layer3), (5, n.layer4)):
            x = mod(x)
            out[layer] = x
            if layer < 5:
                x = t(layer, x)
        return out


def _timm_resnet(name: str, pretrained, tag: str | None = None, **kw) -> nn.Module:
    return create_timm(name, pretrained, tag, num_classes=0, global_pool="", **kw)


def unstride(layer: nn.Sequential) -> None:
    """Set the stride of a ResNet stage's first block to 1 (its 3x3 conv and its shortcut),
    so the stage keeps its input resolution. No parameter changes, ImageNet weights load."""
    first = layer[0]
    first.conv2.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)


@BACKBONES.register("resnet50", family="cnn", vit="deit-small", hybrid="ir50-vit", weights="tv_in1k")
def resnet50(pretrained: str | bool = False, image_size: int = 224, tag: str | None = None) -> ResNetBackbone:
    """ResNet50 (paper 002's CNN encoder), timm ``resnet50``; hub weights ``tv_in1k`` (torchvision's)."""
    return ResNetBackbone(_timm_resnet("resnet50", pretrained, tag), "resnet50")


@BACKBONES.register("resnet50-s8", family="cnn", vit="deit-small", hybrid="ir50-vit", weights="tv_in1k")
def resnet50_s8(pretrained: str | bool = False, image_size: int = 224, tag: str | None = None) -> ResNetBackbone:
    """ResNet50 with layer3 and layer4 at stride 1: layer 5 at 1/8 (28x28 at 224 px), paper 002's released ``large_maps``.

    The released encoder (``dlib/encoders/resnet.py``, ``large_maps=True`` in the README's
    commands) sets both strides to 1 without dilation, so the 3x3 convs of the last two
    stages see a smaller context than in the ImageNet network; we do the same. The
    torchvision weights load unchanged (strides are not parameters).
    """
    net = _timm_resnet("resnet50", pretrained, tag)
    unstride(net.layer3)
    unstride(net.layer4)
    return ResNetBackbone(net, "resnet50-s8")


@BACKBONES.register("resnet18", family="cnn", vit="deit-small", hybrid="ir50-vit")
def resnet18(pretrained: str | bool = False, image_size: int = 224, tag: str | None = None) -> ResNetBackbone:
    """ResNet18, timm ``resnet18`` (layer 5 at 1/32 of the input)."""
    return ResNetBackbone(_timm_resnet("resnet18", pretrained, tag), "resnet18")


@BACKBONES.register("resnet18-small", family="cnn", vit="vit-tiny-small", hybrid="ir-tiny-vit")
def resnet18_small(pretrained: str | bool = False, image_size: int = 64, tag: str | None = None) -> ResNetBackbone:
    """ResNet18 without the stem max-pool: layer 5 at 1/16 (4x4 at 64 px); ImageNet weights load."""
    net = _timm_resnet("resnet18", pretrained, tag)
    net.maxpool = nn.Identity()
    return ResNetBackbone(net, "resnet18-small")


@BACKBONES.register("resnet-tiny", family="cnn", vit="vit-tiny-small", hybrid="ir-tiny-vit")
def resnet_tiny(pretrained: str | bool = False, image_size: int = 48) -> ResNetBackbone:
    """Narrow ResNet (1 BasicBlock/stage, 16-128 ch, full-res 3x3 stem + max-pool), layer 5 at 1/8: the CPU-preset encoder."""
    from timm.models.resnet import BasicBlock, ResNet

    pretrained = local_weights_only("resnet-tiny", pretrained)
    net = ResNet(
        block=BasicBlock,
        layers=(1, 1, 1, 1),
        channels=(16, 32, 64, 128),
        stem_width=8,  # "deep" stem ends at 2 x 8 = 16 channels (bn1, layer1 inputs) ...
        stem_type="deep",
        num_classes=0,
        global_pool="",
        output_stride=16,  # layer4 dilated instead of strided
        zero_init_last=False,  # see the module docstring
    )
    # ... replaced by one full-resolution 3x3 conv 3->16; timm's stem max-pool then halves it
    net.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if pretrained:
        from fer_models.backbones._base import load_local_weights

        load_local_weights(net, pretrained, "resnet-tiny")
    return ResNetBackbone(net, "resnet-tiny")
