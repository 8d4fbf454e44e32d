"""Frozen dataclasses describing one training run (docs/architecture.md, "Conventions: Config").

The orchestrator's grid varies fields of these same dataclasses; ``to_dict``/``from_dict``
round-trip them through YAML and flatten them for MLflow params. Their type annotations and
field metadata (``num``: a range and the option that sets it; ``meta``: legacy YAML forms,
whether the config hash covers the field) are the schema every other form is derived from
(:mod:`fer_models.schema`, docs/architecture.md "Configuration").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_models.errors import ConfigError
from fer_models.schema import check, label, meta, num


#: upper bounds: beyond them an array the size of the input is allocated (a 60000 px image is
#: 10 GiB per image), or a seed does not fit the 64-bit generators torch and numpy seed
MAX_IMAGE_SIZE, MAX_MAP_SIZE, MAX_SEED = 1024, 256, 2**32 - 1

#: how CAM-/ATT-COS are computed (fer_models.metrics): the project's definition or the
#: released code's; METRIC_DEF is TrainConfig.metric_def's default (and that of runs logged
#: before the field existed)
METRIC_DEFS = ("project", "released")
METRIC_DEF = "project"

#: values of TrainConfig.target
TARGETS = ("expression", "identity")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic-rafdb"  # a DATASETS name
    root: str | None = meta(None, hash="omit")  # dataset root on disk; None = the reader's default
    landmarks: str = "auto"  # a LANDMARKS name; "auto" = shipped/ground truth, else dlib
    codebook: str = "paper002"  # a CODEBOOKS name
    # where the training map's AUs come from (fer_models.data.au.source_weights): "codebook"
    # (paper 002: the expression's AUs), "labels" (the image's labelled active AUs, weighted by
    # intensity), "codebook+labels" (= codebook∩labels: the codebook's AUs that are active) or
    # "detector:NAME" (an AU_DETECTORS entry); part of the cache key
    au_source: str = meta("codebook", hash="omit-default")
    image_size: int = num(64, 8, high=MAX_IMAGE_SIZE, cli="--image-size")  # network input (square)
    map_size: int = num(32, 2, high=MAX_MAP_SIZE, cli="--map-size")  # AU-map resolution stored in the cache
    val_fraction: float = num(0.1, cli="--val-fraction")  # and below 1 (validate_data)
    split_seed: int = num(0, high=MAX_SEED)
    # the dataset reader's options (``fer-orch list datasets`` / each reader's docstring), e.g.
    # {"classes": 6, "fold": 3}; they change the manifest, so they are part of the cache key
    options: dict[str, Any] = meta(factory=dict, hash="omit-default")
    # -- the data path (fer_models.data.steps, fer_models.data.augment) --------------
    # train-time steps, run on the training device; `true` (old configs) = CPU_RECIPE, `false` = ()
    augment: tuple[str, ...] = meta(("resized_crop:0.8-1.0", "flip:0.5"), also=(bool,))
    eval_steps: tuple[str, ...] = meta((), hash="omit-default")  # deterministic val/test steps
    stored_size: int | None = num(None, 8, high=MAX_IMAGE_SIZE, hash="omit-default")  # image side in the cache (None = image_size); part of the cache key
    normalize: str = meta("imagenet", hash="omit-default")  # "imagenet" | "per_image" | "none" (the last step)
    color: str = meta("rgb", hash="omit-default")  # "rgb" | "gray" (one input channel)
    num_workers: int = meta(1, hash="omit")  # background threads gathering + copying batches (0: the training thread)
    prefetch: int = meta(2, hash="omit")  # batches prepared ahead of the one in use (with num_workers >= 1)

    def __post_init__(self) -> None:
        from fer_models.data.au import parse_au_source
        from fer_models.data.steps import COLOR, NORMALIZE, as_steps, plan

        object.__setattr__(self, "au_source", parse_au_source(self.au_source))
        object.__setattr__(self, "augment", as_steps(self.augment))
        object.__setattr__(self, "eval_steps", as_steps(self.eval_steps))
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZE)}, got '{self.normalize}'")
        if self.color not in COLOR:
            raise ConfigError(f"data.color must be one of {', '.join(COLOR)}, got '{self.color}'")
        if self.num_workers < 0 or self.prefetch < 0:
            raise ConfigError(f"data.num_workers and data.prefetch must be >= 0, got {self.num_workers} "
                              f"and {self.prefetch}")
        for steps in (self.augment, self.eval_steps):
            plan(steps, self.cache_image_size, self.image_size)  # sizes line up, before any work

    @property
    def cache_image_size(self) -> int:
        """The image side stored in the cache: ``stored_size``, else ``image_size``."""
        return int(self.stored_size or self.image_size)


@dataclass(frozen=True)
class TrainConfig:
    method: str = "cam"  # a METHODS name
    backbone: str = "resnet18"  # a BACKBONES name
    pretrained: str | bool = False  # False, True (timm hub), or a local weights path
    au: bool = True  # add the AU alignment loss (paper 002, Eq. 3)
    # λ of Eq. 3; λ = 0 is the model without the AU loss (au_loss_weight)
    lam: float = num(1.0, cli="--lambda/--lam")
    # layers aligned to the AU map (paper numbering 1..5); YAML may give "5+4" or 5
    layers: tuple[int, ...] = meta((5,), also=(str, int))
    epochs: int = num(5, 1, cli="--epochs")
    batch_size: int = num(32, 1, cli="--batch-size")
    optimizer: str = "sgd"
    lr: float = num(0.01, strict=True, cli="--lr")
    momentum: float = num(0.9)
    weight_decay: float = num(1e-4)
    scheduler: str = "cosine"
    seed: int = num(0, high=MAX_SEED, cli="--seed")
    device: str = meta("auto", hash="omit")  # "auto" = cuda when present
    amp: bool = meta(True, hash="omit")  # only takes effect on CUDA
    channels_last: bool = meta(True, hash="omit")  # NHWC memory format (CUDA and CPU)
    compile: bool = meta(False, hash="omit")  # torch.compile the model's training forward (speed only; see README)
    # checkpoint every N-th epoch (and the last), at most once per this many minutes (0: no
    # limit); a run killed resumes from its last checkpoint (fer_models.checkpoints)
    checkpoint_every: int = num(1, 1, hash="omit")
    checkpoint_minutes: float = num(0.0, hash="omit")
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    # paper 002 reproduction (docs/reproducing-paper-002.md lists who sets what)
    weights_tag: str | None = meta(None, hash="omit-default")  # timm pretrained tag of hub weights; None = the backbone's default
    head_lr: float | None = num(None, strict=True, hash="omit-default")  # lr of the method's new head (FERModel.new_modules); None = lr
    head_layers: tuple[int, ...] = meta((), hash="omit-default")  # backbone layers trained at head_lr too (released code: (5,))
    nesterov: bool = meta(False, hash="omit-default")  # SGD only
    lr_step: int = num(0, hash="omit-default")  # scheduler "step": x lr_gamma every lr_step epochs; 0 = x0.1 at 1/3 and 2/3
    lr_gamma: float = num(0.1, hash="omit-default")
    min_lr: float = num(0.0, hash="omit-default")  # floor of the "step" schedule
    # epochs of linear lr warm-up before the "cosine" decay (ViT recipes; 0 = none)
    warmup_epochs: float = num(0.0, hash="omit-default")
    # how CAM-/ATT-COS are computed (METRIC_DEFS, fer_models.metrics): "project" | "released"
    metric_def: str = meta(METRIC_DEF, cli="--metric-def", hash="omit-default")
    # what the network predicts: "expression" (the dataset's labels) or "identity" (the
    # subject, paper 003's 67-way RaFD face recognition); identity runs have no AU loss
    target: str = meta("expression", hash="omit-default")
    # faithfulness of the CAM and the layer-5 attention on test (fer_models.faithfulness):
    # deletion / insertion AUC over a fixed seeded subset of this many test images (0 = off),
    # removing / revealing the pixels in this many equal steps (a multiple of 3)
    faithfulness_n: int = meta(16, hash="omit-default")
    faithfulness_steps: int = meta(6, hash="omit-default")
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        if self.target == "identity" and self.au:
            raise ConfigError(
                "the AU loss does not apply to identity targets (the AU maps encode expressions); "
                "pass --no-au with --target identity"
            )


def au_loss_on(au: bool, lam: float) -> bool:
    """The one rule for "w/o AU": a run has the AU alignment loss (paper 002, Eq. 3) when
    ``au`` is set and λ > 0; λ = 0 is the model without it (the grid's w/o-AU trials are
    normalised to ``au=False, lam=0``, :meth:`orchestrator.config.GridConfig.train_config`)."""
    return bool(au) and float(lam) > 0


def au_loss_weight(cfg: Any) -> float:
    """λ of the AU loss term of ``cfg`` (a ``TrainConfig``): ``cfg.lam``, or 0 without the loss."""
    return float(cfg.lam) if au_loss_on(cfg.au, cfg.lam) else 0.0


def to_dict(cfg: Any) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)

    def fix(v: Any) -> Any:
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return fix(out)


def from_dict(cls: type, d: dict[str, Any], path: str = "") -> Any:
    """Build ``cls`` from a (possibly partial) dict, recursing into nested dataclasses; a
    wrong type or an unknown key anywhere is one :class:`fer_models.schema.ConfigSchemaError`
    sentence naming its path (``path`` prefixes it)."""
    check(cls, d, path)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        f = names[k]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default) and isinstance(v, dict):
            v = from_dict(type(default), v, f"{path}{k}.")
        elif isinstance(default, tuple) and isinstance(v, (list, tuple)):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"dataset": "x"}}`` -> ``{"data.dataset": "x"}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_layers(spec: str | int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``"5"``, ``"5+4+3"``, ``"3-4-5"`` or ``[5, 4]`` -> ``(5, 4, 3)`` style tuple."""
    if isinstance(spec, int):
        return (spec,)
    if isinstance(spec, (tuple, list)):
        return tuple(int(x) for x in spec)
    parts = [p for p in str(spec).replace("+", ",").replace("-", ",").split(",") if p.strip()]
    try:
        layers = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"layers must look like '5' or '5+4+3', got '{spec}'") from None
    if not layers or any(not 1 <= x <= 5 for x in layers):
        raise ConfigError(f"layers are numbered 1..5 (paper 002, Table 3), got '{spec}'")
    return layers


