"""One training run: data, model, optimiser, schedule, AU alignment loss, checkpoint selection.

``train(cfg, run_dir)`` (docs/contracts.md, "Training"):

- seeds torch, numpy and random from ``cfg.seed``; builds the loaders
  (``fer_models.data.dataset.build_loaders``: validation carved from train by the reader,
  never test) and the model (``fer_models.methods.build_model``);
- optimiser ``sgd`` (paper 002; momentum, weight decay), ``adam`` or ``adamw``; schedule
  ``cosine`` (per step, to 0 at the last step), ``step`` (x0.1 at 1/3 and 2/3 of the epochs)
  or ``none``; AMP (bf16 where supported, else fp16 with a grad scaler) only on CUDA;
  channels_last on every device (on CPU a CPU-preset step takes ~0.65x the time);
- loss per batch: the method's classification loss (+ lambda * AU alignment, Eq. 3, on
  ``cfg.layers`` when ``cfg.au``); a method may first transform the batch (CutMix);
- after each epoch: validation CL / CAM-COS / ATT-COS, the checkpoint (every
  ``cfg.checkpoint_every`` epochs and the last, ``fer_models.checkpoints``: the weights and
  the optimiser written by a background thread during validation, then ``run_dir/checkpoint.pt``
  naming them with the epoch, best, history and torch RNG), ``run_dir/best.pt`` (state_dict
  only, a hard link to the best epoch's weights), then ``on_epoch(epoch, metrics)``;
- resumes from ``checkpoint.pt`` (``resume=True``) at the epoch after the saved one; the
  data order of the remaining epochs is not the one an uninterrupted run would have seen
  (the loaders restart their seeded shuffles);
- finally evaluates ``best.pt`` on test (metrics, confusion, cosine matrix, mean maps, and the
  deletion / insertion faithfulness of the CAM and the attention, ``fer_models.faithfulness``)
  and writes ``run_dir/test_metrics.json``; the result carries that evaluation and the
  validation metrics of the selected epoch, so callers log them without re-deriving them.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fer_models.checkpoints import CheckpointWriter, fill_checkpoint, is_checkpoint
from fer_models.checkpoints import atomic_save as _atomic_save  # noqa: F401 (the trainer's writer, tested by name)
from fer_models.config import OPTIMIZERS, SCHEDULERS, TrainConfig, au_loss_weight, validate
from fer_models.errors import ConfigError, StateDictError
from fer_models.faithfulness import faithfulness_scores
from fer_models.losses import total_loss
from fer_models.metrics import EvalResult, ReferenceMaps, eval_options, evaluate, to_device
from fer_models.torch_utils import load_state_file

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    best_path: Path  # run_dir/best.pt, a state_dict
    best_epoch: int  # 1-based, as ``on_epoch`` and the history number epochs
    best_val: dict[str, float]  # validation metrics of best_epoch: cl, cam_cos, att_cos
    test: EvalResult  # best.pt on test: metrics, confusion, cosine matrix, mean maps
    history: list[dict[str, float]]  # one row per epoch: "epoch" and on_epoch's metrics
    seconds: float = 0.0  # wall time of this call (training + evaluation)
    num_classes: int = 7
    class_names: list[str] | None = None  # the name of each output (a class subset's), from the test loader
    backbone: str | None = None  # the backbone actually used (see methods.resolve_backbone)
    weights: str | None = None  # its weights: "tag:<timm tag>", "file:<path>" or "none" (methods.weights_of)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was requested but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


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


PROGRESS_EVERY = 20  # steps between two reads of the running loss for the progress bar


def compiled_forward(model: torch.nn.Module, cfg: TrainConfig) -> Callable:
    """The training forward: ``torch.compile(model)`` when ``cfg.compile`` (opt-in; see the
    README's performance section for what it gives), else the model itself. Weights,
    checkpoints and evaluation use the uncompiled ``model``, which shares its parameters."""
    if not cfg.compile:
        return model
    return torch.compile(model)


def amp_settings(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """Autocast on CUDA only when ``cfg.amp``: bf16 where supported, else fp16 (with a scaler)."""
    use_amp = device.type == "cuda" and cfg.amp
    return use_amp, torch.bfloat16 if (use_amp and torch.cuda.is_bf16_supported()) else torch.float16


def train_epoch(model: torch.nn.Module, batches: Any, opt: torch.optim.Optimizer, sched: Any, scaler: Any,
                cfg: TrainConfig, device: torch.device, *, forward: Callable | None = None,
                bar: Any = None) -> tuple[torch.Tensor, int]:
    """One pass of training steps over ``batches`` -> (sums of loss, ce, align on ``device``, steps).

    Per batch: the method's ``transform_batch``, forward (``forward``, default ``model``; the
    compiled one with ``cfg.compile``) under autocast, classification loss + lambda * AU
    alignment (Eq. 3, on ``cfg.layers`` when ``cfg.au``), backward, optimiser and per-step
    scheduler. The sums stay on the device and are read by the caller once per epoch (and
    here every PROGRESS_EVERY steps when a progress ``bar`` is given): reading them each step
    would make the CPU wait for the GPU and undo the loader's prefetch. They are
    float64, the sum a per-step ``float()`` loop gave.
    """
    forward = model if forward is None else forward
    use_amp, amp_dtype = amp_settings(cfg, device)
    layers = tuple(int(l) for l in cfg.layers)
    lam = au_loss_weight(cfg)  # 0 without the AU loss (fer_models.config.au_loss_on)
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    n = 0
    for batch in batches:
        batch = to_device(batch, device)
        if cfg.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        batch = model.transform_batch(batch)
        with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
            out = forward(batch["image"], labels=batch["label"])
            ce = model.classification_loss(out, batch)
            if lam > 0:
                loss, align = total_loss(ce, out.features, batch["au_map"], batch["au_valid"], layers, lam)
            else:
                loss, align = ce, ce.new_zeros(())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        n += 1
        sums += torch.stack((loss.detach(), ce.detach(), align.detach())).double()
        if bar is not None and n % PROGRESS_EVERY == 0:
            mean = (sums / n).tolist()
            bar.set_postfix(loss=f"{mean[0]:.3f}", align=f"{mean[2]:.3f}")
    return sums, n


def check_finite_loss(epoch: int, loss: float, align: float, cfg: TrainConfig) -> None:
    """Stop a diverged training (a NaN or infinite mean loss) in one sentence naming the
    epoch, the value and the likely cause, before its weights are saved or reported."""
    if math.isfinite(loss):
        return
    from fer_models.errors import DivergedError

    if au_loss_weight(cfg) > 0 and not math.isfinite(align):
        cause = f"the AU loss weight (--lambda {cfg.lam:g}) or the learning rate (--lr {cfg.lr:g}) is too large"
    else:
        cause = f"the learning rate (--lr {cfg.lr:g}) is too large"
    raise DivergedError(f"training diverged: the mean loss of epoch {epoch} is {loss}; likely {cause}; "
                        "lower it and train again (the diverged epoch's weights were not saved)")


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    on_epoch: EpochCallback | None = None,
    resume: bool = True,
    loaders: Any = None,
    progress: bool = True,
    cache_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir``; ``loaders`` (train/val/test/num_classes) overrides the data.

    ``cache_dir``, the already prepared cache of ``cfg.data``, spares reading the dataset
    and hashing its cache key (the grid passes the one its preprocessing returned).
    """
    from tqdm.auto import tqdm

    from fer_models.methods import build_model, trains_as

    t0 = time.perf_counter()
    validate(cfg, names=False)  # numbers and ranges; names are checked where the model and data are built
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    seed_everything(cfg.seed)

    if loaders is None:
        from fer_models.data.dataset import build_loaders

        loaders = build_loaders(cfg.data, cfg.batch_size, cfg.seed, cache_root, progress=progress,
                                cache_dir=cache_dir, device=device, channels_last=cfg.channels_last)
    if cfg.target != "expression":  # identity labels and count (paper 003), fer_models.data.targets
        from fer_models.data.targets import with_target

        loaders = with_target(loaders, cfg.target)
    num_classes = int(loaders.num_classes)
    model = build_model(cfg, num_classes).to(device)
    if cfg.channels_last:  # CPU too: oneDNN's NHWC convolutions (benchmarks/bench_trial_phases.py)
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg, model)
    steps = max(1, len(loaders.train))
    sched = make_scheduler(cfg, opt, steps)
    use_amp, amp_dtype = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    att_layer = max(int(l) for l in cfg.layers)  # paper 002, Table 2: ATT-COS at the top aligned layer

    ckpt_path, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    start, best_epoch, best_cl, history = 1, 0, -math.inf, []
    borrowed = False  # resumed from the checkpoint of another method that trains as this one
    if resume and ckpt_path.exists():
        fix = "delete it, or pass --no-resume (resume=False), to train this run from scratch"
        state = load_state_file(ckpt_path, device, what="checkpoint", fix=fix)
        if not is_checkpoint(state):
            raise StateDictError(f"checkpoint '{ckpt_path}' is not a fer-orch training checkpoint; {fix}")
        trained_by = str(state.get("method", cfg.method))
        if trains_as(trained_by) != trains_as(cfg.method):
            raise StateDictError(f"checkpoint '{ckpt_path}' trained method '{trained_by}', not '{cfg.method}'; {fix}")
        state = fill_checkpoint(run_dir, state, device, fix)
        borrowed = trained_by != cfg.method.lower()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            torch.set_rng_state(state["rng"].cpu())
        start = int(state["epoch"]) + 1
        best_epoch, best_cl = int(state["best"]["epoch"]), float(state["best"]["cl"])
        history = list(state["history"])
        if borrowed:  # another method's explainer measured these; this one's is measured below
            history = [{**h, "val_cam_cos": float("nan")} for h in history]

    forward = compiled_forward(model, cfg)
    writer = CheckpointWriter(run_dir, cfg.checkpoint_every, cfg.checkpoint_minutes)
    val_refs = ReferenceMaps()  # the released reference maps of the validation split, rendered once
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    for epoch in range(start, cfg.epochs + 1):
        te = time.perf_counter()
        bar = tqdm(loaders.train, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        sums, n_batches = train_epoch(model, bar, opt, sched, scaler, cfg, device, forward=forward,
                                      bar=bar if progress else None)
        if n_batches == 0:
            raise ConfigError("the training split gave no batch; lower batch_size or check the dataset")
        train_loss, train_ce, train_align = (sums / n_batches).tolist()  # the epoch's one read
        check_finite_loss(epoch, train_loss, train_align, cfg)  # before anything of this epoch is written
        if writer.due(epoch, cfg.epochs):  # written by a background thread while validation runs
            writer.start(epoch, model, opt, sched, scaler)
        val = evaluate(model, loaders.val, num_classes=num_classes, att_layer=att_layer, device=device,
                       progress=progress, desc="val", ref_maps=val_refs, **eval_options(cfg))
        metrics = {
            "train_loss": train_loss,
            "train_ce": train_ce,
            "train_align": train_align,
            "val_cl": val.metrics["cl"],
            "val_cam_cos": val.metrics.get("cam_cos", float("nan")),
            "val_att_cos": val.metrics.get("att_cos", float("nan")),
            "lr": float(opt.param_groups[0]["lr"]),
            "epoch_seconds": time.perf_counter() - te,
        }
        history.append({"epoch": float(epoch), **metrics})
        vcl = metrics["val_cl"]
        # best validation accuracy; without a validation split, the latest epoch
        is_best = best_epoch == 0 or not _finite(vcl) or vcl > best_cl
        if is_best:
            best_epoch, best_cl = epoch, (vcl if _finite(vcl) else -math.inf)
        record = {"method": cfg.method.lower(), "epoch": epoch, "best": {"epoch": best_epoch, "cl": best_cl},
                  "history": history, "rng": torch.get_rng_state()}
        writer.finish(epoch, record, is_best, model)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    writer.close()

    model.load_state_dict(load_state_file(best_path, device, what="best weights",
                                          fix="delete the run folder's checkpoint.pt and best.pt to train again"))
    test = evaluate(model, loaders.test, num_classes=num_classes, att_layer=att_layer, device=device,
                    mean_maps=True, progress=progress, desc="test", **eval_options(cfg))
    test_rows = getattr(loaders.test, "dataset", None)  # None: a plain list of batches (tests)
    if test_rows is not None:
        test.metrics.update(faithfulness_scores(model, test_rows, n=cfg.faithfulness_n,
                                                steps=cfg.faithfulness_steps, device=device, target=cfg.target))
    seconds = time.perf_counter() - t0
    (run_dir / "test_metrics.json").write_text(
        json.dumps({"best_epoch": best_epoch, "seconds": seconds, **test.metrics}, indent=2)
    )
    best_row = next(h for h in history if int(h["epoch"]) == best_epoch)
    best_val = {k[len("val_"):]: v for k, v in best_row.items() if k.startswith("val_")}
    if borrowed:  # the best epoch's validation maps with this method's explainer
        val = evaluate(model, loaders.val, num_classes=num_classes, att_layer=att_layer, device=device,
                       progress=progress, desc="val", ref_maps=val_refs, **eval_options(cfg))
        best_val["cam_cos"] = val.metrics.get("cam_cos", float("nan"))
    return TrainResult(
        best_path=best_path,
        best_epoch=best_epoch,
        best_val=best_val,
        test=test,
        history=history,
        seconds=seconds,
        num_classes=num_classes,
        class_names=test.class_names,
        backbone=getattr(model, "backbone_name", None),
        weights=getattr(model, "weights", None),
    )
