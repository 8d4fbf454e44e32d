"""``paper``: paper 002's recipe with the released code's defects fixed (the default on real data).

Everything as ``paper-released`` (see ``orchestrator/presets/paper_released.py`` for the
recipe and its sources) except the fields of
:data:`orchestrator.presets.paper_released.DIFFERENCES`: AU10 instead of AU5 for disgust
(the codebook of the paper's Fig. 2), WILDCAT's kmin term restored, PRM's peak stimulation,
ACoL erasing by the prediction at evaluation (the label is unknown at test time), ADL's
ImageNet weights in the right blocks and its CAM taken at layer 5.
``docs/reproducing-paper-002.md`` has the table. Each trial's GPU share comes from its computed
peak memory (``orchestrator.gpu_memory``: RAF-DB's batch-32 trials share a GPU, AffectNet's
batch-224 trials on resnet50-s8 get one); ``--gpus-per-trial`` sets one share for all.
"""

from __future__ import annotations

from orchestrator.config import GridConfig
from orchestrator.presets.paper_released import recipe
from orchestrator.registry import PRESETS


@PRESETS.register("paper", default_for="real")
def paper() -> GridConfig:
    """Paper 002's recipe with the released code's defects fixed: ResNet50 / DeiT-S / IR-50 ViT, 3 seeds (the default for real data)."""
    return recipe(1)