#: the optimizers and schedulers ``fer_models.train`` knows
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "none")


def _number(name: str, value: Any, *, low: float = 0.0, strict: bool = False, integer: bool = False,
            high: float | None = None) -> None:
    """One option's value: a real, finite number (bool is not one), ``>= low`` (``> low`` when
    ``strict``) and ``<= high``; ``nan`` passes every comparison, so it is refused by name first."""
    import math

    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}; pass a value {'>' if strict else '>='} {low:g}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high:g}, got {value:g}")


DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:<n>", "mps")


def check_device_name(device: str, option: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:<n>`` or ``mps``; else one sentence."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", device):
        raise ConfigError(f"device ({option}) must be one of {', '.join(DEVICE_NAMES)}, got {device!r}")
    return device


def check_bounds(cfg: Any, path: str = "") -> None:
    """Every field of ``cfg`` with a range in the schema (:func:`fer_models.schema.num`) is in
    it; a field left ``None`` (optional) is not checked."""
    from fer_models.schema import bounded

    for name, bounds, integer, cli in bounded(type(cfg)):
        value = getattr(cfg, name)
        if value is not None:
            _number(label(path + name, cli), value, low=bounds["low"], strict=bounds["strict"], integer=integer,
                    high=bounds["high"])


def validate_data(d: DataConfig, *, names: bool = True) -> DataConfig:
    """Every check of a ``DataConfig`` a user can get wrong, each one sentence naming the
    option, before any cache build: sizes (``image_size`` >= 8 like ``preprocess``,
    ``map_size`` >= 2), ``0 <= val_fraction < 1``, and (``names``) known dataset, landmark
    backend and codebook. Returns ``d`` so it can wrap a constructor."""
    check_bounds(d, "data.")
    if d.val_fraction >= 1:
        raise ConfigError(f"data.val_fraction (--val-fraction) must be below 1, got {d.val_fraction:g}")
    if names:
        from fer_models.registry import CODEBOOKS, DATASETS, LANDMARKS

        DATASETS.get(d.dataset)
        CODEBOOKS.get(d.codebook)
        if d.landmarks != "auto":
            LANDMARKS.get(d.landmarks)
    return d


