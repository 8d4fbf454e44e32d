"""Grad-CAM++ (Chattopadhyay et al., WACV 2018) at layer 5, via pytorch-grad-cam's ``GradCAMPlusPlus``."""

from __future__ import annotations

from fer_models.backbones._base import Backbone
from fer_models.methods._base import GradCAMMixin
from fer_models.methods.gradcam import GAPClassifier
from fer_models.registry import METHODS


@METHODS.register("gradcampp", backbone="cnn", family="CNN-based", table1=4)
class GradCAMPPMethod(GradCAMMixin, GAPClassifier):
    """Grad-CAM++ (Chattopadhyay et al. 2018) at layer 5, via pytorch-grad-cam."""

    name = "gradcampp"
    grad_kind = "gradcampp"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48):
        super().__init__(backbone, num_classes)
