"""The model zoo: FER networks trained by others, audited with fer-orch's metrics (``fer-orch audit``).

One module per entry, a :class:`ZooEntry` subclass registered in ``fer_models.registry.MODELS``
(``fer-orch list models``). An entry says

- how its torch network is built and where its weights come from (:meth:`ZooEntry.build`;
  ``weights``: one sentence, shown by ``fer-orch list models``); a published network whose
  weights must be downloaded raises ``MissingWeightsError`` naming the file and the folder it
  goes in (:func:`weights_dir`), never downloads;
- its input (:class:`InputSpec`: side, channels, normalisation, face crop);
- its classes in its output order, mapped to fer-orch's order (``fer_models.labels``);
- the modules that are paper 002's layers 1..5 (``layers``), tapped for the attention maps,
  the Grad-CAM target (layer 5) and the explain jobs.

:class:`ZooModel` wraps the network as a :class:`~fer_models.methods.FERModel`, so
``fer_models.metrics.evaluate``, ``fer_models.faithfulness`` and the explain jobs run on it
unchanged. It takes the images the data pipeline delivers at the model's side and channels,
unnormalised in [0, 1] (``DataConfig(normalize="none")``), and applies the model's own
normalisation inside ``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_models.errors import ConfigError
from fer_models.labels import EXPRESSIONS
from fer_models.methods._base import FERModel, GradCAMMixin, ModelOutput

#: normalisations an input may name: (mean, std) per channel of the [0, 1] image
NORMALISATIONS = {
    "unit": (0.0, 1.0),  # the [0, 1] image as is
    "pm1": (0.5, 0.5),  # [-1, 1]: (x / 255 - 0.5) * 2, Keras' "v2" preprocessing
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: aliases of class names found in other projects' label lists
CLASS_ALIASES = {"angry": "anger", "happy": "happiness", "sad": "sadness", "surprised": "surprise",
                 "disgusted": "disgust", "fearful": "fear", "neural": "neutral"}


def weights_dir() -> Path:
    """Where zoo weights files go: ``$FER_ORCH_HOME/weights/zoo/``."""
    from fer_models import paths

    return paths.home() / "weights" / "zoo"


@dataclass(frozen=True)
class InputSpec:
    """What the network reads: ``size`` px square, ``channels`` (1: grey, ITU-R 601 luma),
    ``norm`` (a :data:`NORMALISATIONS` name), ``crop`` (how the face is framed: one phrase;
    fer-orch crops a square of 1.25 x the landmarks' extent, ``fer_models.data.cache.stages.face_box``)."""

    size: int
    channels: int
    norm: str
    crop: str = "square face box, 1.25 x the 68 landmarks' extent"

    def __post_init__(self):
        if self.channels not in (1, 3) or self.size < 8 or self.norm not in NORMALISATIONS:
            raise ConfigError(f"an input is SIZE,gray|rgb,{'|'.join(NORMALISATIONS)} with SIZE >= 8; "
                              f"got size {self.size}, {self.channels} channel(s), '{self.norm}'")

    @classmethod
    def parse(cls, text: str) -> "InputSpec":
        """``--input 64,gray,pm1`` (side, gray|rgb, normalisation)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in ("gray", "grey", "rgb"):
            raise ConfigError(f"--input is SIZE,gray|rgb,{'|'.join(NORMALISATIONS)} (e.g. 64,gray,pm1), got '{text}'")
        return cls(int(parts[0]), 1 if parts[1] in ("gray", "grey") else 3, parts[2])

    @property
    def color(self) -> str:
        return "gray" if self.channels == 1 else "rgb"


def class_order(names: list[str] | tuple[str, ...]) -> list[int]:
    """For each of fer-orch's expressions the network predicts, in fer-orch's order, the index
    of that class in the network's output: ``logits[:, class_order(names)]`` are fer-orch's logits."""
    canon = [CLASS_ALIASES.get(n.strip().lower(), n.strip().lower()) for n in names]
    unknown = [n for n, c in zip(names, canon) if c not in EXPRESSIONS]
    if unknown:
        raise ConfigError(f"unknown class name(s) {', '.join(unknown)}; --classes names the network's outputs in "
                          f"order with fer-orch's names: {', '.join(EXPRESSIONS)}")
    have = [e for e in EXPRESSIONS if e in canon]
    if have != list(EXPRESSIONS[:len(have)]):
        raise ConfigError(f"the network's classes ({', '.join(canon)}) are not fer-orch's first {len(have)} "
                          f"expressions ({', '.join(EXPRESSIONS[:len(have)])}); it cannot be scored on them")
    return [canon.index(e) for e in have]


class ZooModel(GradCAMMixin, FERModel):
    """A zoo network as a FERModel: logits in fer-orch's class order, ``features`` the outputs of
    its ``layers`` (taken by forward hooks that live only during ``forward``), ``class_maps`` the
    pytorch-grad-cam map ``cam_class`` at layer 5."""

    map_source = "grad"

    def __init__(self, net: nn.Module, name: str, spec: InputSpec, classes: tuple[str, ...],
                 layers: dict[int, str], cam_class: str = "GradCAM"):
        self.order = class_order(classes)
        super().__init__(len(self.order))
        self.net, self.name, self.spec, self.classes = net, name, spec, tuple(classes)
        self.layer_names = dict(layers)
        self.cam_class = cam_class
        modules = dict(net.named_modules())
        missing = [v for v in self.layer_names.values() if v not in modules]
        if missing:
            raise ConfigError(f"model '{name}' has no module(s) {', '.join(missing)}; its modules include "
                              f"{', '.join(list(modules)[1:12])} ...")
        mean, std = NORMALISATIONS[spec.norm]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, spec.channels, 1, 1).clone())
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, spec.channels, 1, 1).clone())
        self.has_cam = 5 in self.layer_names

    def restrict(self, num_classes: int) -> "ZooModel":
        """Keep fer-orch's first ``num_classes`` classes (a dataset without contempt)."""
        if num_classes > len(self.order):
            raise ConfigError(f"model '{self.name}' predicts {len(self.order)} of fer-orch's classes; the dataset has "
                              f"{num_classes}")
        self.order, self.num_classes = self.order[:num_classes], num_classes
        return self

    def layer(self, l: int) -> nn.Module:
        return self.net.get_submodule(self.layer_names[l])

    def cam_layer(self) -> nn.Module:
        return self.layer(5)

    def tap_layers(self) -> dict[str, nn.Module]:
        return {f"layer{l}": self.layer(l) for l in sorted(self.layer_names)}

    def new_modules(self) -> list[nn.Module]:
        return []

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        if x.shape[1] != self.spec.channels:
            raise ConfigError(f"model '{self.name}' reads {self.spec.channels}-channel images, got {x.shape[1]}")
        features: dict[int, torch.Tensor] = {}
        hooks = [self.layer(l).register_forward_hook(lambda m, i, o, l=l: features.__setitem__(l, o))
                 for l in self.layer_names]
        try:
            logits = self.net((x - self.mean) / self.std)
        finally:
            for h in hooks:
                h.remove()
        return ModelOutput(logits=logits[:, self.order], features=features)


class ZooEntry:
    """Base of a zoo entry (one module per entry, registered in ``MODELS``)."""

    name: str = ""
    input: InputSpec
    classes: tuple[str, ...] = ()
    layers: dict[int, str] = {}
    weights: str = ""  # where the weights come from, one sentence
    paper: str = ""

    def check(self, **options: Any) -> None:
        """Refuse wrong options in one sentence before any work (bring-your-own entries)."""

    def build(self, **options: Any) -> nn.Module:
        """The torch network with its weights, in eval mode."""
        raise NotImplementedError

    def load(self, cam_class: str = "GradCAM", **options: Any) -> ZooModel:
        """The network as a :class:`ZooModel` in eval mode."""
        return ZooModel(self.build(**options), self.name, self.input, self.classes, self.layers, cam_class).eval()
