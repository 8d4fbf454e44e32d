"""The seed networks of papers 001, 003, 004: each paper's initialisation, grey input, dropout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError
from fer_models.methods import build_model


def _net(method: str, color: str = "rgb", size: int = 48, **kw):
    torch.manual_seed(0)
    net = build_model(TrainConfig(method=method, au=False, method_kwargs=kw,
                                  data=DataConfig(image_size=size, color=color)), 7)
    return net.requires_grad_(False)


def test_khorrami_init_is_gaussian_over_sqrt_fan_in_with_one_k():
    net = _net("zerobias-cnn", "gray", size=96)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    ks = [float(c.weight.std()) * math.sqrt(c.weight[0].numel()) for c in convs]
    assert 0.2 <= ks[0] <= 1.2
    assert max(ks) / min(ks) < 1.1  # the same k in every layer (paper 001: sd = k / sqrt(fan_in))
    assert all(c.bias is None for c in convs)  # zero-bias
    fc1, fc2 = net.classifier.fc1, net.classifier.fc2
    assert torch.all(fc1.bias == 1.0) and torch.all(fc2.bias == 0.0)  # released code: hidden FC bias 1
    assert float(fc1.weight.std()) * math.sqrt(fc1.in_features) == pytest.approx(ks[0], rel=0.1)
    assert isinstance(net.classifier.quadrant_pool, nn.AdaptiveMaxPool2d)


def test_glorot_and_he_normal_inits():
    tv = _net("tiny-vgg")
    for m in tv.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0][0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert float(m.weight.abs().max()) <= bound and torch.all(m.bias == 0)
            if m.weight.numel() > 5000:
                assert float(m.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
    lc = _net("light-cnn", "gray")
    conv = lc.layers.conv2d_3  # 3x3x64 -> fan_in 576
    sd = math.sqrt(2 / conv.weight[0].numel())
    assert float(conv.weight.abs().max()) <= 2 * sd  # truncated at 2 sd (Keras he_normal)
    assert float(conv.weight.std()) == pytest.approx(0.88 * sd, rel=0.1)  # sd of a 2-sd truncated normal
    out = lc.classifier.out_layer
    assert float(out.weight.abs().max()) <= math.sqrt(6 / (out.in_features + out.out_features))


def test_grey_networks_take_one_channel_and_see_the_luminance_of_rgb():
    for method in ("zerobias-cnn", "tiny-vgg", "light-cnn"):
        net = _net(method, "gray").eval()
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == 1 and net.in_chans == 1
        rgb = torch.rand(2, 3, 48, 48)
        lum = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
        with torch.no_grad():
            torch.testing.assert_close(net(rgb).logits, net(lum).logits)
        assert _net(method).layers[0].in_channels == 3


def test_dropout_and_init_options():
    assert _net("zerobias-cnn", dropout=0.0).classifier.dropout.p == 0.0
    assert [m.p for m in _net("light-cnn").modules() if isinstance(m, nn.Dropout)] == [0.4, 0.4, 0.5, 0.6]
    assert [m.p for m in _net("light-cnn", dropout=0.2).modules() if isinstance(m, nn.Dropout)] == [0.2] * 4
    assert any(isinstance(m, nn.Dropout) for m in _net("tiny-vgg", dropout=0.5).modules())
    with pytest.raises(ConfigError, match="init must be one of"):
        _net("tiny-vgg", init="lecun")
    a, b = _net("light-cnn"), _net("light-cnn")  # seeded: the same draw
    torch.testing.assert_close(a.layers.conv2d_1.weight, b.layers.conv2d_1.weight)
