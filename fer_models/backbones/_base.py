"""Backbone base: a timm network that hands back the spatial features of paper 002's layers 1..5.

Every backbone returns ``dict[int, Tensor (B, C, h, w)]`` for the layers 1..5 (paper 002,
Table 3 numbering) so the AU loss (``fer_models.losses``) and the metrics can reach any
layer without changing the architecture. ``stage(l)`` gives the module whose output is
layer ``l`` (pytorch-grad-cam's target layer, analysis taps).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from fer_models.errors import MissingWeightsError
from fer_models.torch_utils import load_state_file

# transform(layer, features) -> features, applied between stages (ADL uses it); None = identity
StageTransform = Callable[[int, torch.Tensor], torch.Tensor] | None


class Backbone(nn.Module):
    family: str = "cnn"  # "cnn" | "vit"
    channels: dict[int, int]

    def forward(self, x: torch.Tensor, transform: StageTransform = None) -> dict[int, torch.Tensor]:
        raise NotImplementedError

    def stage(self, layer: int) -> nn.Module:
        raise NotImplementedError


def wants_pretrained(pretrained: str | bool | None) -> str | bool:
    """Normalise the config's ``pretrained`` (False, True, "true"/"false", or a path)."""
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("", "false", "no", "0", "none"):
        return False
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("true", "yes", "1"):
        return True
    return pretrained or False


def local_weights_only(name: str, pretrained: str | bool | None) -> str | bool:
    """``wants_pretrained`` for fer-orch's own CPU backbones: they have no hub weights."""
    pretrained = wants_pretrained(pretrained)
    if pretrained is True:
        raise MissingWeightsError(
            f"backbone '{name}' has no published pretrained weights; pass a local weights file or pretrained=False"
        )
    return pretrained


def timm_name(name: str, tag: str | None) -> str:
    """timm's ``architecture.tag`` (``resnet50.tv_in1k``); the bare architecture without a tag."""
    return f"{name}.{tag}" if tag else name


def create_timm(name: str, pretrained: str | bool, tag: str | None = None, **kwargs) -> nn.Module:
    """``timm.create_model`` with fer-orch's pretrained policy.

    ``True`` downloads the weights of ``name.tag`` from the timm/Hugging Face hub (timm's
    default tag of ``name`` when ``tag`` is None; a clear ``MissingWeightsError`` when
    offline); a path loads a local state_dict strictly (``weights_only=True``); ``False``
    starts from scratch.
    """
    import timm

    pretrained = wants_pretrained(pretrained)
    if pretrained is True:
        full = timm_name(name, tag)
        try:
            if _hub_reachable():
                return timm.create_model(full, pretrained=True, **kwargs)
            with _hub_offline():  # weights already in the local cache still load
                return timm.create_model(full, pretrained=True, **kwargs)
        except Exception as e:  # network, hub or cache failure
            raise MissingWeightsError(
                f"pretrained weights for '{full}' could not be fetched from the timm hub ({type(e).__name__}); "
                f"download them on a connected machine and pass their file path as --pretrained, or train from scratch"
            ) from None
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    # timm's own file loading turns strict off once it drops a classifier, which would hide
    # missing keys (the defect of paper 002's ADL code); we load strictly ourselves.
    model = timm.create_model(name, pretrained=False, **kwargs)
    load_local_weights(model, pretrained, name)
    return model


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick check, so an offline machine fails in seconds, not after the hub client's retries."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def load_local_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a local state_dict strictly, ignoring only a classifier head the backbone lacks."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"pretrained weights file '{path}' for backbone '{name}' does not exist; pass an existing .pth/.pt file or pretrained=False"
        )
    state = load_state_file(path, what="pretrained weights file",
                            fix=f"pass weights of backbone '{name}' saved with torch.save(state_dict, path), "
                                f"or pretrained=False")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = set(model.state_dict())
    # ImageNet checkpoints carry a 1000-way head that our headless backbone does not have.
    head = [k for k in state if k not in own and k.split(".")[0] in ("fc", "head", "classifier", "head_dist")]
    state = {k: v for k, v in state.items() if k not in head}
    pe = getattr(model, "pos_embed", None)
    if pe is not None and "pos_embed" in state and state["pos_embed"].shape != pe.shape:
        # a ViT checkpoint for another input size: resample its position grid (as timm does)
        from timm.layers import resample_abs_pos_embed

        p = int(getattr(model, "num_prefix_tokens", 1))
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=model.patch_embed.grid_size, num_prefix_tokens=p
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise MissingWeightsError(
            f"weights file '{path}' does not match backbone '{name}' ({first}); pass the weights of that exact architecture"
        ) from None
