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
- in a ``torch.distributed`` process group, trains data-parallel (``fer_models.distributed``:
  ``batch_size`` is the global batch; rank 0 validates, writes and returns the result);
- ``trained_by=M`` (:func:`evaluate_trained`): ``run_dir`` holds M's finished training of the
  same network (a Grad-CAM++ or LayerCAM twin of Grad-CAM); it is evaluated, not trained. A
  checkpoint of another method is never taken for this run's own;
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fer_models import distributed
from fer_models.checkpoints import CheckpointWriter, fill_checkpoint, is_checkpoint
from fer_models.checkpoints import atomic_save as _atomic_save  # noqa: F401 (the trainer's writer, tested by name)
from fer_models.config import TrainConfig, au_loss_weight, validate
from fer_models.distributed import World
from fer_models.errors import ConfigError, StateDictError
from fer_models.faithfulness import faithfulness_scores
from fer_models.losses import total_loss
from fer_models.optim import make_optimizer, make_scheduler, param_groups  # noqa: F401 (also imported from here)
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


@dataclass
class _Run:
    """What one training carries from phase to phase (:func:`train`)."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    loaders: Any
    train_batches: Any  # this rank's share of loaders.train (fer_models.distributed)
    num_classes: int
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    world: World
    att_layer: int  # paper 002, Table 2: ATT-COS at the top aligned layer
    start: int = 1
    best_epoch: int = 0
    best_cl: float = -math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    val_refs: ReferenceMaps = field(default_factory=ReferenceMaps)  # released maps of val, rendered once

    def evaluate(self, split: str, progress: bool, **kw: Any) -> EvalResult:
        loader = self.loaders.val if split == "val" else self.loaders.test
        refs = {"ref_maps": self.val_refs} if split == "val" else {}
        return evaluate(self.model, loader, num_classes=self.num_classes, att_layer=self.att_layer, device=self.device,
                        progress=progress, desc=split, **refs, **kw, **eval_options(self.cfg))


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
    trained_by: str | None = None,
) -> TrainResult | None:
    """Train ``cfg`` into ``run_dir``; ``loaders`` (train/val/test/num_classes) overrides the data.

    ``cache_dir``, the already prepared cache of ``cfg.data``, spares reading the dataset
    and hashing its cache key (the grid passes the one its preprocessing returned).
    ``trained_by``: ``run_dir`` already holds the finished training of that method, which
    trains the same network (:func:`evaluate_trained`); nothing is trained.

    In a ``torch.distributed`` process group every rank calls this (data-parallel training,
    ``fer_models.distributed``); rank 0 writes and returns the result, the others return None.
    """
    t0 = time.perf_counter()
    run = _setup(cfg, run_dir, loaders, progress, cache_root, cache_dir)
    if trained_by is not None:
        return _evaluate_borrowed(run, trained_by, progress, t0)
    if resume:
        _restore(run)
    _epochs(run, on_epoch, progress)
    return _finish(run, progress, t0) if run.world.main else None


def evaluate_trained(cfg: TrainConfig, run_dir: str | Path, trained_by: str, *, loaders: Any = None,
                     progress: bool = True, cache_root: str | Path | None = None,
                     cache_dir: str | Path | None = None) -> TrainResult:
    """Evaluate, with ``cfg.method``'s maps, the finished training of ``trained_by`` in
    ``run_dir`` (a method that trains the same network: Grad-CAM for Grad-CAM++ and LayerCAM,
    ``fer_models.methods.trains_as``). The result carries the trainer's per-epoch history
    without its validation CAM-COS (measured with the trainer's map) and the best epoch's
    validation CAM-COS measured again with this method's map."""
    return train(cfg, run_dir, loaders=loaders, progress=progress, cache_root=cache_root, cache_dir=cache_dir,
                 trained_by=trained_by)


def _setup(cfg: TrainConfig, run_dir: str | Path, loaders: Any, progress: bool, cache_root: Any,
           cache_dir: Any) -> _Run:
    """Seeds, device, data, model, optimiser, schedule and grad scaler of a fresh run."""
    from fer_models.methods import build_model

    validate(cfg, names=False)  # numbers and ranges; names are checked where the model and data are built
    w = distributed.world()
    distributed.check_batch(cfg.batch_size, w)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and w.parallel:  # the rank's own GPU (the launcher set it current)
        device = torch.device("cuda", torch.cuda.current_device())
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
    batches = distributed.shard(loaders.train, w)
    sched = make_scheduler(cfg, opt, max(1, len(batches)))
    use_amp, amp_dtype = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return _Run(cfg, run_dir, device, loaders, batches, num_classes, model, opt, sched, scaler, w,
                att_layer=max(int(l) for l in cfg.layers))


def _restore(run: _Run, trained_by: str | None = None) -> None:
    """Continue from ``run_dir/checkpoint.pt`` when there is one: weights, optimiser, schedule,
    scaler, RNG, best epoch and history. A checkpoint of another method is refused unless it
    is ``trained_by``'s (a twin evaluating its publisher's training)."""
    from fer_models.methods import trains_as

    cfg, ckpt_path = run.cfg, run.run_dir / "checkpoint.pt"
    if not ckpt_path.exists():
        return
    fix = "delete it, or pass --no-resume (resume=False), to train this run from scratch"
    state = load_state_file(ckpt_path, run.device, what="checkpoint", fix=fix)
    if not is_checkpoint(state):
        raise StateDictError(f"checkpoint '{ckpt_path}' is not a fer-orch training checkpoint; {fix}")
    method = str(state.get("method", cfg.method))
    if trains_as(method) != trains_as(cfg.method):
        raise StateDictError(f"checkpoint '{ckpt_path}' trained method '{method}', not '{cfg.method}'; {fix}")
    if method != cfg.method.lower() and method != trained_by:
        raise StateDictError(f"checkpoint '{ckpt_path}' was trained by '{method}' (the same network as "
                             f"'{cfg.method}'); evaluate it with evaluate_trained(..., trained_by='{method}'), or {fix}")
    state = fill_checkpoint(run.run_dir, state, run.device, fix)
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    if "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    if "rng" in state:
        torch.set_rng_state(state["rng"].cpu())
    run.start = int(state["epoch"]) + 1
    run.best_epoch, run.best_cl = int(state["best"]["epoch"]), float(state["best"]["cl"])
    run.history = list(state["history"])


def _epochs(run: _Run, on_epoch: EpochCallback | None, progress: bool) -> None:
    """Epochs ``run.start`` .. ``cfg.epochs``: train, validate, checkpoint (rank 0), report."""
    cfg = run.cfg
    forward = compiled_forward(distributed.wrap(run.model, run.device, run.world), cfg)
    writer = CheckpointWriter(run.run_dir, cfg.checkpoint_every, cfg.checkpoint_minutes) if run.world.main else None
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    for epoch in range(run.start, cfg.epochs + 1):
        metrics, is_best = _epoch(run, epoch, forward, writer, progress)
        if writer is not None:
            record = {"method": cfg.method.lower(), "epoch": epoch,
                      "best": {"epoch": run.best_epoch, "cl": run.best_cl},
                      "history": run.history, "rng": torch.get_rng_state()}
            writer.finish(epoch, record, is_best, run.model)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    if writer is not None:
        writer.close()


def _epoch(run: _Run, epoch: int, forward: Callable, writer: CheckpointWriter | None,
           progress: bool) -> tuple[dict[str, float], bool]:
    """One epoch's training steps and validation; its metrics and whether it is the best yet."""
    from tqdm.auto import tqdm

    cfg, te = run.cfg, time.perf_counter()
    bar = tqdm(run.train_batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
    sums, n_batches = train_epoch(run.model, bar, run.opt, run.sched, run.scaler, cfg, run.device,
                                  forward=forward, bar=bar if progress else None)
    if n_batches == 0:
        raise ConfigError("the training split gave no batch; lower batch_size or check the dataset")
    means = distributed.mean(sums / n_batches, run.world)  # the mean over all ranks' rows
    train_loss, train_ce, train_align = means.tolist()  # the epoch's one read
    check_finite_loss(epoch, train_loss, train_align, cfg)  # before anything of this epoch is written
    if writer is not None and writer.due(epoch, cfg.epochs):  # written by a background thread while validation runs
        writer.start(epoch, run.model, run.opt, run.sched, run.scaler)
    val = distributed.share(run.evaluate("val", progress).metrics if run.world.main else None, run.world)
    metrics = {
        "train_loss": train_loss,
        "train_ce": train_ce,
        "train_align": train_align,
        "val_cl": val["cl"],
        "val_cam_cos": val.get("cam_cos", float("nan")),
        "val_att_cos": val.get("att_cos", float("nan")),
        "lr": float(run.opt.param_groups[0]["lr"]),
        "epoch_seconds": time.perf_counter() - te,
    }
    run.history.append({"epoch": float(epoch), **metrics})
    vcl = metrics["val_cl"]
    # best validation accuracy; without a validation split, the latest epoch
    is_best = run.best_epoch == 0 or not _finite(vcl) or vcl > run.best_cl
    if is_best:
        run.best_epoch, run.best_cl = epoch, (vcl if _finite(vcl) else -math.inf)
    return metrics, is_best


def _finish(run: _Run, progress: bool, t0: float) -> TrainResult:
    """``best.pt`` on test (+ faithfulness), ``test_metrics.json``, the result."""
    cfg, best_path = run.cfg, run.run_dir / "best.pt"
    run.model.load_state_dict(load_state_file(best_path, run.device, what="best weights",
                                              fix="delete the run folder's checkpoint.pt and best.pt to train again"))
    test = run.evaluate("test", progress, mean_maps=True)
    test_rows = getattr(run.loaders.test, "dataset", None)  # None: a plain list of batches (tests)
    if test_rows is not None:
        test.metrics.update(faithfulness_scores(run.model, test_rows, n=cfg.faithfulness_n,
                                                steps=cfg.faithfulness_steps, device=run.device, target=cfg.target))
    seconds = time.perf_counter() - t0
    (run.run_dir / "test_metrics.json").write_text(
        json.dumps({"best_epoch": run.best_epoch, "seconds": seconds, **test.metrics}, indent=2)
    )
    best_row = next(h for h in run.history if int(h["epoch"]) == run.best_epoch)
    best_val = {k[len("val_"):]: v for k, v in best_row.items() if k.startswith("val_")}
    return TrainResult(
        best_path=best_path,
        best_epoch=run.best_epoch,
        best_val=best_val,
        test=test,
        history=run.history,
        seconds=seconds,
        num_classes=run.num_classes,
        class_names=test.class_names,
        backbone=getattr(run.model, "backbone_name", None),
        weights=getattr(run.model, "weights", None),
    )


def _evaluate_borrowed(run: _Run, trained_by: str, progress: bool, t0: float) -> TrainResult:
    """:func:`evaluate_trained` on a set-up run."""
    _restore(run, trained_by=trained_by.lower())
    if run.start <= run.cfg.epochs:
        raise StateDictError(f"'{run.run_dir}' holds no finished training of {run.cfg.epochs} epochs by "
                             f"'{trained_by}' (it has {run.start - 1}); train this run instead")
    # the trainer's explainer measured these; this method's is measured below
    run.history = [{**h, "val_cam_cos": float("nan")} for h in run.history]
    result = _finish(run, progress, t0)
    result.best_val["cam_cos"] = run.evaluate("val", progress).metrics.get("cam_cos", float("nan"))
    return result
