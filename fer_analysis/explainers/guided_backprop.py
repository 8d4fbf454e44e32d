"""Guided backpropagation (Springenberg et al. 2015), as used by paper 001 Sec. 4.3.

At each ReLU the backward signal is masked twice: by the forward pass (only where the
ReLU's input was positive) and by its own sign (only positive gradients). Captum's
``GuidedBackprop`` / ``NeuronGuidedBackprop`` do exactly this (see ``ReluBackpropExplainer``).
"""

from __future__ import annotations

from fer_analysis.explainers._base import ReluBackpropExplainer
from fer_analysis.registry import EXPLAINERS


@EXPLAINERS.register("guided-backprop", output="input", paper="001")
class GuidedBackpropExplainer(ReluBackpropExplainer):
    """Guided backprop (captum): input pattern behind a class score or a filter's max."""

    name = "guided-backprop"
    use_relu_grad_output = False
