"""FERModel: what every method (paper 002's CAM family, the seed networks) gives the trainer.

- ``forward(x, labels=None) -> ModelOutput(logits, features, cams, aux)``: ``features`` holds the
  spatial features of paper 002's layers 1..5, so the AU alignment loss reaches any layer
  without changing the architecture. ``labels`` is optional; methods that use the label while
  training (ACoL's erasing) fall back to the prediction without it.
- ``transform_batch(batch)``: a method may transform a training batch (CutMix mixes image, AU
  maps and labels with one box); the default leaves it unchanged.
- ``classification_loss(out, batch)``: cross-entropy, label-mixed when the batch was mixed,
  plus the method's auxiliary classifiers (``aux["extra_logits"]``).
- ``class_maps(x, target) -> (B, h, w)`` in [0, 1]: the method's map M[k] of class ``target``;
  gradient methods (:class:`GradCAMMixin`) go through pytorch-grad-cam, whose hooks are
  released on exit.
- ``tap_layers()``: named modules the analysis jobs may hook.
- ``new_modules()``: what the method adds to its (possibly pretrained) encoder, the optimiser's
  head group (``fer_models.train.param_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from fer_models.torch_utils import LogitsOnly, minmax


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, K)
    features: dict[int, torch.Tensor]  # paper layer 1..5 -> (B, C, h, w)
    cams: torch.Tensor | None = None  # (B, K, h, w) for methods with built-in class maps
    aux: dict[str, Any] = field(default_factory=dict)


def cross_entropy(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """CE on ``batch["label"]``; when a method mixed the batch, lam*CE(y_a) + (1-lam)*CE(y_b)."""
    y = batch["label"]
    if "label_b" not in batch:
        return F.cross_entropy(logits, y)
    lam = float(batch["mix_lam"])
    return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, batch["label_b"])


class FERModel(nn.Module):
    """Base of every method. Subclasses set ``self.backbone`` (or their own layers) and a head."""

    name: str = ""
    #: where M[k] comes from, read by ``fer_models.metrics``: "cam" (the forward's built-in
    #: cams), "grad" (pytorch-grad-cam), "attention" (APViT), "cam-x-attention" (TS-CAM);
    #: any value but "cam" makes evaluation call :meth:`class_maps`
    map_source: str = "cam"
    #: False for a method whose map is class-agnostic (APViT): no CAM-COS (paper 002, Table 1)
    has_cam: bool = True

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    # --- training ---------------------------------------------------------------------
    def transform_batch(self, batch: dict) -> dict:
        return batch

    def classification_loss(self, out: ModelOutput, batch: dict) -> torch.Tensor:
        loss = cross_entropy(out.logits, batch)
        for extra in out.aux.get("extra_logits", ()):
            loss = loss + cross_entropy(extra, batch)
        return loss

    # --- maps ---------------------------------------------------------------------------
    def cam_layer(self) -> nn.Module:
        """Module whose output is layer 5 (Grad-CAM target)."""
        return self.backbone.stage(5)

    def class_maps(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """M[target] per sample, (B, h, w) in [0, 1]. Default: the built-in CAMs, min-max normalised."""
        with torch.no_grad():
            out = self(x)
        if out.cams is None:
            raise NotImplementedError(f"method '{self.name}' has no built-in class maps")
        idx = torch.arange(x.shape[0], device=x.device)
        return minmax(out.cams[idx, target.to(x.device)].float())

    def new_modules(self) -> list[nn.Module]:
        """Modules the method adds to its encoder: every child but ``backbone`` (a seed network,
        which has none, is all new)."""
        return [m for name, m in self.named_children() if name != "backbone"]

    def tap_layers(self) -> dict[str, nn.Module]:
        taps = {f"layer{l}": self.backbone.stage(l) for l in range(1, 6)}
        if hasattr(self, "head"):
            taps["head"] = self.head
        return taps


def grad_class_maps(model: FERModel, x: torch.Tensor, target: torch.Tensor, cam_class: str,
                    layer: nn.Module) -> torch.Tensor:
    """The pytorch-grad-cam map ``cam_class`` (a class name of that library: ``GradCAM``,
    ``GradCAMPlusPlus``, ``LayerCAM`` ...) of ``target`` at ``layer``.

    The library min-max normalises each map and resizes it to the input size. Its hooks are
    released by the context manager; the model's train/eval mode and gradients are restored.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(importlib.import_module("pytorch_grad_cam"), cam_class)
    was_training = model.training
    try:
        with torch.enable_grad(), cls(model=LogitsOnly(model), target_layers=[layer]) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return torch.from_numpy(maps).to(x.device).float().clamp_(0.0, 1.0)


class GradCAMMixin:
    """The template of the gradient CAM methods: ``class_maps`` is pytorch-grad-cam's
    ``cam_class`` at ``cam_layer()`` (layer 5). A new variant sets ``cam_class`` and nothing else.

    ``cam_class`` names the library's class rather than holding it: importing pytorch-grad-cam
    takes seconds (it pulls OpenCV), and every method module is imported when the registry loads.
    """

    cam_class = "GradCAM"
    map_source = "grad"

    def class_maps(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return grad_class_maps(self, x, target, self.cam_class, self.cam_layer())
