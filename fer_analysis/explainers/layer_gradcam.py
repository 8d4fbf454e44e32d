"""Grad-CAM (Selvaraju et al. 2017) of any layer, as in paper 004 Fig. 2e-f: the explainer
``layer-gradcam`` (the method ``gradcam`` of fer_models is a classifier whose own maps are
Grad-CAM at layer 5; the job ``block-maps`` draws this explainer at every block).

For a layer with feature maps A^c (c = channels), the class-``k`` map is
``relu(sum_c alpha_c A^c)`` with ``alpha_c`` the spatial mean of d y_k / d A^c. Captum's
``LayerGradCam`` computes it (its hooks are removed by captum); :meth:`raw` returns that map
at the layer's resolution, :meth:`attribute` up-samples it bilinearly to the input and
min-max normalises each image to [0, 1] (``fer_models.torch_utils.minmax``; an all-zero map
stays zero), which is how paper 004 shows it ("dark blue zeros, dark red ones").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from fer_analysis.explainers._base import Explainer, quiet
from fer_analysis.registry import EXPLAINERS
from fer_models.torch_utils import minmax


@EXPLAINERS.register("layer-gradcam", output="map", paper="004")
class LayerGradCamExplainer(Explainer):
    """Grad-CAM of a chosen layer (captum LayerGradCam), up-sampled and normalised."""

    name = "layer-gradcam"

    def __init__(self, model, layer=None):
        super().__init__(model)
        self.layer = layer

    def _target(self, x: torch.Tensor, target):
        if target is None:
            with torch.no_grad():
                target = self.forward_model(x).argmax(dim=1)
        return target

    def raw(self, x: torch.Tensor, target=None, layer=None) -> torch.Tensor:
        """``relu(sum_c alpha_c A^c)`` at the layer's own resolution, (B, h, w)."""
        layer = layer if layer is not None else self.layer
        if layer is None:
            raise ValueError("Grad-CAM needs a layer: pass layer= to the explainer or the call")
        target = self._target(x, target)
        with quiet():
            algo = LayerGradCam(self.forward_model, self._layer(layer))
            cam = algo.attribute(x, target=target, relu_attributions=True)
        return cam.detach()[:, 0]

    def attribute(self, x: torch.Tensor, target=None, layer=None) -> torch.Tensor:
        cam = self.raw(x, target, layer)
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return minmax(cam.clamp_min(0), eps=1e-12)

    def per_block(self, x: torch.Tensor, target=None, layers=()) -> dict[str, torch.Tensor]:
        """Grad-CAM of the same target class at every block in ``layers`` (names)."""
        target = self._target(x, target)
        return {name: self.attribute(x, target, name) for name in layers}
