"""fer_models.cost: FLOPs and memory of a training step, counted on the meta device."""

from __future__ import annotations

import dataclasses

import pytest

from fer_models.config import DataConfig, TrainConfig
from fer_models.cost import step_cost


def _cfg(**kw) -> TrainConfig:
    base = dict(method="cam", backbone="resnet50", pretrained=False, au=False, batch_size=32, optimizer="sgd",
                momentum=0.9, data=DataConfig(image_size=224, map_size=28))
    return TrainConfig(**{**base, **kw})


def test_resnet50_costs_three_forward_passes_of_its_published_4_1_gmacs():
    cost = step_cost(_cfg())
    # forward 4.09 GMAC = 8.2 GFLOP (multiply-add = 2); backward twice the forward
    assert cost["gflop_per_img"] == pytest.approx(3 * 2 * 4.09, rel=0.02)
    assert cost["params_m"] == pytest.approx(23.5, rel=0.01)  # 7 classes: 25.6 M less the 1000-way head
    s8 = step_cost(_cfg(backbone="resnet50-s8"))
    assert 4.0 < s8["gflop_per_img"] / cost["gflop_per_img"] < 5.0  # layer3/4 at stride 1: 4x the area


def test_activation_memory_grows_with_the_batch_and_halves_in_bf16():
    small, big = step_cost(_cfg(backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=8)), batch=4), \
        step_cost(_cfg(backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=8)), batch=8)
    assert big["activation_gib"] == pytest.approx(2 * small["activation_gib"], rel=1e-6)
    fp32 = step_cost(dataclasses.replace(_cfg(backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=8))),
                     batch=4, bf16=False)
    assert fp32["activation_gib"] == pytest.approx(2 * small["activation_gib"])
    assert small["peak_gib"] > small["activation_gib"] + small["static_gib"]  # + the CUDA allowance
