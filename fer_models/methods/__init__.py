"""Registry entries: one module per method, imported on first lookup; ``build_model`` factory.

Methods registered with ``backbone="cnn"`` or ``"vit"`` sit on a ``BACKBONES`` encoder;
the seed networks (``backbone=None``) are complete classifiers and ignore ``cfg.backbone``.
A transformer method given a CNN backbone name (one grid config for all 11 methods) runs
on that CNN's transformer counterpart, see ``resolve_backbone``.
"""

from __future__ import annotations

import inspect

# transformer counterpart of each CNN backbone, so one grid config serves both families
VIT_FOR_CNN = {
    "resnet50": "deit-small",
    "resnet18": "deit-small",
    "resnet18-small": "vit-tiny-small",
    "resnet-tiny": "vit-tiny-small",
}


def resolve_backbone(method: str, backbone: str) -> str | None:
    """The backbone a method really uses: None for seed nets, the ViT counterpart for a
    transformer method named with a CNN backbone; a CNN method with a ViT backbone is an error."""
    from fer_models.errors import ConfigError
    from fer_models.registry import BACKBONES, METHODS

    need = METHODS.meta(method).get("backbone")
    if need is None:
        return None
    have = BACKBONES.meta(backbone).get("family")
    if need == have:
        return backbone.lower()
    if need == "vit" and backbone.lower() in VIT_FOR_CNN:
        return VIT_FOR_CNN[backbone.lower()]
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
    model = cls(backbone, k, image_size=image_size, **dict(cfg.method_kwargs))
    model.backbone_name = name
    model.method_name = cfg.method.lower()
    return model
