"""Layer embeddings: shapes, the size rule, labels, and taps that always remove themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_analysis.embeddings import OUTPUT_LAYER, Embeddings, collect_embeddings, grid_size, resolve_layers
from fer_analysis.hooks import hook_count
from fer_models.errors import ConfigError

torch.set_num_threads(1)


class Out:
    def __init__(self, logits):
        self.logits = logits


class Tiny(nn.Module):
    """Conv(3->8) -> ReLU -> pool -> fc(8*16*16 -> 12) -> fc(12 -> 7); returns an object with .logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 16 * 16, 12)
        self.fc2 = nn.Linear(12, 7)

    def forward(self, x):
        h = self.pool(self.relu(self.conv(x)))
        return Out(self.fc2(torch.relu(self.fc1(h.flatten(1)))))

    def tap_layers(self):
        return {"conv": self.conv, "pool": self.pool, "fc1": self.fc1}


def _batches(n=10, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, bs):
        b = min(bs, n - i)
        out.append({
            "image": torch.randn(b, 3, 32, 32, generator=g),
            "label": torch.arange(i, i + b) % 7,
            "identity": torch.arange(i, i + b) % 3,
            "valence": torch.linspace(-1, 1, b),
            "arousal": torch.full((b,), float("nan")),
        })
    return out


def test_collects_every_tapped_layer_with_labels_in_order():
    model = Tiny()
    emb = collect_embeddings(model, _batches(10, 4), max_features=4096)
    assert emb.names == ["conv", "pool", "fc1", OUTPUT_LAYER]
    assert emb.n == 10
    assert emb.layers["fc1"].shape == (10, 12)
    assert emb.layers[OUTPUT_LAYER].shape == (10, 7)
    assert emb.layers["pool"].shape == (10, 8 * 16 * 16) and not emb.pooled["pool"]
    assert emb.label.tolist() == [i % 7 for i in range(10)]
    assert emb.identity.tolist() == [i % 3 for i in range(10)]
    assert np.isnan(emb.arousal).all() and np.isfinite(emb.valence).all()
    assert emb.penultimate() == "fc1"
    # rows are the same samples as a plain forward pass
    x = torch.cat([b["image"] for b in _batches(10, 4)])
    with torch.no_grad():
        ref = model.fc1(model.pool(model.relu(model.conv(x))).flatten(1))
    np.testing.assert_allclose(emb.layers["fc1"], ref.numpy(), rtol=1e-5, atol=1e-5)


def test_size_rule_pools_large_maps_to_a_grid():
    assert grid_size(8, 16, 16, 4096) is None  # 2048 features: flattened
    assert grid_size(8, 32, 32, 4096) == 22  # 8*22*22 = 3872 <= 4096
    assert grid_size(8192, 4, 4, 4096) == 1  # channels alone exceed the budget: global pool
    emb = collect_embeddings(Tiny(), _batches(4, 4), ["conv"], max_features=512, include_output=False)
    assert emb.names == ["conv"]
    assert emb.pooled["conv"] and emb.shapes["conv"] == (8, 32, 32)
    assert emb.layers["conv"].shape == (4, 8 * 8 * 8)  # g = isqrt(512 // 8) = 8


def test_n_samples_truncates_mid_batch():
    emb = collect_embeddings(Tiny(), _batches(10, 4), ["fc1"], n_samples=6)
    assert emb.n == 6 and emb.layers["fc1"].shape == (6, 12)
    assert emb.label.tolist() == [0, 1, 2, 3, 4, 5]


def test_taps_removed_after_use_and_after_error_and_mode_restored():
    model = Tiny()
    model.train()
    assert hook_count(model) == 0
    collect_embeddings(model, _batches(4, 4))
    assert hook_count(model) == 0
    assert model.training  # restored

    def bad_batches():
        yield _batches(4, 4)[0]
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError, match="reader broke"):
        collect_embeddings(model, bad_batches())
    assert hook_count(model) == 0 and model.training


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown layer 'nope'.*tap layers are: conv, pool, fc1"):
        resolve_layers(Tiny(), ["nope"])
    # a dotted module path that is not in tap_layers is still allowed
    assert list(resolve_layers(Tiny(), ["relu"])) == ["relu"]


def test_save_and_load_round_trip(tmp_path):
    emb = collect_embeddings(Tiny(), _batches(5, 4), ["fc1"])
    emb.save(tmp_path / "e.npz")
    back = Embeddings.load(tmp_path / "e.npz")
    assert back.names == emb.names
    np.testing.assert_array_equal(back.layers["fc1"], emb.layers["fc1"])
    np.testing.assert_array_equal(back.identity, emb.identity)


class SeqNet(nn.Module):
    """Keras-style named Sequential like the paper-004 CNN: dropouts alias their input in eval."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential()
        self.body.add_module("conv2d_1", nn.Conv2d(3, 4, 3, padding=1))
        self.body.add_module("batchnorm_1", nn.BatchNorm2d(4))
        self.body.add_module("dropout_1", nn.Dropout(0.5))
        self.body.add_module("flatten", nn.Flatten())
        self.body.add_module("dense_1", nn.Linear(4 * 32 * 32, 10))
        self.body.add_module("dropout_4", nn.Dropout(0.5))
        self.body.add_module("out_layer", nn.Linear(10, 7))

    def forward(self, x):
        return Out(self.body(x))

    def tap_layers(self):
        return dict(self.body.named_children())


def test_default_layers_drop_aliases_and_find_the_output_tap():
    emb = collect_embeddings(SeqNet(), _batches(6, 3))
    # batchnorm_1 and dense_1 are aliased by the dropout after them; out_layer is the logits
    assert emb.names == ["conv2d_1", "dropout_1", "flatten", "dropout_4", "out_layer"]
    assert sorted(emb.dropped) == ["batchnorm_1", "dense_1"]
    assert emb.output_layer == "out_layer" and OUTPUT_LAYER not in emb.layers
    assert emb.penultimate() == "dropout_4"
    # explicitly named layers are all kept
    emb2 = collect_embeddings(SeqNet(), _batches(3, 3), ["batchnorm_1", "dropout_1"])
    assert emb2.names == ["batchnorm_1", "dropout_1", OUTPUT_LAYER]
    np.testing.assert_array_equal(emb2.layers["batchnorm_1"], emb2.layers["dropout_1"])


def test_paper004_cnn_default_layers_and_no_hook_left():
    """The real paper-004 CNN (fer_models METHODS 'light-cnn'): Keras-style names, output tap, clean model."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(method="light-cnn", data=DataConfig(image_size=32)))
    emb = collect_embeddings(model, _batches(4, 2))
    assert emb.output_layer == "out_layer" and emb.penultimate() == "dropout_4"
    assert {"batchnorm_1", "flatten", "dropout_4"} <= set(emb.names)
    assert "batchnorm_7" in emb.dropped  # aliased by dropout_4 in eval mode
    assert emb.layers["out_layer"].shape == (4, 7)
    assert hook_count(model) == 0
