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
    emb = collect_embeddings(Tiny(), _batches(4, 4), ["conv"], max_features=512, include_output=False, big="pool")
    assert emb.names == ["conv"] and emb.reduced == {"conv": "pool"}
    assert emb.pooled["conv"] and emb.shapes["conv"] == (8, 32, 32)
    assert emb.layers["conv"].shape == (4, 8 * 8 * 8)  # g = isqrt(512 // 8) = 8


def _sklearn_scores(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=k, svd_solver="full").fit_transform(x.astype(np.float64))


@pytest.mark.parametrize("memory_mb, one_shot", [(1024, False), (0.05, False), (0.05, True)])
def test_big_layers_keep_their_exact_principal_components(memory_mb, one_shot):
    """conv (8x32x32 = 8192 values) is above max_features: the Gram path must give the PC
    scores of the flattened layer exactly, whether the held group is everything (1 GiB), a
    few samples (0.05 MB = 1-2 samples: many passes, groups straddling batches), or the
    batches come from a one-shot generator (replayed)."""
    model = Tiny()
    batches = _batches(11, 4)
    x = torch.cat([b["image"] for b in batches])
    with torch.no_grad():
        flat = model.conv(x).flatten(1).numpy()
    source = iter(batches) if one_shot else batches
    emb = collect_embeddings(model, source, ["conv", "fc1"], max_features=4096, n_components=6,
                             memory_mb=memory_mb, include_output=False)
    assert emb.reduced == {"conv": "pca", "fc1": "raw"} and emb.pooled["conv"] and not emb.pooled["fc1"]
    assert emb.layers["conv"].shape == (11, 6) and emb.shapes["conv"] == (8, 32, 32)
    ref = _sklearn_scores(flat, 6)
    got = emb.layers["conv"].astype(np.float64)
    signs = np.sign((ref * got).sum(0))
    np.testing.assert_allclose(got * signs, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    total = flat.astype(np.float64).var(axis=0, ddof=1).sum()
    assert emb.total_variance["conv"] == pytest.approx(total, rel=1e-4)
    kept = ref.var(axis=0, ddof=1).sum() / total
    assert emb.variance_share("conv") == pytest.approx(kept, rel=1e-4) and emb.variance_share("fc1") == 1.0
    assert emb.label.tolist() == [i % 7 for i in range(11)]


def test_silhouette_on_10_pcs_is_the_same_from_the_exact_pc_scores():
    from fer_analysis.probes.silhouette import silhouette_curve

    model = Tiny()
    raw = collect_embeddings(model, _batches(24, 5), ["conv"], max_features=10**6, include_output=False)
    pca = collect_embeddings(model, _batches(24, 5), ["conv"], max_features=4096, memory_mb=0.2,
                             include_output=False)
    assert raw.reduced["conv"] == "raw" and pca.reduced["conv"] == "pca"
    a, b = silhouette_curve(raw, n_pcs=5)[0], silhouette_curve(pca, n_pcs=5)[0]
    for key in ("identity", "expression", "explained_variance"):
        assert a[key] == pytest.approx(b[key], abs=1e-4)


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


def test_paper004_keras_names_mean_what_they_mean_in_keras():
    """conv2d_n is the post-ELU map (a Keras Conv2D with activation="elu"), out_layer the
    softmax; the pre-activation convolution stays reachable by its module path."""
    from fer_analysis.hooks import resolve_layer
    from fer_analysis.layers import keras_layers, paper_layers
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(method="light-cnn", data=DataConfig(image_size=32))).eval()
    names = list(keras_layers(model))
    assert names[:6] == ["conv2d_1", "batchnorm_1", "conv2d_2", "batchnorm_2", "maxpool2d_1", "dropout_1"]
    assert names[-5:] == ["flatten", "dense_1", "batchnorm_7", "dropout_4", "out_layer"]
    assert not [n for n in names if n.startswith("elu")]
    assert isinstance(resolve_layer(model, "conv2d_4")[1], nn.ELU)
    assert isinstance(resolve_layer(model, "layers.conv2d_4")[1], nn.Conv2d)
    x = torch.cat([b["image"] for b in _batches(4, 2)])
    emb = collect_embeddings(model, _batches(4, 2), ["conv2d_1", "dense_1", "out_layer"], max_features=10**6)
    with torch.no_grad():
        conv = model.layers.conv2d_1(x)
        logits = model(x).logits
    np.testing.assert_allclose(emb.layers["conv2d_1"], nn.functional.elu(conv).flatten(1).numpy(), atol=1e-5)
    assert (emb.layers["conv2d_1"] >= -1.0).all() and (emb.layers["conv2d_1"] < 0).any()  # ELU's range
    np.testing.assert_allclose(emb.layers["out_layer"], logits.softmax(1).numpy(), atol=1e-6)
    assert emb.layers["dense_1"].min() >= -1.0
    assert paper_layers(model, "gradcam") == ("batchnorm_1", "conv2d_4", "conv2d_6")
    assert hook_count(model) == 0


def test_the_input_pseudo_layer_is_the_images_themselves():
    """Paper 004 Fig. 3a-b maps the faces themselves: ``input`` is the flattened network input,
    raw when small, its exact PCs when large."""
    batches = _batches(9, 4)
    x = torch.cat([b["image"] for b in batches]).flatten(1).numpy()
    emb = collect_embeddings(Tiny(), batches, ["input", "fc1"])
    assert emb.names == ["input", "fc1", OUTPUT_LAYER] and emb.reduced["input"] == "raw"
    np.testing.assert_allclose(emb.layers["input"], x)
    assert emb.penultimate() == "fc1"
    emb = collect_embeddings(Tiny(), batches, ["input"], max_features=1000, n_components=4, memory_mb=0.02)
    assert emb.reduced["input"] == "pca"
    ref = _sklearn_scores(x, 4)
    got = emb.layers["input"].astype(np.float64)
    np.testing.assert_allclose(got * np.sign((ref * got).sum(0)), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_thumbnails_are_the_inputs_in_order_scaled_and_kept_through_save(tmp_path):
    batches = _batches(6, 4)
    emb = collect_embeddings(Tiny(), batches, ["fc1"], n_samples=5, thumbnails=4)
    assert emb.images.shape[0] == 5 and emb.images.dtype == np.uint8 and max(emb.images.shape[1:3]) <= 4
    x = torch.cat([b["image"] for b in batches])[:5]
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, emb.images.shape[1:3])
    for i in range(5):  # each picture is its own input, min-max scaled to 0-255
        p = pooled[i].permute(1, 2, 0).numpy()
        want = np.round((p - p.min()) / (p.max() - p.min()) * 255)
        np.testing.assert_allclose(emb.images[i].astype(float), want, atol=1)
    emb.save(tmp_path / "e.npz")
    np.testing.assert_array_equal(Embeddings.load(tmp_path / "e.npz").images, emb.images)
    assert collect_embeddings(Tiny(), _batches(6, 4), ["fc1"]).images is None  # only when asked
