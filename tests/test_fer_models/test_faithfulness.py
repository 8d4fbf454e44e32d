"""Deletion / insertion AUC (fer_models.faithfulness)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fer_models.errors import ConfigError
from fer_models.faithfulness import KEYS, curve_auc, deletion_insertion, faithfulness_scores, step_size, subset_indices


class LooksAtTopLeft(nn.Module):
    """Class 0's logit grows with the texture (standard deviation) of the top-left 6x6 pixels;
    class 1's is 0: only that region decides (and blurring or zeroing it removes the evidence)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 6.0 * (x[:, :, :6, :6].flatten(1).std(1) - 0.5)
        return torch.stack([z, torch.zeros_like(z)], 1)


def _maps(b: int, h: int = 16) -> dict[str, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    on = (-(((yy - 2.5) ** 2 + (xx - 2.5) ** 2) / 8.0)).exp()  # peaks on the region
    off = (-(((yy - 12.5) ** 2 + (xx - 12.5) ** 2) / 8.0)).exp()  # the opposite corner
    return {"on": on.expand(b, h, h).clone(), "off": off.expand(b, h, h).clone()}


def test_a_map_on_the_region_the_model_uses_is_more_faithful_than_one_elsewhere():
    torch.manual_seed(0)
    x = 0.1 * torch.rand(4, 3, 16, 16)
    x[:, :, :6, :6] = torch.randint(0, 2, (4, 3, 6, 6)).float() * 2 - 1  # a +-1 texture: class 0, p ~ 0.95
    y = torch.zeros(4, dtype=torch.long)
    res = deletion_insertion(LooksAtTopLeft(), x, y, _maps(4), steps=6)
    (del_on, ins_on), (del_off, ins_off) = res["on"], res["off"]
    assert (del_on < del_off - 0.1).all(), (del_on, del_off)  # deleting the region first drops p at once
    assert (ins_on > ins_off).all(), (ins_on, ins_off)  # revealing it first restores p at once
    assert ((0 <= del_on) & (del_on <= 1)).all() and ((0 <= ins_off) & (ins_off <= 1)).all()


def test_curve_auc_is_the_trapezoid_over_zero_to_one():
    auc = curve_auc(np.array([1.0, 0.0]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert auc == pytest.approx([0.25, 0.75])


def test_steps_are_raised_to_the_next_count_that_splits_the_pixels_evenly():
    """A colour 16-px input (768 values, 256 pixels) cannot take 5 steps: 6 of 128 values; a
    grey 32-px input (paper 001's CK+) cannot take 6: 8 of 128 (it crashed every grey trial)."""
    assert step_size(5, torch.rand(1, 3, 16, 16)) == 128
    assert step_size(6, torch.rand(1, 3, 32, 32)) == 512
    assert step_size(6, torch.rand(1, 1, 32, 32)) == 128
    scores = deletion_insertion(LooksAtTopLeft(), torch.rand(1, 3, 16, 16), torch.zeros(1, dtype=torch.long),
                                _maps(1), steps=5)
    assert scores and all(np.isfinite(v).all() for pair in scores.values() for v in pair)
    with pytest.raises(ConfigError, match="faithfulness_steps"):
        step_size(0, torch.rand(1, 1, 8, 8))


def test_the_subset_is_fixed_and_sorted():
    a, b = subset_indices(100, 8), subset_indices(100, 8)
    assert (a == b).all() and (np.diff(a) > 0).all() and len(subset_indices(5, 8)) == 5


def test_a_trained_models_scores_cover_cam_and_attention(tmp_path, make_manifest, fake_backend):
    from fer_models.data import cache
    from fer_models.data.dataset import FaceDataset
    from fer_models.methods import build_model

    m = make_manifest(tmp_path / "data", n=24)
    info = cache.prepare(m, fake_backend, "paper002", 8, 32, tmp_path / "cache", progress=False)
    ds = FaceDataset(info.dir, "test", 32)
    from fer_models.config import TrainConfig

    model = build_model(TrainConfig(method="cam", backbone="resnet-tiny", pretrained=False), num_classes=7)
    out = faithfulness_scores(model, ds, n=4, steps=6)
    assert set(out) == set(KEYS) and all(math.isfinite(v) and 0 <= v <= 1 for v in out.values())
    assert model.training  # the model's mode is restored
    assert faithfulness_scores(model, ds, n=0) == {}
