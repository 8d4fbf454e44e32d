"""LayerCAM (Jiang et al., IEEE TIP 2021) at layer 5, via pytorch-grad-cam's ``LayerCAM``.

Paper 002 uses one layer (its Table 1 row); LayerCAM's multi-layer fusion is not used.
"""

from __future__ import annotations

from fer_models.methods.gradcam import GradCAMMethod
from fer_models.registry import METHODS


@METHODS.register("layercam", backbone="cnn", family="CNN-based", trains_as="gradcam", table1=9)
class LayerCAMMethod(GradCAMMethod):
    """LayerCAM (Jiang et al. 2021) at layer 5, via pytorch-grad-cam."""

    name = "layercam"
    cam_class = "LayerCAM"
