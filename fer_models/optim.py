"""The optimiser and its per-step learning-rate schedule of one training run (``fer_models.train``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from fer_models.config import OPTIMIZERS, SCHEDULERS, TrainConfig
from fer_models.errors import ConfigError


def param_groups(cfg: TrainConfig, model: torch.nn.Module) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: ``backbone`` at ``cfg.lr`` and ``head`` at ``cfg.head_lr``.

    ``head`` is what the method adds to its encoder (:meth:`FERModel.new_modules`; a seed
    network is all new) plus the encoder layers ``cfg.head_layers``. Paper 002's released
    code puts ResNet's layer4 in the head's group (the WSOL recipe it builds on): its
    ``head_layers`` is ``(5,)``. With no ``head_lr`` and no ``head_layers`` there is one group.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.head_lr is None and not cfg.head_layers:
        return [{"name": "all", "params": trainable, "lr": cfg.lr}]
    head_ids: set[int] = set()
    new_modules = getattr(model, "new_modules", None)
    for m in (new_modules() if callable(new_modules) else []):
        head_ids.update(id(p) for p in m.parameters())
    backbone = getattr(model, "backbone", None)
    for layer in cfg.head_layers:
        if backbone is None:
            break
        head_ids.update(id(p) for p in backbone.stage(int(layer)).parameters())
    head = [p for p in trainable if id(p) in head_ids]
    rest = [p for p in trainable if id(p) not in head_ids]
    head_lr = cfg.lr if cfg.head_lr is None else cfg.head_lr
    groups = [{"name": "backbone", "params": rest, "lr": cfg.lr}, {"name": "head", "params": head, "lr": head_lr}]
    return [g for g in groups if g["params"]]


def _fused_ok(model: torch.nn.Module) -> bool | None:
    """True when every trainable parameter is a floating tensor on a CPU or CUDA device (where
    PyTorch's fused Adam runs), else None (PyTorch's default)."""
    params = [p for p in model.parameters() if p.requires_grad]
    ok = params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok else None


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``sgd`` (momentum, weight decay, ``nesterov`` as paper 002's released code), ``adam`` or
    ``adamw``, over :func:`param_groups`. Adam and AdamW use PyTorch's fused kernel (one
    kernel over all parameters instead of a Python loop over them: 0.96x the CPU-preset CAM
    step, ``benchmarks/bench_cpu_step.py``) wherever the parameters' device has one."""
    groups = param_groups(cfg, model)
    fused = _fused_ok(model)
    name = cfg.optimizer.lower()
    if cfg.nesterov and name != "sgd":
        raise ConfigError(f"nesterov applies to SGD only, but the optimizer is '{cfg.optimizer}'")
    if name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("Nesterov SGD needs momentum > 0; set momentum or nesterov=false")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=bool(cfg.nesterov))
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    raise ConfigError(f"unknown optimizer '{cfg.optimizer}'; use {', '.join(OPTIMIZERS)}")


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """A per-step scheduler (``scheduler.step()`` after every optimiser step).

    ``step`` with ``lr_step`` > 0 is paper 002's released schedule, which steps once per
    epoch: every group's lr is ``max(lr0 * lr_gamma ** (epoch // lr_step), min_lr)``, held
    constant within an epoch. ``step`` with ``lr_step`` = 0 keeps fer-orch's x0.1 at 1/3 and
    2/3 of the run.

    ``cosine`` with ``warmup_epochs`` w > 0: the lr rises linearly over the first w epochs' steps
    (from lr / warm-up steps to lr), then follows the cosine from lr to 0 over the rest (the
    ViT recipes' warm-up, e.g. DeiT's).
    """
    name = cfg.scheduler.lower()
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(round(float(cfg.warmup_epochs) * steps_per_epoch))
    if name == "cosine" and 0 < warm < total:
        def warm_cosine(s: int) -> float:
            if s < warm:
                return (s + 1) / warm
            return 0.5 * (1.0 + math.cos(math.pi * (s - warm) / (total - warm)))

        return torch.optim.lr_scheduler.LambdaLR(opt, warm_cosine)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if name == "step" and cfg.lr_step > 0:
        per_epoch, every, gamma = max(1, steps_per_epoch), int(cfg.lr_step), float(cfg.lr_gamma)

        def factor(base: float):
            floor = cfg.min_lr / base if base > 0 else 0.0
            return lambda s: max(gamma ** ((s // per_epoch) // every), floor)

        return torch.optim.lr_scheduler.LambdaLR(opt, [factor(g["lr"]) for g in opt.param_groups])
    if name == "step":
        marks = sorted({max(1, total // 3), max(1, 2 * total // 3)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=marks, gamma=0.1)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    raise ConfigError(f"unknown scheduler '{cfg.scheduler}'; use {', '.join(SCHEDULERS)}")
