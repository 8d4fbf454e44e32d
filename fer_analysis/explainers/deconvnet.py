"""Deconvnet (Zeiler & Fergus 2014), paper 001 Sec. 4.3 and paper 003 (Alg. 2).

The top signal is sent back through the transposed convolutions; at each ReLU the
*backward signal itself* is rectified (``relu(grad)``), ignoring where the forward ReLU
was off; max-pooling is undone through the switches recorded in the forward pass (which
is what autograd's max-pool backward does). Captum's ``Deconvolution`` /
``NeuronDeconvolution`` implement this with ReLU backward hooks that it removes itself.
"""

from __future__ import annotations

import torch
from captum.attr import Deconvolution, NeuronDeconvolution

from fer_analysis.explainers._base import Explainer, filter_max_selector, quiet, weighted_selector
from fer_analysis.hooks import relus_not_inplace
from fer_analysis.registry import EXPLAINERS


@EXPLAINERS.register("deconvnet", output="input", paper="001, 003")
class DeconvnetExplainer(Explainer):
    """Zeiler-Fergus deconvnet (captum): relu of the backward signal at every ReLU."""

    name = "deconvnet"

    def attribute(self, x: torch.Tensor, target) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            return Deconvolution(self.forward_model).attribute(x, target=target).detach()

    def neuron(self, x, layer, filter_index: int) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            algo = NeuronDeconvolution(self.forward_model, self._layer(layer))
            return algo.attribute(x, neuron_selector=filter_max_selector(filter_index)).detach()

    def signal(self, x, layer, signal: torch.Tensor) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            algo = NeuronDeconvolution(self.forward_model, self._layer(layer))
            return algo.attribute(x, neuron_selector=weighted_selector(signal)).detach()
