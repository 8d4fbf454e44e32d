"""Named starting points for a :class:`~orchestrator.config.GridConfig`.

- ``cpu``: what ``fer-orch grid`` runs with no ``--datasets``: the embedded synthetic
  faces, a small backbone, small images and few epochs, sized so that the whole study
  (λ ablation, Table 1 grid of 11 methods x 2 datasets x {w/o, w/ AU}, layer ablation)
  finishes on 2 CPU cores in at most 10 minutes, Ray start and preprocessing included.
  Its numbers show the pipeline works, not the paper's accuracies: a tiny ResNet trained
  from scratch for 3 epochs at 32 px (AdamW, which learns faster than SGD from scratch)
  reaches a real baseline on synthetic-rafdb (measured, ~8.5 s CPU per trial: CAM 43% test
  CL w/o AU, 49% w/ AU, ATT-COS 0.41 -> 0.62; chance is 14%).
- ``paper``: paper 002, Sec. 4.1: ResNet50 encoder (Deit-S for TS-CAM and APViT, chosen by
  ``fer_models.methods.resolve_backbone``; APViT at 112 px), 224 px crops, SGD, 100 epochs with batch 32 on RAF-DB and 20 epochs with
  batch 224 on AffectNet, λ searched from below 1 to 20 on RAF-DB's validation split and
  transferred to AffectNet. Meant for real datasets on GPUs (one GPU per trial by
  default; pass ``--gpus-per-trial 0.5`` to pack two trials on a GPU).

Values the paper leaves open (learning rate, weight decay, schedule, AU-map size) are the
usual choices for fine-tuning a ResNet50 with SGD on 224 px faces: lr 0.01, momentum 0.9,
weight decay 1e-4, cosine schedule, 28 x 28 maps (the layer-5 resolution x 4).
"""

from __future__ import annotations

from typing import Any

from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError
from orchestrator.config import PAPER_LAMBDAS, PAPER_LAYER_SETS, PAPER_METHODS, GridConfig, Resources

SYNTHETIC = ("synthetic-rafdb", "synthetic-affectnet")

#: CPU preset knobs, measured on the 2-core machine (see the report in the repo's history).
CPU_BACKBONE = "resnet-tiny"  # TS-CAM and APViT get its ViT counterpart (methods.resolve_backbone)
CPU_IMAGE_SIZE = 32
CPU_MAP_SIZE = 16
CPU_EPOCHS = 3
CPU_BATCH = 32
CPU_LAMBDAS = (0.1, 1.0, 5.0, 20.0)


def cpu(**changes: Any) -> GridConfig:
    base = TrainConfig(
        backbone=CPU_BACKBONE,
        pretrained=False,
        epochs=CPU_EPOCHS,
        batch_size=CPU_BATCH,
        optimizer="adamw",  # from scratch in 3 epochs AdamW learns faster than the paper's SGD
        lr=0.003,
        weight_decay=1e-4,
        scheduler="cosine",
        device="cpu",
        amp=False,
        channels_last=False,
        data=DataConfig(image_size=CPU_IMAGE_SIZE, map_size=CPU_MAP_SIZE, num_workers=0, augment=True),
    )
    g = GridConfig(
        datasets=SYNTHETIC,
        methods=PAPER_METHODS,
        seeds=(0,),
        lambdas=CPU_LAMBDAS,
        layer_sets=PAPER_LAYER_SETS,
        default_lam=1.0,
        base=base,
        resources=Resources(cpus=1, gpus=0),
        max_failures=1,
        preset="cpu",
    )
    return g.override(**changes) if changes else g


def paper(**changes: Any) -> GridConfig:
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
    g = GridConfig(
        datasets=("rafdb", "affectnet"),
        methods=PAPER_METHODS,
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
        preset="paper",
    )
    return g.override(**changes) if changes else g


PRESETS = {"cpu": cpu, "paper": paper}


def get(name: str, **changes: Any) -> GridConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; known presets: {', '.join(PRESETS)}")
    return PRESETS[name](**changes)


def for_datasets(datasets: tuple[str, ...] | None) -> str:
    """``cpu`` when no datasets are given or all are synthetic, else ``paper``."""
    if not datasets or all(d.startswith("synthetic-") for d in datasets):
        return "cpu"
    return "paper"