def validate(cfg: TrainConfig, *, names: bool = True) -> TrainConfig:
    """One validation of a ``TrainConfig`` for ``train``, ``grid``, ``ablate`` (and, for its
    data part, ``preprocess``), run before any Ray start or cache build; each mistake is one
    :class:`ConfigError` sentence naming the option.

    Numbers are finite and in range (``nan`` would silently turn the AU loss off: every
    comparison with it is false), ``epochs``/``batch_size`` >= 1, ``lr`` > 0, ``lam`` >= 0,
    ``layers`` in 1..5; names (``names``): method, backbone (and that the method can use
    it), dataset, codebook, landmark backend, optimizer, scheduler and ``metric_def``.
    ``names=False`` is for callers that hand their own data (``train(loaders=...)``).
    """
    check_bounds(cfg)
    if cfg.warmup_epochs > 0 and (cfg.scheduler.lower() != "cosine" or cfg.warmup_epochs >= cfg.epochs):
        raise ConfigError(f"warmup_epochs ({cfg.warmup_epochs}) applies to the cosine scheduler and must be "
                          f"fewer than the epochs ({cfg.epochs}); scheduler is '{cfg.scheduler}'")
    check_device_name(cfg.device)
    for what, layers in (("layers (--layers)", cfg.layers), ("head_layers", cfg.head_layers)):
        if (what == "layers (--layers)" and not layers) or any(
                isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 5 for x in layers):
            raise ConfigError(f"{what} are numbered 1..5 (paper 002, Table 3), got {tuple(layers)}")
        if len(set(layers)) != len(layers):  # "5,5" aligned layer 5 once, under another name
            raise ConfigError(f"{what} lists a layer twice, got {tuple(layers)}; give each layer once, e.g. 5+4")
    for what, value, known in (("optimizer (--optimizer)", cfg.optimizer, OPTIMIZERS),
                               ("scheduler", cfg.scheduler, SCHEDULERS), ("metric_def", cfg.metric_def, METRIC_DEFS)):
        if str(value).lower() not in known:
            raise ConfigError(f"unknown {what.split(' ')[0]} '{value}'; use {', '.join(known)}")
    validate_data(cfg.data, names=names)
    if names:
        from fer_models.methods import check_method_options, resolve_backbone

        check_method_options(cfg)  # --method-kw names the method's own options

        from fer_models.backbones._base import wants_pretrained
        from fer_models.errors import MissingWeightsError

        if resolve_backbone(cfg.method, cfg.backbone) is not None:  # unknown method/backbone, family mismatch
            pre = wants_pretrained(cfg.pretrained)
            if isinstance(pre, str) and not Path(pre).expanduser().exists():
                raise MissingWeightsError(f"pretrained weights file '{pre}' (--pretrained) does not exist; pass an "
                                          f"existing .pt/.pth file, true (hub weights) or false")
    return cfg
