"""Explainers checked against values worked out by hand on fixed-weight toy networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_analysis.explainers import ReluBackpropExplainer
from fer_analysis.hooks import assert_no_hooks
from fer_analysis.registry import EXPLAINERS
from fer_models.torch_utils import minmax

torch.set_num_threads(1)


def _dense() -> nn.Sequential:
    """x (3) -> W1 -> ReLU -> W2 -> y (1); W1 = [[1,0,0],[1,1,0],[0,0,1]], W2 = [-1, 3, 5]."""
    net = nn.Sequential(nn.Linear(3, 3, bias=False), nn.ReLU(inplace=True), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]]))
        net[2].weight.copy_(torch.tensor([[-1.0, 3, 5]]))
    return net


# x = [1, 1, -2] -> pre-ReLU h = [1, 2, -2] -> signal at the ReLU output = W2 = [-1, 3, 5].
X = torch.tensor([[1.0, 1.0, -2.0]])


def test_registry_lists_the_three_explainers():
    assert {"deconvnet", "guided-backprop", "layer-gradcam"} <= set(EXPLAINERS.names())
    # deconvnet and guided backprop: one base, one flag
    dec, gbp = EXPLAINERS.get("deconvnet"), EXPLAINERS.get("guided-backprop")
    assert issubclass(dec, ReluBackpropExplainer) and issubclass(gbp, ReluBackpropExplainer)
    assert dec.use_relu_grad_output and not gbp.use_relu_grad_output


def test_guided_backprop_zeroes_negative_gradients_and_negative_inputs():
    net = _dense()
    gbp = EXPLAINERS.get("guided-backprop")(net).attribute(X.clone(), target=0)
    # forward mask (h > 0) -> [-1, 3, 0]; relu of the gradient -> [0, 3, 0]; W1^T -> [3, 3, 0]
    assert torch.allclose(gbp, torch.tensor([[3.0, 3.0, 0.0]]))
    # plain gradient for comparison: W1^T [-1, 3, 0] = [2, 3, 0]
    xg = X.clone().requires_grad_()
    net(xg).sum().backward()
    assert torch.allclose(xg.grad, torch.tensor([[2.0, 3.0, 0.0]]))
    assert net[1].inplace is True  # restored after the call
    assert_no_hooks(net)


def test_deconvnet_passes_relu_of_the_gradient_ignoring_the_forward_mask():
    net = _dense()
    dec = EXPLAINERS.get("deconvnet")(net).attribute(X.clone(), target=0)
    # relu([-1, 3, 5]) = [0, 3, 5] (unit 3 was off in the forward pass but passes) -> [3, 3, 5]
    assert torch.allclose(dec, torch.tensor([[3.0, 3.0, 5.0]]))
    assert_no_hooks(net)


def _two_conv() -> nn.Sequential:
    """conv1 = identity 1x1, ReLU, conv2 = 3x3 kernel K with mixed signs (no biases)."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.Conv2d(1, 2, 3, padding=1, bias=False)
    )
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.zero_()
        net[2].weight[0, 0] = torch.tensor([[1.0, -2.0, 0.5], [0.0, 4.0, 1.0], [-1.0, 2.0, 3.0]])
        net[2].weight[1, 0] = -1.0  # filter 1: all negative
    return net


def test_neuron_patterns_sit_at_the_filters_maximal_response():
    net = _two_conv()
    x = torch.full((1, 1, 6, 6), 0.1)
    x[0, 0, 3, 2] = 5.0  # bright pixel -> filter 0 peaks where K's centre (4) meets it
    x[0, 0, 2, 1] = -3.0  # a negative pixel inside that window (top-left of the centre)
    k = net[2].weight[0, 0]
    with torch.no_grad():
        act = net(x)[0, 0]
    assert divmod(int(act.argmax()), 6) == (3, 2)

    gbp = EXPLAINERS.get("guided-backprop")(net).neuron(x, net[2], 0)[0, 0]
    dec = EXPLAINERS.get("deconvnet")(net).neuron(x, net[2], 0)[0, 0]
    # gradient of out[3, 2] w.r.t. the ReLU output is K placed on rows 2..4, cols 1..3
    window = (slice(2, 5), slice(1, 4))
    want_dec = torch.zeros(6, 6)
    want_dec[window] = k.clamp_min(0)  # deconvnet: relu(K), whatever the input was
    want_gbp = want_dec.clone()
    want_gbp[(x[0, 0] <= 0)] = 0  # guided: also zero where the forward ReLU was off
    assert torch.allclose(dec, want_dec)
    assert torch.allclose(gbp, want_gbp)
    assert gbp.abs().sum() > 0 and (gbp != dec).any()
    assert_no_hooks(net)


