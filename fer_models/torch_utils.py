"""Small torch helpers shared by fer_models and fer_analysis (which imports them from here:
the package layering lets arrows point down only).

- :class:`LogitsOnly`: a model whose forward returns a ``ModelOutput`` (or a tuple) seen as
  ``model(x) -> logits``, which captum and pytorch-grad-cam expect;
- :func:`hook_count` / :func:`assert_no_hooks`: the check, after every hook-using call, that a
  model carries no forward/backward hook any more (docs/architecture.md, Conventions);
- :func:`minmax`: per-map min-max normalisation to [0, 1], the display and metric
  convention of every class map in the project.
"""

from __future__ import annotations

import torch
from torch import nn

# the hook dictionaries torch keeps on every module (``_backward_pre_hooks`` since torch 2.0)
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooks(model: nn.Module) -> list[tuple[str, str, int]]:
    """(module name, hook dict, how many hooks) for every non-empty hook dict of ``model``."""
    return [(name or "<root>", attr, len(getattr(m, attr)))
            for name, m in model.named_modules() for attr in _HOOK_DICTS if getattr(m, attr, None)]


def hook_count(model: nn.Module) -> int:
    """Number of forward / forward-pre / backward(-pre) hooks on ``model`` and its modules."""
    return sum(n for _, _, n in _hooks(model))


def assert_no_hooks(model: nn.Module) -> None:
    """Raise ``AssertionError`` naming the modules that still carry a hook."""
    left = [f"{name}.{attr}" for name, attr, _ in _hooks(model)]
    if left:
        raise AssertionError(f"hooks left on the model: {', '.join(left)}")


class LogitsOnly(nn.Module):
    """Wraps a model whose forward returns a ``ModelOutput`` (or tuple) so that it returns
    the logits tensor, as captum and pytorch-grad-cam expect. Shares the wrapped model's
    modules (hooks set on its layers see the same calls)."""

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


def minmax(m: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-map min-max normalisation of (B, ..., h, w) maps over their last two dims to [0, 1].

    A flat map (max - min = 0) becomes zeros; the span is clamped at ``eps``, so a map whose
    span is below ``eps`` is scaled by ``1/eps`` (and stays below 1) instead of blown up.
    """
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(eps)


def load_state_file(path, map_location="cpu", *, what: str = "weights file", fix: str = "") -> dict:
    """``torch.load(path, weights_only=True)`` that must give a dict (a state dict or a
    checkpoint); anything else, a truncated file or one holding arbitrary Python objects, is
    one :class:`~fer_models.errors.StateDictError` sentence naming the file.

    torch's own message for the last case advises ``weights_only=False``, which would run
    whatever code the file holds: that advice is never passed on.
    """
    import pickle
    from pathlib import Path

    from fer_models.errors import StateDictError

    path = Path(path)
    fix = fix or "pass a file written by torch.save(model.state_dict(), path)"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        reason = "it is corrupt, or holds Python objects other than tensors, which fer-orch does not load"
    except FileNotFoundError:
        raise StateDictError(f"{what} '{path}' does not exist; {fix}") from None
    except Exception as e:  # noqa: BLE001 - truncated zip (RuntimeError), empty (EOFError), garbage (KeyError...)
        reason = f"it is truncated or not a torch file: {type(e).__name__}"
    else:
        if isinstance(state, dict):
            return state
        reason = f"it holds a {type(state).__name__}, not a dict of tensors"
    raise StateDictError(f"{what} '{path}' is not a valid state dict ({reason}); {fix}")


def first_state_mismatch(own: dict, state: dict, skip: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The first parameter name (sorted; missing, then unexpected, then wrong shape) in which
    ``state`` does not fit a model whose state dict is ``own``; None when it fits. ``skip``:
    parameters of ``own`` the file need not hold (new layers). Used to turn a strict
    ``load_state_dict`` failure into one sentence naming the parameter."""
    missing = sorted(set(own) - set(state) - set(skip))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    bad = missing or unexpected or wrong
    return bad[0] if bad else None
