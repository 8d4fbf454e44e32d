"""Registry entries: one module per backbone family, imported on first lookup.

A backbone is a function registered in ``BACKBONES`` as
``name(pretrained=False, image_size=...) -> Backbone`` (:class:`Backbone`: the spatial
features of paper 002's layers 1..5), with metadata ``family`` ("cnn", "vit" or "hybrid":
APViT's IR-50 + ViT) and, for a backbone, its counterparts of the other families (``vit``,
``hybrid``) on which a method of that family given this backbone's name runs
(``fer_models.methods.resolve_backbone``); ``weights``: the timm hub tag its pretrained
weights default to (``TrainConfig.weights_tag`` overrides it); a backbone taking hub weights
accepts ``tag=``.
"""

from fer_models.backbones._base import Backbone, StageTransform

__all__ = ["Backbone", "StageTransform"]
