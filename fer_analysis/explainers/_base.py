"""What every explainer shares (not a registry entry: the name starts with ``_``); the public
names are re-exported by ``fer_analysis.explainers``.

An explainer is built on a model and answers two questions:

- ``attribute(x, target)``: why the model gives class ``target`` to each image of ``x``;
- ``neuron(x, layer, filter_index)``: the input pattern behind the *maximal* activation of
  filter ``filter_index`` of ``layer`` in each image (paper 001 Sec. 4.3; Zeiler & Fergus:
  "leave the strongest neuron high and set all other activations to zero").

``neuron`` selects, per image, the spatial position where the filter responds most
(``max`` over h, w), so the gradient flowing back is one-hot at that position, which is
exactly the Zeiler-Fergus top signal up to a scale (they keep the activation's value,
we use 1: the reconstructions are normalised for display anyway).

:class:`ReluBackpropExplainer` is the captum-style base of deconvnet and guided backprop,
which differ by one flag (captum's ``use_relu_grad_output``, see its subclasses).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch
from captum.attr import Deconvolution, GuidedBackprop, NeuronDeconvolution, NeuronGuidedBackprop
from torch import nn

from fer_analysis.hooks import LogitsOnly, relus_not_inplace, resolve_layer


def filter_max_selector(filter_index: int):
    """Captum neuron selector: the maximal response of one filter, one scalar per image."""

    def select(out: torch.Tensor) -> torch.Tensor:
        return out[:, filter_index].reshape(out.shape[0], -1).max(dim=1).values

    return select


def weighted_selector(signal: torch.Tensor):
    """Captum neuron selector whose gradient at the layer equals ``signal`` (B, ...):
    ``sum(out * signal)``. Used to project whole feature maps back (paper 003, Alg. 2)."""

    def select(out: torch.Tensor) -> torch.Tensor:
        return (out * signal.to(out)).reshape(out.shape[0], -1).sum(dim=1)

    return select


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Captum warns on every call that it sets (and removes) ReLU hooks; silence that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backward hooks on ReLU.*")
        warnings.filterwarnings("ignore", message=".*Setting backward hooks.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="captum")
        yield


class Explainer:
    """Base class; subclasses set ``name`` and implement the two methods. Their registry entry
    says what :meth:`attribute` returns: ``output="input"``, a (B, 3, H, W) image-space
    attribution; ``output="map"``, a (B, H, W) map in [0, 1]."""

    name = "explainer"

    def __init__(self, model: nn.Module):
        self.model = model
        self.forward_model = LogitsOnly(model)

    def _layer(self, layer: str | nn.Module) -> nn.Module:
        return resolve_layer(self.model, layer)[1]

    def attribute(self, x: torch.Tensor, target) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def neuron(self, x: torch.Tensor, layer: str | nn.Module, filter_index: int) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not visualise single filters")

    def signal(self, x: torch.Tensor, layer: str | nn.Module, signal: torch.Tensor) -> torch.Tensor:
        """Project a chosen signal at ``layer`` (same shape as its output) back to the input."""
        raise NotImplementedError(f"{self.name} does not project layer signals")


class ReluBackpropExplainer(Explainer):
    """Backpropagation with modified ReLU gradients (captum), for a class score
    (:meth:`attribute`), a filter's maximum (:meth:`neuron`) or a whole layer signal
    (:meth:`signal`).

    ``use_relu_grad_output`` is the one flag between the two subclasses, as in captum: True
    rectifies the backward signal at each ReLU whatever the forward pass did (deconvnet);
    False also masks it where the forward ReLU was off (guided backprop). Captum sets and
    removes the ReLU backward hooks itself; :func:`relus_not_inplace` is needed around the
    call (captum's hooks fail on in-place ReLUs), and the model's ReLUs must be ``nn.ReLU``
    modules.
    """

    use_relu_grad_output = False

    def _algorithms(self):
        if self.use_relu_grad_output:
            return Deconvolution, NeuronDeconvolution
        return GuidedBackprop, NeuronGuidedBackprop

    def attribute(self, x: torch.Tensor, target) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            return self._algorithms()[0](self.forward_model).attribute(x, target=target).detach()

    def neuron(self, x: torch.Tensor, layer: str | nn.Module, filter_index: int) -> torch.Tensor:
        return self._backprop(x, layer, filter_max_selector(filter_index))

    def signal(self, x: torch.Tensor, layer: str | nn.Module, signal: torch.Tensor) -> torch.Tensor:
        return self._backprop(x, layer, weighted_selector(signal))

    def _backprop(self, x: torch.Tensor, layer: str | nn.Module, selector) -> torch.Tensor:
        with relus_not_inplace(self.model), quiet():
            algo = self._algorithms()[1](self.forward_model, self._layer(layer))
            return algo.attribute(x, neuron_selector=selector).detach()
