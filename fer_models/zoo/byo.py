"""Bring your own network: a TorchScript file, or a timm architecture plus a weights file.

``fer-orch audit --model torchscript --weights net.pt --classes ... --input 112,rgb,imagenet``
or ``--model timm --arch resnet18 --weights net.pth --classes ... --input ...``. ``--classes``
names the network's outputs in order (fer-orch's names, or angry/happy/sad/surprised);
``--input`` is ``SIZE,gray|rgb,unit|pm1|imagenet`` (``fer_models.zoo.InputSpec.parse``).

Layers: a timm network is tapped at its ``feature_info`` modules (its stages; the deepest is
layer 5, the Grad-CAM target), or at ``--layers`` (module names, shallow to deep). A TorchScript
module cannot be hooked (torch refuses forward hooks on ScriptModules), so it is scored on
CL only: no map, no CAM-COS, no faithfulness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_models.errors import ConfigError
from fer_models.registry import MODELS
from fer_models.zoo import InputSpec, ZooEntry, ZooModel, class_order


def _common(options: dict[str, Any], need: tuple[str, ...]) -> tuple[Path, tuple[str, ...], InputSpec]:
    missing = [f"--{k}" for k in need if not options.get(k)]
    if missing:
        raise ConfigError(f"a bring-your-own model needs {', '.join(missing)} (see `fer-orch audit --help`)")
    path = Path(options["weights"]).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights {path} is not a file")
    classes = tuple(c.strip() for c in str(options["classes"]).split(",") if c.strip())
    return path, classes, InputSpec.parse(options["input"])


def layer_map(names: list[str]) -> dict[int, str]:
    """Up to five module names, shallow to deep, as paper layers ending at 5."""
    names = names[-5:]
    return {5 - len(names) + 1 + i: n for i, n in enumerate(names)}


@MODELS.register("torchscript", byo=True, weights="--weights FILE (a torch.jit.save file)")
class TorchScriptModel(ZooEntry):
    """Your TorchScript network (--weights FILE --classes ... --input SIZE,gray|rgb,NORM): CL only."""

    name = "torchscript"
    weights = "--weights: a TorchScript file (torch.jit.save)"

    def check(self, **options: Any) -> None:
        class_order(_common(options, ("weights", "classes", "input"))[1])

    def load(self, cam_class: str = "GradCAM", **options: Any) -> ZooModel:
        path, classes, spec = _common(options, ("weights", "classes", "input"))
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            raise ConfigError(f"--weights {path} is not a TorchScript file ({str(e).splitlines()[0]})") from e
        return ZooModel(net, self.name, spec, classes, {}, cam_class).eval()


@MODELS.register("timm", byo=True, weights="--weights FILE (a state dict of --arch)")
class TimmModel(ZooEntry):
    """A timm architecture (--arch NAME) with your weights (--weights FILE --classes ... --input ...)."""

    name = "timm"
    weights = "--weights: a state dict of the timm architecture --arch"

    def check(self, **options: Any) -> None:
        class_order(_common(options, ("arch", "weights", "classes", "input"))[1])

    def load(self, cam_class: str = "GradCAM", **options: Any) -> ZooModel:
        import timm

        path, classes, spec = _common(options, ("arch", "weights", "classes", "input"))
        try:
            net = timm.create_model(options["arch"], pretrained=False, num_classes=len(classes), in_chans=spec.channels)
        except RuntimeError as e:
            raise ConfigError(f"--arch '{options['arch']}' is not a timm architecture ({e})") from e
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ConfigError(f"--weights {path} does not fit timm '{options['arch']}' with {len(classes)} classes "
                              f"and {spec.channels} channel(s): {str(e).splitlines()[0]}") from e
        given = [n.strip() for n in str(options.get("layers") or "").split(",") if n.strip()]
        names = given or [f["module"] for f in getattr(net, "feature_info", [])]
        return ZooModel(net.eval(), self.name, spec, classes, layer_map(names), cam_class).eval()

    def build(self, **options: Any) -> nn.Module:
        return self.load(**options).net
