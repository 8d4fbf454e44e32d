"""Deconvnet (Zeiler & Fergus 2014), paper 001 Sec. 4.3 and paper 003 (Alg. 2).

The top signal is sent back through the transposed convolutions; at each ReLU the
*backward signal itself* is rectified (``relu(grad)``), ignoring where the forward ReLU
was off; max-pooling is undone through the switches recorded in the forward pass (which
is what autograd's max-pool backward does). Captum's ``Deconvolution`` /
``NeuronDeconvolution`` implement this (see ``ReluBackpropExplainer``).
"""

from __future__ import annotations

from fer_analysis.explainers._base import ReluBackpropExplainer
from fer_analysis.registry import EXPLAINERS


@EXPLAINERS.register("deconvnet", output="input", paper="001, 003")
class DeconvnetExplainer(ReluBackpropExplainer):
    """Zeiler-Fergus deconvnet (captum): relu of the backward signal at every ReLU."""

    name = "deconvnet"
    use_relu_grad_output = True
