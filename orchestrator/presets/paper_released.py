"""``paper-released``: paper 002 as its authors' released code ran it, defects included.

Reproduce the published Tables 1-3 and Fig. 5 with this profile first; ``paper`` is the same
recipe with the defects fixed. Every difference between the two is one field of the config,
listed in :data:`DIFFERENCES` (the test suite checks that the two presets differ in exactly
these fields) and, with the file of the released code each value comes from, in
``docs/reproducing-paper-002.md``.

The recipe (released repository ``sbelharbi/interpretable-fer-aus``; paper 002, Sec. 4.1):

- encoder: ResNet50 with torchvision's ImageNet weights (timm ``resnet50.tv_in1k``) with
  layer3 and layer4 at stride 1 (``resnet50-s8``: the README's ``--large_maps True``, 28 x 28
  maps at 224 px); TS-CAM on DeiT-S (``fb_in1k``); APViT on IR-50 + ViT-S (local files);
- data: faces stored at 256 px, trained on 224 px crops (APViT: 128 / 112), the released
  train transforms (``dlib/datasets/wsol_loader.py``): rotation within +-6 degrees, random
  resized crop of 80-100 % of the area, horizontal flip, grayscale (p 0.2), colour jitter
  (0.4, 0.4, 0.4, 0.1), random erasing (p 0.5); evaluation: resize only;
- optimiser (README command; ``dlib/configure/config.py``; ``dlib/process/instantiators.py``):
  SGD, Nesterov, momentum 0.9, weight decay 5e-4, lr 0.002 with ResNet's layer4 and the new
  head in a second group at ``lr x lr_classifier_ratio`` (1.0 in the README's runs), step
  decay x0.9 every 4 epochs (floor 1e-7), stepped once per epoch; TS-CAM and APViT in one
  group; 100 epochs / batch 32 on RAF-DB, 20 / 224 on AffectNet (paper, Sec. 4.1), AMP;
- λ chosen on validation among Fig. 5's values (0.01, 0.1, 1..20), AU loss at layer 5;
- metrics: ``metric_def="released"`` (``dlib/learning/inference_wsol.py``).
"""

from __future__ import annotations

from typing import Any

from fer_models.config import DataConfig, TrainConfig
from fer_models.data.steps import RELEASED_RECIPE
from orchestrator.config import PAPER_LAYER_SETS, GridConfig, Resources
from orchestrator.gpu_memory import PAPER_PEAK_GIB, gpu_shares
from orchestrator.registry import PRESETS

#: Paper 002, Fig. 5's x axis: 0.01, 0.1 and every integer from 1 to 20.
FIG5_LAMBDAS: tuple[float, ...] = (0.01, 0.1) + tuple(float(v) for v in range(1, 21))

#: Train-time steps of the released recipe, on 256 px images: ``fer_models.data.steps.RELEASED_RECIPE``
#: (rotation p 0.5, square crops, jitter p 0.8: the released settings).
RELEASED_AUGMENT: tuple[str, ...] = RELEASED_RECIPE
#: The same for APViT's 112 px input (images stored at 128 px).
RELEASED_AUGMENT_112: tuple[str, ...] = tuple(
    s.replace("resize:256", "resize:128").replace(",224,", ",112,") for s in RELEASED_RECIPE)

#: field of the GridConfig (dotted) -> (paper-released value, paper value): the defects fixed
#: by ``paper``. Every entry has a row in docs/reproducing-paper-002.md.
DIFFERENCES: dict[str, tuple[Any, Any]] = {
    "base.data.codebook": ("paper002-released", "paper002"),
    "method_overrides.wildcat.method_kwargs.kmin_term": (False, True),
    "method_overrides.prm.method_kwargs.pooling": ("maxpool", "peaks"),
    "method_overrides.acol.method_kwargs.eval_erase": ("label", "prediction"),
    "method_overrides.adl.method_kwargs.released_indexing": (True, False),
}


def recipe(which: int) -> GridConfig:
    """The shared recipe with the :data:`DIFFERENCES` values of column ``which`` (0: released,
    1: corrected)."""
    v = {k: pair[which] for k, pair in DIFFERENCES.items()}
    base = TrainConfig(
        backbone="resnet50-s8",
        pretrained=True,
        weights_tag="tv_in1k",
        epochs=100,
        batch_size=32,
        optimizer="sgd",
        lr=0.002,
        head_lr=0.002,  # lr_classifier_ratio 1.0 (README); the config default would be 10
        head_layers=(5,),
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        scheduler="step",
        lr_step=4,
        lr_gamma=0.9,
        min_lr=1e-7,
        metric_def="released",
        device="auto",
        amp=True,
        channels_last=True,
        data=DataConfig(image_size=224, stored_size=256, map_size=28, num_workers=4,
                        codebook=v["base.data.codebook"], augment=RELEASED_AUGMENT, eval_steps=("resize:224",)),
    )
    one_group = {"head_lr": None, "head_layers": []}  # TS-CAM and APViT: all parameters at lr
    method_overrides = {
        "wildcat": {"method_kwargs": {"kmin_term": v["method_overrides.wildcat.method_kwargs.kmin_term"]}},
        "prm": {"method_kwargs": {"pooling": v["method_overrides.prm.method_kwargs.pooling"]}},
        "acol": {"method_kwargs": {"hidden": 1024,
                                   "eval_erase": v["method_overrides.acol.method_kwargs.eval_erase"]}},
        "adl": {"method_kwargs": {"placement": "released",
                                  "released_indexing": v["method_overrides.adl.method_kwargs.released_indexing"]}},
        "tscam": dict(one_group),
        "apvit": {**one_group, "data": {"image_size": 112, "stored_size": 128, "augment": list(RELEASED_AUGMENT_112),
                                        "eval_steps": ["resize:112"]}},
    }
    return GridConfig(
        datasets=("rafdb", "affectnet"),
        seeds=(0, 1, 2),
        lambdas=FIG5_LAMBDAS,
        layer_sets=PAPER_LAYER_SETS,
        default_lam=4.0,  # paper 002, Sec. 4.3: "a compromise value ... λ ≈ 4" (until the ablation ran)
        base=base,
        method_overrides=method_overrides,
        dataset_overrides={"affectnet": {"epochs": 20, "batch_size": 224}},
        resources=Resources(cpus=4, gpus=1, gpu_share=gpu_shares(PAPER_PEAK_GIB)),  # orchestrator.gpu_memory
        max_failures=3,
    )


@PRESETS.register("paper-released")
def paper_released() -> GridConfig:
    """Paper 002 as its released code ran it (defects included): reproduce Tables 1-3 and Fig. 5 first."""
    return recipe(0)
