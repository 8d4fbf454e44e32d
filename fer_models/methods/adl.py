"""ADL (Choe & Shim, CVPR 2019): attention-based dropout layer, on a CAM classifier.

While training, at each ADL position, the self-attention (channel mean) gives either a drop
mask (0 where attention > ``threshold`` x max) or an importance map (sigmoid of attention),
the drop mask chosen with probability ``drop_rate``; features are multiplied by it.
Defaults drop_rate 0.4, threshold 0.1 (paper 002's released ``adl_drop_rate`` /
``adl_drop_threshold``). At inference ADL is the identity. ADL has no parameter.

Options (``method_kwargs``):

- ``placement``: ``"stages"`` (default; the CPU preset's): after the stages of ``adl_layers``
  (paper layers 4 and 5 = ResNet's layer3 and layer4 outputs); ``features`` (AU loss,
  metrics) are the stage outputs before ADL and the head sees the ADL output.
  ``"released"``: where paper 002's released ResNet50 has it (``dlib/encoders/resnet.py``,
  ``_ADL_POSITION``): inside layer3 after its first block, inside layer4 after its first
  block and after its last block; layer 5 (the AU loss's and the head's input) is then the
  post-ADL output of layer4. Needs a ResNet encoder.
- ``released_indexing`` (with ``placement="released"``): the released code inserted its ADL
  modules into the stages' ``nn.Sequential``, which shifted the blocks' indices; (i) its
  ImageNet weights, loaded with ``strict=False``, went to the wrong blocks: the block at
  position j received the weights of the original block j, so in layer3 blocks 1..4 hold
  blocks 2..5 and block 5 stays at random init, in layer4 block 1 holds block 2 and block 2
  stays random; (ii) its CAM hook ``layer4.2`` then named layer4's *second* block, so CAMs
  are computed from that block's output, not from layer 5. True reproduces both; False
  (default) loads every block its own weights and takes the CAM at layer 5.
"""

from __future__ import annotations

import torch
from torch import nn

from fer_models.backbones import Backbone
from fer_models.errors import ConfigError
from fer_models.methods._base import ModelOutput
from fer_models.methods.cam import CAMHead
from fer_models.registry import METHODS

#: released positions: block indices after which ADL sits, per ResNet stage (paper layer)
RELEASED_POSITIONS = {4: (0,), 5: (0, 2)}


def adl(f: torch.Tensor, drop_rate: float, threshold: float) -> torch.Tensor:
    att = f.mean(dim=1, keepdim=True)
    # the per-batch draw stays a tensor on f's device (no host read, no graph break under
    # torch.compile); both masks are (B, 1, h, w), cheap next to the feature map. On the CPU
    # it draws the same number from the same generator as a host-side draw would.
    drop = torch.rand((), device=f.device) < drop_rate
    peak = att.amax(dim=(2, 3), keepdim=True)
    mask = torch.where(drop, (att <= threshold * peak).to(f.dtype), torch.sigmoid(att))
    return f * mask


def released_layout(n_blocks: int, positions: tuple[int, ...]) -> list[int | None]:
    """The released ``nn.Sequential`` of a stage: block indices, None where an ADL sits."""
    seq: list[int | None] = list(range(n_blocks))
    for pos in sorted((p for p in set(positions) if p < n_blocks), reverse=True):
        seq.insert(pos + 1, None)
    return seq


def _torchvision_init(block: nn.Module) -> None:
    """Random init of a block as torchvision's ResNet does (what the released code left)."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


def shift_block_weights(stage: nn.Sequential, positions: tuple[int, ...]) -> None:
    """Reproduce the released ``strict=False`` load into the ADL-shifted stage (see module doc)."""
    layout = released_layout(len(stage), positions)
    original = [{k: v.clone() for k, v in blk.state_dict().items()} for blk in stage]
    for j, b in enumerate(layout):
        if b is None or j == b:
            continue
        if j < len(stage):
            stage[b].load_state_dict(original[j], strict=True)
        else:
            _torchvision_init(stage[b])


@METHODS.register("adl", backbone="cnn", family="CNN-based", table1=7)
class ADL(CAMHead):
    """ADL (Choe & Shim 2019): attention-based dropout (drop 0.4, threshold 0.1) on layers 4, 5."""

    name = "adl"

    def __init__(
        self, backbone: Backbone, num_classes: int, image_size: int = 48,
        drop_rate: float = 0.4, threshold: float = 0.1, adl_layers: tuple[int, ...] = (4, 5),
        placement: str = "stages", released_indexing: bool = False,
    ):
        super().__init__(backbone, num_classes)
        if placement not in ("stages", "released"):
            raise ConfigError(f"ADL's placement is 'stages' or 'released', got '{placement}'")
        if released_indexing and placement != "released":
            raise ConfigError("ADL's released_indexing needs placement='released' (the indices it shifts)")
        net = getattr(backbone, "net", None)
        if placement == "released" and not all(hasattr(net, s) for s in ("layer3", "layer4", "act1")):
            raise ConfigError("ADL's released placement sits inside ResNet stages; use a ResNet backbone")
        self.drop_rate, self.threshold = drop_rate, threshold
        self.adl_layers = tuple(int(l) for l in adl_layers)
        self.placement, self.released_indexing = placement, bool(released_indexing)
        if self.released_indexing:
            shift_block_weights(net.layer3, RELEASED_POSITIONS[4])
            shift_block_weights(net.layer4, RELEASED_POSITIONS[5])

    def _transform(self, layer: int, f: torch.Tensor) -> torch.Tensor:
        if self.training and layer in self.adl_layers:
            return adl(f, self.drop_rate, self.threshold)
        return f

    def _stage(self, stage: nn.Sequential, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a stage in the released layout; also return the output of the module the
        released CAM hook named (position ``len(stage) - 1`` of the shifted Sequential)."""
        layout = released_layout(len(stage), RELEASED_POSITIONS.get(layer, ()))
        hooked = None
        for j, b in enumerate(layout):
            if b is None:
                x = adl(x, self.drop_rate, self.threshold) if self.training else x
            else:
                x = stage[b](x)
            if j == len(stage) - 1:
                hooked = x
        return x, hooked

    def _released_forward(self, x: torch.Tensor):
        n = self.backbone.net
        f1 = n.act1(n.bn1(n.conv1(x)))
        feats = {1: f1}
        x = n.layer1(n.maxpool(f1))
        feats[2] = x
        x = n.layer2(x)
        feats[3] = x
        feats[4], _ = self._stage(n.layer3, x, 4)
        feats[5], hooked = self._stage(n.layer4, feats[4], 5)
        return feats, hooked

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        if self.placement == "stages":
            feats = self.backbone(x, transform=self._transform)
            cams = self.head(self._transform(5, feats[5]))
            return ModelOutput(logits=cams.mean(dim=(2, 3)), features=feats, cams=cams)
        feats, hooked = self._released_forward(x)
        cams = self.head(feats[5])
        logits = cams.mean(dim=(2, 3))
        if self.released_indexing:
            cams = self.head(hooked)  # the released CAM: layer4's second block, not layer 5
        return ModelOutput(logits=logits, features=feats, cams=cams)
