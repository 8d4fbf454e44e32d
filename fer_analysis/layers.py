"""Layer names as paper 004 uses them, mapped onto fer-orch's light CNN without changing it.

Paper 004 names its network's layers as Keras does (Table 1b / Fig. 1): a Keras
``Conv2D(64, 5, activation="elu", name="conv2d_1")`` outputs the *activation*, so
``conv2d_n`` is the post-ELU map; the same holds for ``dense_1``; ``out_layer`` is the
softmax output layer. fer-orch's ``light-cnn`` (``fer_models/methods/lightcnn.py``) keeps
the convolution, its ELU and the batch norm as separate modules, and there ``conv2d_n`` is
the convolution *before* the ELU. The analysis reads the paper's names through this table
(built from the network's module order, so it follows the network rather than fixing
module names):

| paper 004 (Keras) | what the analysis taps on ``light-cnn`` |
|---|---|
| ``conv2d_n`` | the activation module right after the convolution ``conv2d_n`` (``elu_n``) |
| ``dense_1`` | the activation module right after ``dense_1`` (``elu_dense``) |
| ``batchnorm_n``, ``maxpool2d_n``, ``dropout_n``, ``flatten`` | the module of that name |
| ``out_layer`` | ``out_layer``; the probes take the softmax of its output (the Keras output), |
| | the hooks and Grad-CAM its logits |

The pre-activation convolution stays reachable by its module path (``layers.conv2d_4``).
Other networks keep their own module names (``tap_layers``).

Paper 004's choices of layers, by network (``PAPER_LAYERS``): the Grad-CAM blocks of
Fig. 2e-f (``batchnorm_1``, ``conv2d_4``, ``conv2d_6``), the default of ``block-maps``
(``--gradcam-layers``), and the four layers of Fig. 4 (early, identity, penultimate, output).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

KERAS_NAMED = ("light-cnn",)  # networks whose analysis layer names are paper 004's Keras names
ACTIVATIONS = (nn.ELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
OUTPUT_NAME = "out_layer"

PAPER_LAYERS = {
    "light-cnn": {
        "gradcam": ("batchnorm_1", "conv2d_4", "conv2d_6"),  # paper 004 Fig. 2e-f
        "probe": ("batchnorm_1", "flatten", "dropout_4", "out_layer"),  # paper 004 Fig. 4
    },
}


def _softmax(t: torch.Tensor) -> torch.Tensor:
    return t.softmax(dim=1)


def keras_layers(model: nn.Module) -> dict[str, tuple[nn.Module, Callable | None]] | None:
    """Paper 004's layer names of ``model`` in network order, each as (module whose output it
    is, transform of that output or None); None for a network without Keras names."""
    if getattr(model, "name", None) not in KERAS_NAMED:
        return None
    out: dict[str, tuple[nn.Module, Callable | None]] = {}
    for part in ("layers", "classifier"):
        children = list(getattr(model, part).named_children())
        for i, (name, mod) in enumerate(children):
            if isinstance(mod, ACTIVATIONS):
                continue  # reached through the layer it belongs to
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and isinstance(nxt, ACTIVATIONS):
                out[name] = (nxt, None)
            else:
                out[name] = (mod, _softmax if name == OUTPUT_NAME else None)
    return out


def keras_module(model: nn.Module, name: str) -> nn.Module | None:
    """The module a paper-004 name stands for on ``model`` (None: not such a name)."""
    table = keras_layers(model)
    return table[name][0] if table and name in table else None


def paper_layers(model: nn.Module, kind: str) -> tuple[str, ...] | None:
    """Paper 004's layer choice ``kind`` ("gradcam" or "probe") for ``model``'s network, or None."""
    return PAPER_LAYERS.get(getattr(model, "name", None), {}).get(kind)
