"""Registry entries: one module per method, imported on first lookup; ``build_model`` factory.

A method is a :class:`FERModel` subclass registered in ``METHODS`` with its metadata:
``backbone`` ("cnn" or "vit": it sits on a ``BACKBONES`` encoder of that family; None: a
seed network, a complete classifier that ignores ``cfg.backbone``), ``family`` (as paper
002's Table 1 groups them) and, for the 11 methods of that table, ``table1`` (its row, so
:func:`paper_methods` gives the paper's order). A transformer method given a CNN backbone
name (one grid config for all 11 methods) runs on that CNN's transformer counterpart, the
backbone's ``vit`` metadata, see :func:`resolve_backbone`.
"""

from __future__ import annotations

import inspect

from fer_models.methods._base import FERModel, ModelOutput

__all__ = ["FERModel", "ModelOutput", "build_model", "paper_methods", "resolve_backbone"]


def paper_methods() -> tuple[str, ...]:
    """The methods of paper 002's Table 1, in the paper's order (METHODS metadata ``table1``)."""
    from fer_models.registry import METHODS

    return tuple(METHODS.ordered_by("table1"))


def resolve_backbone(method: str, backbone: str) -> str | None:
    """The backbone a method really uses: None for seed nets, the ViT counterpart for a
    transformer method named with a CNN backbone (the CNN's ``vit`` metadata); a CNN method
    with a ViT backbone is an error."""
    from fer_models.errors import ConfigError
    from fer_models.registry import BACKBONES, METHODS

    need = METHODS.meta(method).get("backbone")
    if need is None:
        return None
    meta = BACKBONES.meta(backbone)
    have = meta.get("family")
    if need == have:
        return backbone.lower()
    if need == "vit" and meta.get("vit"):
        return meta["vit"]
    raise ConfigError(
        f"method '{method}' needs a {need.upper()} backbone but '{backbone}' is a {have.upper()}; "
        f"pass one of: {', '.join(n for n in BACKBONES.names() if BACKBONES.meta(n).get('family') == need)}"
    )


def build_model(cfg, num_classes: int | None = None):
    """``TrainConfig`` -> ``FERModel`` (untrained, or with the backbone's pretrained weights)."""
    from fer_models.errors import ConfigError
    from fer_models.labels import NUM_CLASSES
    from fer_models.registry import BACKBONES, METHODS

    cls = METHODS.get(cfg.method)
    k = int(num_classes or NUM_CLASSES)
    image_size = int(cfg.data.image_size)
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "backbone", "num_classes", "image_size")]
    unknown = sorted(set(cfg.method_kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"method '{cfg.method}' has no option(s) {unknown}; its options are {allowed or 'none'}"
        )
    name = resolve_backbone(cfg.method, cfg.backbone)
    backbone = None if name is None else BACKBONES.get(name)(pretrained=cfg.pretrained, image_size=image_size)
    kwargs = dict(cfg.method_kwargs)
    if "in_chans" in params and "in_chans" not in kwargs:  # the seed nets: one channel for grey input
        kwargs["in_chans"] = 1 if getattr(cfg.data, "color", "rgb") == "gray" else 3
    model = cls(backbone, k, image_size=image_size, **kwargs)
    model.backbone_name = name
    model.method_name = cfg.method.lower()
    return model
