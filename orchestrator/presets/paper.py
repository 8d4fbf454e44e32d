"""``paper``: paper 002, Sec. 4.1, for the real datasets on GPUs.

ResNet50 encoder (Deit-S for TS-CAM and APViT, chosen by
``fer_models.methods.resolve_backbone``; APViT at 112 px), 224 px crops, SGD, 100 epochs
with batch 32 on RAF-DB and 20 epochs with batch 224 on AffectNet, λ searched from below 1
to 20 on RAF-DB's validation split and transferred to AffectNet. One GPU per trial by
default; pass ``--gpus-per-trial 0.5`` to pack two trials on a GPU.

Values the paper leaves open (learning rate, weight decay, schedule, AU-map size) are the
usual choices for fine-tuning a ResNet50 with SGD on 224 px faces: lr 0.01, momentum 0.9,
weight decay 1e-4, cosine schedule, 28 x 28 maps (the layer-5 resolution x 4).
"""

from __future__ import annotations

from fer_models.config import DataConfig, TrainConfig
from orchestrator.config import PAPER_LAMBDAS, PAPER_LAYER_SETS, GridConfig, Resources
from orchestrator.registry import PRESETS


@PRESETS.register("paper", default_for="real")
def paper() -> GridConfig:
    """Paper 002, Sec. 4.1: ResNet50 / Deit-S, 224 px, SGD, 100 epochs (RAF-DB) / 20 (AffectNet), one GPU per trial."""
    base = TrainConfig(
        backbone="resnet50",
        pretrained=True,
        epochs=100,
        batch_size=32,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        scheduler="cosine",
        device="auto",
        amp=True,
        channels_last=True,
        data=DataConfig(image_size=224, map_size=28, num_workers=4, augment=True),
    )
    return GridConfig(
        datasets=("rafdb", "affectnet"),
        seeds=(0,),
        lambdas=PAPER_LAMBDAS,
        layer_sets=PAPER_LAYER_SETS,
        default_lam=4.0,  # paper 002, Sec. 4.3: "a compromise value ... λ ≈ 4"
        base=base,
        # TS-CAM and APViT run on Deit-S, the ViT counterpart of resnet50 (methods.resolve_backbone)
        method_overrides={"apvit": {"data": {"image_size": 112}}},
        dataset_overrides={"affectnet": {"epochs": 20, "batch_size": 224}},
        resources=Resources(cpus=4, gpus=1),
        max_failures=3,
    )
