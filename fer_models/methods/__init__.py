"""Registry entries: one module per method, imported on first lookup; ``build_model`` factory.

A method is a :class:`FERModel` subclass registered in ``METHODS`` with its metadata:
``backbone`` ("cnn" or "vit": it sits on a ``BACKBONES`` encoder of that family; None: a
seed network, a complete classifier that ignores ``cfg.backbone``), ``family`` (as paper
002's Table 1 groups them) and, for the 11 methods of that table, ``table1`` (its row, so
:func:`paper_methods` gives the paper's order). A transformer method given a CNN backbone
name (one grid config for all 11 methods) runs on that CNN's transformer counterpart, the
backbone's ``vit`` metadata, see :func:`resolve_backbone` (APViT, whose encoder is an IR-50 +
ViT hybrid, uses the ``hybrid`` metadata the same way). :func:`resolve_weights` says which
backbone and which weights a config builds without building anything; :func:`build_model`
logs both and keeps them on the model (``backbone_name``, ``weights``).
"""

from __future__ import annotations

import inspect
import logging

from fer_models.methods._base import FERModel, ModelOutput

__all__ = ["FERModel", "ModelOutput", "build_model", "paper_methods", "resolve_backbone", "resolve_weights",
           "shares_training", "trains_as"]

log = logging.getLogger(__name__)


def paper_methods() -> tuple[str, ...]:
    """The methods of paper 002's Table 1, in the paper's order (METHODS metadata ``table1``)."""
    from fer_models.registry import METHODS

    return tuple(METHODS.ordered_by("table1"))


def trains_as(method: str) -> str:
    """The method whose network and training ``method`` shares (METHODS metadata ``trains_as``),
    else ``method`` itself. Grad-CAM++ and LayerCAM train Grad-CAM's classifier (backbone, GAP,
    linear: the same modules, the same loss, the AU loss on the same layer features); only
    their post-hoc map differs, so for one config and seed the three train identical weights."""
    from fer_models.registry import METHODS

    return str(METHODS.meta(method).get("trains_as") or method).lower()


def shares_training(method: str) -> bool:
    """True when another method trains the same network as ``method`` (:func:`trains_as`)."""
    from fer_models.registry import METHODS

    key = trains_as(method)
    return any(trains_as(n) == key for n in METHODS.names() if n != method.lower())


def resolve_backbone(method: str, backbone: str) -> str | None:
    """The backbone a method really uses: None for seed nets; for a method of another family
    than ``backbone``, the counterpart that backbone names in its metadata under the method's
    family (``vit`` for TS-CAM, ``hybrid`` for APViT); a CNN method with a ViT backbone is an
    error."""
    from fer_models.errors import ConfigError
    from fer_models.registry import BACKBONES, METHODS

    need = METHODS.meta(method).get("backbone")
    if need is None:
        return None
    meta = BACKBONES.meta(backbone)
    have = meta.get("family")
    if need == have:
        return backbone.lower()
    if meta.get(need):
        return meta[need]
    raise ConfigError(
        f"method '{method}' needs a {need.upper()} backbone but '{backbone}' is a {have.upper()}; "
        f"pass one of: {', '.join(n for n in BACKBONES.names() if BACKBONES.meta(n).get('family') == need)}"
    )


def resolve_weights(cfg) -> tuple[str | None, str]:
    """``(backbone actually built, its weights)`` for a ``TrainConfig``, without building it.

    Weights: ``"none"`` (random init), ``"file:<path>"`` (a local file or folder) or
    ``"hub:<tag>"`` (timm hub weights ``<architecture>.<tag>``), where the tag is
    ``cfg.weights_tag`` when the backbone built is the one named (a transformer method
    swapped to the CNN's counterpart gets the counterpart's registered tag), else the
    backbone's registered ``weights`` metadata, else timm's default (``hub:default``).
    """
    from fer_models.backbones._base import wants_pretrained
    from fer_models.registry import BACKBONES

    name = resolve_backbone(cfg.method, cfg.backbone)
    if name is None:
        return None, "none"
    pre = wants_pretrained(cfg.pretrained)
    if not pre:
        return name, "none"
    if pre is not True:
        return name, f"file:{pre}"
    folder = BACKBONES.meta(name).get("weights_dir")
    if folder:  # weights on no hub: files in FER_ORCH_HOME (APViT's IR-50 and ViT-S)
        from fer_models import paths

        return name, f"file:{paths.home() / folder}"
    return name, f"hub:{weights_tag(cfg, name) or 'default'}"


