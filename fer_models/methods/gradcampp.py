"""Grad-CAM++ (Chattopadhyay et al., WACV 2018) at layer 5, via pytorch-grad-cam's ``GradCAMPlusPlus``."""

from __future__ import annotations

from fer_models.methods.gradcam import GradCAMMethod
from fer_models.registry import METHODS


@METHODS.register("gradcampp", backbone="cnn", family="CNN-based", trains_as="gradcam", table1=4)
class GradCAMPPMethod(GradCAMMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018) at layer 5, via pytorch-grad-cam."""

    name = "gradcampp"
    cam_class = "GradCAMPlusPlus"
