"""What one training step of a config costs, counted on the ``meta`` device (no memory, no
weights, seconds on a CPU): FLOPs per image and the memory a trial needs on its GPU.

- FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` over the forward, the loss (with
  the AU term when ``cfg.au``) and the backward of one batch; a multiply-add is 2 FLOPs.
- Activations: the bytes autograd saves for the backward during the forward
  (``torch.autograd.graph.saved_tensors_hooks``; tensors saved twice are counted once),
  counted in fp32 and halved for bf16 autocast (convolution and matmul inputs are saved in
  bf16; BatchNorm keeps fp32 statistics, a small share), so an estimate within ~10 %.
- Peak = activations + weights, gradients and the optimiser state (fp32; SGD with momentum
  one buffer, Adam two) + a fixed allowance for the CUDA context and cuDNN workspaces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

CUDA_OVERHEAD_GIB = 2.0  # CUDA context, cuDNN / cuBLAS workspaces, allocator slack


def _meta_step(cfg: Any, batch: int, num_classes: int) -> tuple[float, float, int]:
    """(FLOPs, saved-activation bytes in fp32, parameter count) of one training step of ``cfg``
    on a batch of ``batch`` images, on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from fer_models.config import au_loss_weight
    from fer_models.losses import total_loss
    from fer_models.methods import build_model

    cfg = dataclasses.replace(cfg, pretrained=False, device="cpu")
    with torch.device("meta"):
        model = build_model(cfg, num_classes).train()
        size, m = int(cfg.data.image_size), int(cfg.data.map_size)
        x = torch.empty(batch, 3, size, size)
        y = torch.zeros(batch, dtype=torch.long)
        batch_d = {"image": x, "label": y, "au_map": torch.empty(batch, 1, m, m),
                   "au_valid": torch.ones(batch, dtype=torch.bool)}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if isinstance(t, torch.nn.Parameter) or t.requires_grad and t.is_leaf:
            return t  # a weight, counted with the parameters
        key = t.untyped_storage()._cdata  # the storage itself (alive until the backward): views count once
        saved[key] = max(saved.get(key, 0), t.untyped_storage().nbytes())
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, labels=y)
        ce = model.classification_loss(out, batch_d)
        layers = tuple(int(l) for l in cfg.layers)
        lam = au_loss_weight(cfg)
        loss = total_loss(ce, out.features, batch_d["au_map"], batch_d["au_valid"], layers, lam)[0] if lam > 0 else ce
        loss.backward()
    params = sum(p.numel() for p in model.parameters())
    return float(counter.get_total_flops()), float(sum(saved.values())), params


_COUNTED: dict[str, tuple[float, float, int]] = {}  # one count per network, input and loss


def _counted(cfg: Any, probe: int, num_classes: int) -> tuple[float, float, int]:
    """:func:`_meta_step`, once per distinct network, input size and loss (the dataset, its
    batch size and the schedule do not change the per-image count)."""
    import json

    from fer_models.config import to_dict

    d = to_dict(cfg)
    for k in ("batch_size", "epochs", "seed", "device", "lr", "head_lr", "scheduler", "lr_step", "lr_gamma"):
        d.pop(k, None)
    d["data"] = {k: d["data"][k] for k in ("image_size", "map_size", "color") if k in d["data"]}
    key = json.dumps([d, probe, num_classes], sort_keys=True, default=str)
    if key not in _COUNTED:
        _COUNTED[key] = _meta_step(cfg, probe, num_classes)
    return _COUNTED[key]


def step_cost(cfg: Any, num_classes: int = 7, batch: int | None = None, bf16: bool = True) -> dict[str, float]:
    """GFLOP per training image and the estimated peak GPU memory (GiB) of ``cfg`` at its
    batch size (or ``batch``); see the module docstring."""
    b = int(batch or cfg.batch_size)
    probe = 2  # counted on 2 images and scaled: both are linear in the batch
    flops, act, params = _counted(cfg, probe, num_classes)
    act_gib = act / probe * b / 2**30 * (0.5 if bf16 else 1.0)
    states = 2 if cfg.optimizer.lower() in ("adam", "adamw") else (1 if cfg.momentum > 0 else 0)
    static_gib = params * 4 * (2 + states) / 2**30
    return {"gflop_per_img": flops / probe / 1e9, "params_m": params / 1e6, "activation_gib": act_gib,
            "static_gib": static_gib, "peak_gib": act_gib + static_gib + CUDA_OVERHEAD_GIB, "batch": float(b)}
