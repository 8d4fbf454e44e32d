"""Registry entries: one module per backbone family, imported on first lookup.

A backbone is a function registered in ``BACKBONES`` as
``name(pretrained=False, image_size=...) -> Backbone`` (:class:`Backbone`: the spatial
features of paper 002's layers 1..5), with metadata ``family`` ("cnn" or "vit") and, for a
CNN, ``vit``: its transformer counterpart, on which a transformer method given this CNN's
name runs (``fer_models.methods.resolve_backbone``).
"""

from fer_models.backbones._base import Backbone, StageTransform

__all__ = ["Backbone", "StageTransform"]
