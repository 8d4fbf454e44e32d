"""Feature taps and model patches that always undo themselves (docs/architecture.md, Conventions).

Every helper here is a context manager: hooks are registered on entry and removed in a
``finally`` block, so a model comes back unchanged after a normal exit *and* after an
exception. :func:`assert_no_hooks` is what the tests (and the explain jobs, after each
job) use to check that nothing was left behind; it, :func:`hook_count` and
:class:`LogitsOnly` live in ``fer_models.torch_utils`` (the methods use them too) and are
re-exported here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from fer_models.errors import ConfigError, UnknownNameError
from fer_models.torch_utils import LogitsOnly, assert_no_hooks, hook_count

__all__ = [
    "NotApplicableError", "LogitsOnly", "assert_no_hooks", "hook_count", "tap_layers", "resolve_layer",
    "first_tensor", "capture", "patch_input", "relus_not_inplace",
]


class NotApplicableError(ConfigError):
    """An analysis does not apply to this model (e.g. backtracking on a GAP head, guided
    backprop without ReLUs). Jobs report it as *skipped* with this message, not as a crash."""


def tap_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the analysis may hook: ``model.tap_layers()`` (models contract), else
    every ``nn.Conv2d`` and ``nn.Linear`` by its module name (plain torch models, tests)."""
    if hasattr(model, "tap_layers"):
        layers = dict(model.tap_layers())
        if layers:
            return layers
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """A layer name (or a module of the model) -> ``(name, module)``, with a clear error.

    Names: paper 004's Keras names on the networks that have them (``fer_analysis.layers``:
    ``conv2d_4`` is the post-ELU map of the light CNN), then the tap layers, then any
    submodule by its dotted path."""
    from fer_analysis.layers import keras_module

    if isinstance(layer, str):
        keras = keras_module(model, layer)
        if keras is not None:
            return layer, keras
    layers = tap_layers(model)
    if isinstance(layer, nn.Module):
        for n, m in layers.items():
            if m is layer:
                return n, m
        for n, m in model.named_modules():
            if m is layer:
                return n, m
        raise ConfigError("the given layer module is not part of the model; pass one of its tap layers")
    if layer in layers:
        return layer, layers[layer]
    named = dict(model.named_modules())
    if layer and layer in named:  # any submodule by its dotted path (not the model itself)
        return layer, named[layer]
    raise UnknownNameError(
        f"unknown layer '{layer}'; this model's tap layers are: {', '.join(layers) or '(none)'}"
    )


def first_tensor(out: Any) -> torch.Tensor | None:
    """The tensor a module's output stands for: itself, the first of a tuple, or ``.logits``
    of a ``ModelOutput``; None when there is none."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    logits = getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else None


@contextlib.contextmanager
def capture(
    modules: Mapping[str, nn.Module], *, inputs: bool = False, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output (or, with ``inputs=True``, the first input) of each named module.

    ``with capture({"conv3": m.conv3}) as acts: model(x)`` leaves ``acts["conv3"]`` set to
    the last output seen (see :func:`first_tensor`; a module with no tensor output is not
    recorded). ``detach=False`` keeps the very tensor objects, so that a module that passes
    another's output through unchanged is recognised by identity (``fer_analysis.embeddings``).
    The hooks are removed on exit, also when the body raises.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str, t: torch.Tensor | None) -> None:
        if t is not None:
            store[name] = t.detach() if detach else t

    def make(name: str):
        if inputs:
            return lambda _m, args: keep(name, args[0])
        return lambda _m, _args, out: keep(name, first_tensor(out))

    try:
        for name, mod in modules.items():
            fn = make(name)
            handles.append(
                mod.register_forward_pre_hook(fn) if inputs else mod.register_forward_hook(fn)
            )
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def patch_input(module: nn.Module, fn) -> Iterator[None]:
    """Replace the first input of ``module`` by ``fn(input)`` during the block (e.g. zeroing
    backtracked activations before the first dense layer, paper 003 Table 3)."""

    def pre(_m, args):
        return (fn(args[0]), *args[1:])

    h = module.register_forward_pre_hook(pre)
    try:
        yield
    finally:
        h.remove()


@contextlib.contextmanager
def relus_not_inplace(model: nn.Module) -> Iterator[int]:
    """Set ``inplace=False`` on every ``nn.ReLU`` for the block, then restore the flags.

    Captum's guided backprop / deconvnet override ReLU gradients with module backward
    hooks, which PyTorch refuses on in-place ReLUs ("a view ... modified inplace"); models
    built for speed often use ``ReLU(inplace=True)``. Yields how many ReLU modules there are;
    raises when there are none, because captum would then silently return plain gradients.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise NotApplicableError(
            "guided backprop and deconvnet need the model's ReLUs to be nn.ReLU modules, but "
            "this model has none (it uses other activations or functional relu), so they do not apply to it"
        )
    saved = [m.inplace for m in relus]
    try:
        for m in relus:
            m.inplace = False
        yield len(relus)
    finally:
        for m, s in zip(relus, saved):
            m.inplace = s
