"""Guided backpropagation (Springenberg et al. 2015), as used by paper 001 Sec. 4.3.

At each ReLU the backward signal is masked twice: by the forward pass (only where the
ReLU's input was positive) and by its own sign (only positive gradients). Captum's
``GuidedBackprop`` / ``NeuronGuidedBackprop`` do exactly this with ReLU backward hooks,
which it removes itself; we add :func:`relus_not_inplace` around the call (captum's hooks
fail on in-place ReLUs) and the model's ReLUs must be ``nn.ReLU`` modules.
"""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop, NeuronGuidedBackprop

from fer_analysis.explainers._base import Explainer, filter_max_selector, quiet, weighted_selector
from fer_analysis.hooks import relus_not_inplace
from fer_analysis.registry import EXPLAINERS


@EXPLAINERS.register("guided-backprop", output="input", paper="001")
class GuidedBackpropExplainer(Explainer):
    """Guided backprop (captum): input pattern behind a class score or a filter's max."""

    name = "guided-backprop"

    def attribute(self, x: torch.Tensor, target) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            return GuidedBackprop(self.forward_model).attribute(x, target=target).detach()

    def neuron(self, x, layer, filter_index: int) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            algo = NeuronGuidedBackprop(self.forward_model, self._layer(layer))
            return algo.attribute(x, neuron_selector=filter_max_selector(filter_index)).detach()

    def signal(self, x, layer, signal: torch.Tensor) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            algo = NeuronGuidedBackprop(self.forward_model, self._layer(layer))
            return algo.attribute(x, neuron_selector=weighted_selector(signal)).detach()