def weights_tag(cfg, name: str) -> str | None:
    """The hub tag ``name`` is built with (see :func:`resolve_weights`)."""
    from fer_models.registry import BACKBONES

    if cfg.weights_tag and name == str(cfg.backbone).lower():
        return cfg.weights_tag
    return BACKBONES.meta(name).get("weights")


def check_method_options(cfg):
    """``cfg.method_kwargs`` are options of ``cfg.method`` (its constructor's parameters):
    one sentence listing them otherwise. Returns the constructor's parameters."""
    from fer_models.errors import ConfigError
    from fer_models.registry import METHODS

    params = inspect.signature(METHODS.get(cfg.method).__init__).parameters
    allowed = [p for p in params if p not in ("self", "backbone", "num_classes", "image_size")]
    unknown = sorted(set(cfg.method_kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"method '{cfg.method}' has no option(s) {unknown}; its options are {allowed or 'none'}"
        )
    for key, value in cfg.method_kwargs.items():
        _check_option_type(cfg.method, key, value, params[key].default)
    return params


def _check_option_type(method: str, key: str, value, default) -> None:
    """A method option has its default's kind: a finite number for a number, true/false for
    a flag (``--method-kw threshold=abc`` failed mid-training, after the cache)."""
    import math

    from fer_models.errors import ConfigError

    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    else:
        return
    if not ok:
        raise ConfigError(f"method '{method}' option {key} (--method-kw) must be {kind} like its default {default!r}, "
                          f"got {value!r}")


def build_model(cfg, num_classes: int | None = None):
    """``TrainConfig`` -> ``FERModel`` (untrained, or with the backbone's pretrained weights)."""
    from fer_models.errors import ConfigError
    from fer_models.labels import NUM_CLASSES
    from fer_models.registry import BACKBONES, METHODS

    cls = METHODS.get(cfg.method)
    k = int(num_classes or NUM_CLASSES)
    image_size = int(cfg.data.image_size)
    params = check_method_options(cfg)
    name, weights = resolve_weights(cfg)
    backbone = None
    if name is not None:
        fn = BACKBONES.get(name)
        kwargs = {"pretrained": cfg.pretrained, "image_size": image_size}
        tag = weights_tag(cfg, name)
        if "tag" in inspect.signature(fn).parameters:
            kwargs["tag"] = tag
        elif cfg.weights_tag and name == str(cfg.backbone).lower():
            raise ConfigError(f"backbone '{name}' has no hub weights tags; drop weights_tag '{cfg.weights_tag}'")
        backbone = fn(**kwargs)
    kwargs = dict(cfg.method_kwargs)
    if "in_chans" in params and "in_chans" not in kwargs:  # the seed nets: one channel for grey input
        kwargs["in_chans"] = 1 if cfg.data.color == "gray" else 3
    model = cls(backbone, k, image_size=image_size, **kwargs)
    model.backbone_name = name
    model.weights = weights
    model.method_name = cfg.method.lower()
    if name is not None and name != str(cfg.backbone).lower():
        log.info("method %s runs on %s (the %s counterpart of %s), weights %s", cfg.method, name,
                 METHODS.meta(cfg.method).get("backbone"), cfg.backbone, weights)
    else:
        log.info("method %s on backbone %s, weights %s", cfg.method, name, weights)
    return model