def test_neuron_pattern_with_nothing_positive_is_zero():
    net = _two_conv()
    x = torch.rand(1, 1, 6, 6)
    gbp = EXPLAINERS.get("guided-backprop")(net).neuron(x, net[2], 1)  # all-negative filter
    assert torch.count_nonzero(gbp) == 0


class _OneConvLinear(nn.Module):
    """1x1 conv (A^0 = 2x, A^1 = -x) -> global average pool -> linear V (no biases)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 2.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_gradcam_of_a_one_conv_linear_net_equals_the_hand_weighted_sum():
    net = _OneConvLinear()
    x = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]]])
    cam = EXPLAINERS.get("layer-gradcam")(net, layer="conv")
    # alpha_c = V[k, c] / (h w) = V[k, c] / 4
    # k=0: relu((2x - x) / 4) = relu(x) / 4;  k=1: relu((-2x - 2x) / 4) = relu(-x)
    assert torch.allclose(cam.raw(x, 0)[0], torch.tensor([[0.25, 0.0], [0.5, 0.0]]))
    assert torch.allclose(cam.raw(x, 1)[0], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    # up-sampled to the input (same size here) and min-max normalised
    assert torch.allclose(cam.attribute(x, 0)[0], torch.tensor([[0.5, 0.0], [1.0, 0.0]]))
    # default target = predicted class: y = [x̄, -3x̄] with x̄ = 0.5 -> class 0
    assert torch.allclose(cam.attribute(x)[0], cam.attribute(x, 0)[0])
    maps = cam.per_block(x, 1, ["conv"])
    assert set(maps) == {"conv"} and maps["conv"].shape == (1, 2, 2)
    assert_no_hooks(net)


def test_minmax_keeps_constant_maps_at_zero():
    m = torch.stack([torch.full((3, 3), 2.0), torch.arange(9.0).view(3, 3)])
    n = minmax(m, eps=1e-12)
    assert torch.count_nonzero(n[0]) == 0
    assert n[1].min() == 0 and n[1].max() == 1


def test_gradcam_without_a_layer_is_a_clear_error_and_leaves_no_hook():
    net = _OneConvLinear()
    with pytest.raises(ValueError, match="needs a layer"):
        EXPLAINERS.get("layer-gradcam")(net).attribute(torch.randn(1, 1, 2, 2), 0)
    with pytest.raises(IndexError):
        EXPLAINERS.get("layer-gradcam")(net, layer="conv").attribute(torch.randn(1, 1, 2, 2), 5)
    assert_no_hooks(net)


def test_explainer_errors_leave_no_hook_and_restore_inplace_relus():
    net = _dense()
    gbp = EXPLAINERS.get("guided-backprop")(net)
    with pytest.raises(Exception):
        gbp.attribute(X.clone(), target=3)  # the net has one output: the target is out of range
    assert net[1].inplace is True
    assert_no_hooks(net)
    conv = _two_conv()
    with pytest.raises(IndexError):
        EXPLAINERS.get("deconvnet")(conv).neuron(torch.rand(1, 1, 6, 6), conv[2], 7)  # no filter 7
    assert_no_hooks(conv)


class _MapsByLabel(nn.Module):
    """class_maps returns a constant map equal to (label + 1) / 10, so class means are known."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))

    def class_maps(self, x, target):
        return ((target.float() + 1) / 10)[:, None, None].expand(x.shape[0], 4, 4)


def test_class_mean_maps_average_the_true_class_map_per_class():
    from torch.utils.data import DataLoader, TensorDataset

    from fer_analysis.jobs.block_maps import class_mean_maps

    x = torch.rand(10, 3, 8, 8)
    y = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 2, 2])
    maps, counts = class_mean_maps(_MapsByLabel(), DataLoader(TensorDataset(x, y), batch_size=4), 4,
                                   progress=False)
    assert counts == [2, 3, 5, 0]
    assert maps.shape == (4, 8, 8)  # up-sampled to the input size
    for k in range(3):
        assert abs(maps[k].mean() - (k + 1) / 10) < 1e-6
    assert maps[3].max() == 0  # a class with no image stays empty
