"""Feature taps and model patches that always undo themselves (DESIGN.md, Conventions).

Every helper here is a context manager: hooks are registered on entry and removed in a
``finally`` block, so a model comes back unchanged after a normal exit *and* after an
exception. :func:`assert_no_hooks` is what the tests (and the explain jobs, after each
job) use to check that nothing was left behind.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import torch
from torch import nn

from fer_models.errors import ConfigError, UnknownNameError

class NotApplicableError(ConfigError):
    """An analysis does not apply to this model (e.g. backtracking on a GAP head, guided
    backprop without ReLUs). Jobs report it as *skipped* with this message, not as a crash."""


def hook_count(model: nn.Module) -> int:
    """Number of forward / forward-pre / backward(-pre) hooks on ``model`` and its modules."""
    n = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            n += len(getattr(m, attr, {}) or {})
    return n


def assert_no_hooks(model: nn.Module) -> None:
    """Raise ``AssertionError`` naming the modules that still carry a hook."""
    left = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, attr, None):
                left.append(f"{name or '<root>'}.{attr}")
    if left:
        raise AssertionError(f"hooks left on the model: {', '.join(left)}")


def tap_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the analysis may hook: ``model.tap_layers()`` (models contract), else
    every ``nn.Conv2d`` and ``nn.Linear`` by its module name (plain torch models, tests)."""
    if hasattr(model, "tap_layers"):
        layers = dict(model.tap_layers())
        if layers:
            return layers
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """A tap-layer name (or a module of the model) -> ``(name, module)``, with a clear error."""
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
    if layer in named:
        return layer, named[layer]
    raise UnknownNameError(
        f"unknown layer '{layer}'; this model's tap layers are: {', '.join(layers) or '(none)'}"
    )


@contextlib.contextmanager
def capture(
    modules: Mapping[str, nn.Module], *, inputs: bool = False, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output (or, with ``inputs=True``, the first input) of each named module.

    ``with capture({"conv3": m.conv3}) as acts: model(x)`` leaves ``acts["conv3"]`` set to
    the last output seen. The hooks are removed on exit, also when the body raises.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str):
        if inputs:

            def pre(_m, args):
                t = args[0]
                store[name] = t.detach() if detach else t

            return pre

        def post(_m, _args, out):
            t = out if torch.is_tensor(out) else out[0]
            store[name] = t.detach() if detach else t

        return post

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


class LogitsOnly(nn.Module):
    """Wraps a model whose forward returns a ``ModelOutput`` (or tuple) so that it returns
    the logits tensor, as captum expects. Shares the wrapped model's modules (hooks set on
    its layers see the same calls)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if torch.is_tensor(out):
            return out
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, (tuple, list)):
            return out[0]
        raise TypeError(f"cannot find logits in a {type(out).__name__}")


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's class logits for ``x``, whatever its forward returns."""
    return LogitsOnly(model)(x)
