"""OpenGraphAU (Luo et al., IJCAI 2022, "Learning Multi-dimensional Edge Feature-based AU
Relation Graph for Facial Action Unit Recognition"; the released tool trained on a hybrid of
BP4D, DISFA, RAF-AU, Aff-Wild2, CK+ and CASME II, 41 AU outputs), first stage (ANFL).

The architecture is rebuilt here so that the released checkpoint loads strictly by name:

- ``backbone``: a ResNet (torchvision's layout, no pooling or classifier) whose last feature
  map is read as ``(B, h*w, C)`` tokens;
- ``global_linear``: linear -> BatchNorm1d -> ReLU per token, C -> C/4;
- ``head.main_class_linears``: one such block per main AU (27); each AU's node feature is the
  token mean of its block's output (AFG);
- ``head.gnn``: one graph layer over the 27 nodes (FGG): each node's 4 most similar nodes
  (dot product) form the graph, normalised ``D^-1/2 A D^-1/2``; ``x + BN(A V(x) + U(x))``, ReLU;
- the score of AU ``i``: cosine between its node feature and the ReLU of a learnt class vector
  ``head.main_sc[i]`` (both non-negative, so the score lies in [0, 1]; the tool thresholds it
  at 0.5). The 14 left/right sub-AU scores (``head.sub_sc``) are loaded but not used: the
  location rules draw both sides of an AU already.

Input as the released tool's evaluation transform: RGB resized to 256 (shorter side), centre
crop 224, ImageNet normalisation. The checkpoint (``{"state_dict": ...}``, keys possibly
prefixed ``module.``) is the official file name, misspelling included
(``OpenGprahAU-ResNet50_first_stage.pth``, Google Drive link in the tool's README), under
``$FER_ORCH_HOME/weights/au_detectors/``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_models.data.au_detectors._base import AUDetector
from fer_models.errors import MissingWeightsError
from fer_models.registry import AU_DETECTORS
from fer_models.torch_utils import first_state_mismatch, load_state_file

#: the 27 main outputs, in the tool's order
MAIN_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 32, 38, 39)
N_SUB = 14  # AUL1, AUR1, AUL2, AUR2, AUL4, AUR4, AUL6, AUR6, AUL10, AUR10, AUL12, AUR12, AUL14, AUR14
NEIGHBOURS = 4


class _TokenLinear(nn.Module):
    """Linear, BatchNorm over the output features, ReLU, applied to every token of (B, N, C)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.fc = nn.Linear(c_in, c_out)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.fc(x).transpose(1, 2))).transpose(1, 2)


class _GraphLayer(nn.Module):
    """The FGG graph layer over the AU nodes (B, n, c), graph from each node's top-k similarities."""

    def __init__(self, c: int, n: int, k: int = NEIGHBOURS):
        super().__init__()
        self.k = k
        self.U = nn.Linear(c, c)
        self.V = nn.Linear(c, c)
        self.bnv = nn.BatchNorm1d(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sim = x.detach() @ x.detach().transpose(1, 2)
        kth = sim.topk(self.k, dim=-1).values[..., -1:]
        adj = (sim >= kth).float()
        d = adj.sum(-1).pow(-0.5)
        norm = d[:, :, None] * adj * d[:, None, :]
        return F.relu(x + self.bnv(norm @ self.V(x) + self.U(x)))


class _Head(nn.Module):
    def __init__(self, c: int, n_main: int = len(MAIN_AUS), n_sub: int = N_SUB):
        super().__init__()
        self.main_class_linears = nn.ModuleList(_TokenLinear(c, c) for _ in range(n_main))
        self.gnn = _GraphLayer(c, n_main)
        self.main_sc = nn.Parameter(torch.zeros(n_main, c))
        self.sub_sc = nn.Parameter(torch.zeros(n_sub, c))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        nodes = torch.stack([blk(tokens).mean(1) for blk in self.main_class_linears], 1)  # (B, n, c)
        nodes = self.gnn(nodes)
        return (F.normalize(nodes, dim=-1) * F.normalize(F.relu(self.main_sc), dim=-1)[None]).sum(-1)


class _ResNetTokens(nn.Module):
    """torchvision's ResNet trunk (same parameter names), returning (B, h*w, C) tokens."""

    def __init__(self, depth: int):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.flatten(2).transpose(1, 2)


class ANFLNet(nn.Module):
    """OpenGraphAU's first-stage network (ResNet trunk, global linear, ANFL head)."""

    def __init__(self, depth: int = 50):
        super().__init__()
        self.backbone = _ResNetTokens(depth)
        c = self.backbone.channels
        self.global_linear = _TokenLinear(c, c // 4)
        self.head = _Head(c // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.global_linear(self.backbone(x)))


class _OpenGraphAU(AUDetector):
    depth: ClassVar[int] = 50
    au_ids = MAIN_AUS
    threshold = 0.5
    crop: ClassVar[int] = 224
    resize: ClassVar[int] = 256

    def __init__(self, device: str = "cpu"):
        super().__init__(device)
        (path,) = self.require_weights()
        state = load_state_file(path, what=f"OpenGraphAU ResNet-{self.depth} checkpoint")
        state = state.get("state_dict", state)
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        net = ANFLNet(self.depth)
        first = first_state_mismatch(net.state_dict(), state)
        if first is not None:
            raise MissingWeightsError(
                f"'{path}' is not an OpenGraphAU first-stage ResNet-{self.depth} checkpoint "
                f"(first mismatching parameter: {first}); put the released file of that architecture there"
            )
        net.load_state_dict(state, strict=True)
        self.net = net.eval().to(device)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """The released evaluation transform on a batch of uint8 crops."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        x = F.interpolate(x, size=(max(self.crop, round(h * scale)), max(self.crop, round(w * scale))),
                          mode="bilinear", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
        x = x[..., top:top + self.crop, left:left + self.crop]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def scores(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return self.net(self.preprocess(images)).clamp(0.0, 1.0).float().cpu().numpy()


@AU_DETECTORS.register("opengraphau-resnet50", published=True)
class OpenGraphAUResNet50(_OpenGraphAU):
    """OpenGraphAU first stage, ResNet-50 (Luo et al., IJCAI 2022; 27 AUs, threshold 0.5)."""

    name = "opengraphau-resnet50"
    depth = 50
    weights_files = ("OpenGprahAU-ResNet50_first_stage.pth",)


@AU_DETECTORS.register("opengraphau-resnet18", published=True)
class OpenGraphAUResNet18(_OpenGraphAU):
    """OpenGraphAU first stage, ResNet-18 (Luo et al., IJCAI 2022; 27 AUs, threshold 0.5)."""

    name = "opengraphau-resnet18"
    depth = 18
    weights_files = ("OpenGprahAU-ResNet18_first_stage.pth",)
