"""Feature taps and patches undo themselves, on normal exit and on error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fer_analysis.hooks import (
    LogitsOnly,
    assert_no_hooks,
    capture,
    hook_count,
    patch_input,
    relus_not_inplace,
    resolve_layer,
)
from fer_models.errors import ConfigError, UnknownNameError

torch.set_num_threads(1)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )


def test_capture_records_outputs_and_inputs_then_removes_hooks():
    net = _net()
    x = torch.randn(2, 3, 8, 8)
    with capture({"conv": net[0]}) as out, capture({"fc": net[3]}, inputs=True) as inp:
        assert hook_count(net) == 2
        y = net(x)
    assert out["conv"].shape == (2, 4, 8, 8)
    # the input of the linear layer is the flattened, rectified conv output
    assert torch.allclose(inp["fc"], torch.relu(out["conv"]).flatten(1))
    assert torch.allclose(y, net[3](inp["fc"]))
    assert hook_count(net) == 0
    assert_no_hooks(net)


def test_no_hook_remains_after_an_exception():
    net = _net()
    with pytest.raises(RuntimeError, match="boom"):
        with capture({"conv": net[0]}), patch_input(net[3], lambda t: t * 0):
            assert hook_count(net) == 2
            raise RuntimeError("boom")
    assert_no_hooks(net)


def test_assert_no_hooks_names_the_leftover():
    net = _net()
    h = net[0].register_forward_hook(lambda *a: None)
    with pytest.raises(AssertionError, match="0._forward_hooks"):
        assert_no_hooks(net)
    h.remove()
    assert_no_hooks(net)


def test_patch_input_changes_the_forward_only_inside_the_block():
    net = _net().eval()
    x = torch.randn(1, 3, 8, 8)
    with patch_input(net[3], torch.zeros_like):
        y0 = net(x)
    assert torch.allclose(y0, net[3].bias[None])  # zero input -> bias only
    assert not torch.allclose(net(x), y0)


def test_relus_not_inplace_restores_flags_also_on_error():
    net = _net()
    with pytest.raises(ValueError):
        with relus_not_inplace(net) as n:
            assert n == 1 and net[1].inplace is False
            raise ValueError("x")
    assert net[1].inplace is True


def test_relus_not_inplace_refuses_models_without_relu_modules():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return torch.relu(self.fc(x))

    with pytest.raises(ConfigError, match="nn.ReLU"):
        with relus_not_inplace(F()):
            pass


def test_resolve_layer_names_known_layers_on_error():
    net = _net()
    assert resolve_layer(net, "0")[1] is net[0]
    with pytest.raises(UnknownNameError, match="tap layers are: 0, 3"):
        resolve_layer(net, "conv9")


def test_logits_only_unwraps_model_outputs():
    fc = nn.Linear(2, 3)
    x = torch.randn(4, 2)
    for wrap in (lambda t: t, lambda t: SimpleNamespace(logits=t), lambda t: (t, "aux")):
        model = nn.Sequential(fc, _Lambda(wrap))
        assert torch.allclose(LogitsOnly(model)(x), fc(x))


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_capture_takes_the_logits_of_a_model_output_and_skips_non_tensors():
    fc = nn.Linear(2, 3)
    out_obj = _Lambda(lambda t: SimpleNamespace(logits=t))
    nothing = _Lambda(lambda t: None)
    x = torch.randn(4, 2)
    with capture({"out": out_obj, "none": nothing}) as acts:
        out_obj(fc(x))
        nothing(x)
    assert set(acts) == {"out"} and torch.allclose(acts["out"], fc(x))
