"""Backtracking (paper 003, Alg. 1-2, Table 3) on hand-set networks."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_analysis.backtrack import backtrack, backtrack_masks, feature_tracking, find_dense_head, run_backtrack
from fer_analysis.hooks import NotApplicableError, assert_no_hooks

torch.set_num_threads(1)


class _Hand(nn.Module):
    """x (1, 2, 2) -> 1x1 conv (identity) -> ReLU -> flatten a0 (4) -> fc1 -> ReLU -> fc2 (2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.relu_fc = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc1.weight.copy_(torch.tensor([[1.0, -1, 5, 0], [0, 2, 0, -1], [-1, 0, 0, 2]]))
            self.fc2.weight.copy_(torch.tensor([[3.0, 1, 1], [1, -2, -1]]))

    def forward(self, x):
        return self.fc2(self.relu_fc(self.fc1(self.flatten(self.relu(self.conv(x))))))


X = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]])  # a0 = [1, 2, 0, 3]


def test_backtracking_keeps_exactly_the_neurons_with_positive_a_times_w():
    # a1 = relu(W1 a0) = relu([-1, 1, 5]) = [0, 1, 5]; logits = W2 a1 = [6, -7] -> class 0
    a0 = torch.tensor([1.0, 2, 0, 3])
    a1 = torch.tensor([0.0, 1, 5])
    net = _Hand()
    masks = backtrack_masks([a0, a1], [net.fc1.weight, net.fc2.weight], 0)
    # a1 * W2[0] = [0, 1, 5] -> keep {1, 2} (unit 0 has a = 0 although its weight is 3)
    assert masks[1].tolist() == [False, True, True]
    # unit 1: a0 * W1[1] = [0, 4, 0, -3] -> {1};  unit 2: a0 * W1[2] = [-1, 0, 0, 6] -> {3}
    assert masks[0].tolist() == [False, True, False, True]
    # from class 1: a1 * W2[1] = [0, -2, -5] -> nothing positive, nothing below either
    none = backtrack_masks([a0, a1], [net.fc1.weight, net.fc2.weight], 1)
    assert not none[1].any() and not none[0].any()


def test_backtrack_on_the_model_and_suppression_lowers_the_predicted_class():
    net = _Hand().eval()
    head = find_dense_head(net, X)
    assert head.names == ["fc1", "fc2"] and head.feature_name == "relu" and head.feature_shape == (1, 2, 2)
    bt = backtrack(net, X, head)
    assert bt.pred.tolist() == [0]
    assert bt.pixel_mask[0, 0].tolist() == [[False, True], [False, True]]
    # before: softmax([6, -7]); after zeroing a0[1], a0[3]: a1 = relu([1, 0, -1]) -> logits [3, 1]
    assert bt.probs_before[0, 0].item() == pytest.approx(1 / (1 + math.exp(-13)), rel=1e-6)
    assert bt.probs_after[0, 0].item() == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)
    assert bt.probs_after[0, 0] < bt.probs_before[0, 0]
    assert_no_hooks(net)


def test_feature_tracking_difference_is_the_suppressed_part():
    net = _Hand().eval()
    bt = backtrack(net, X)
    dd, dd_sup, diff = feature_tracking(net, X, find_dense_head(net, X), bt.pixel_mask)
    # identity conv + ReLU(on, since the maps are >= 0): the deconvnet returns the maps themselves
    assert torch.allclose(dd[0, 0], torch.tensor([[1.0, 2.0], [0.0, 3.0]]))
    assert torch.allclose(dd_sup[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.allclose(diff[0, 0], torch.tensor([[0.0, 2.0], [0.0, 3.0]]))
    assert_no_hooks(net)


def test_gap_heads_and_headless_models_are_not_applicable():
    gap = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(NotApplicableError, match="globally pooled"):
        find_dense_head(gap, torch.randn(1, 3, 8, 8))
    conv_only = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(NotApplicableError, match="no nn.Linear"):
        find_dense_head(conv_only, torch.randn(1, 3, 8, 8))
    assert_no_hooks(gap)


def test_run_backtrack_writes_table3_and_figure(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 7),
    ).eval()
    x = torch.randn(12, 3, 16, 16)
    y = torch.randint(0, 7, (12,))
    metrics = run_backtrack(net, DataLoader(TensorDataset(x, y), batch_size=6), tmp_path, cases=4, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "suppression.csv")))
    assert len(rows) == 4 and {"before_anger", "after_neutral"} <= set(rows[0])
    for r in rows:
        for when in ("before", "after"):
            assert sum(float(v) for k, v in r.items() if k.startswith(when + "_")) == pytest.approx(1.0, abs=1e-4)
    assert metrics["backtrack_pred_prob_after"] < metrics["backtrack_pred_prob_before"]
    assert (tmp_path / "backtrack.png").stat().st_size > 1000
    assert "| before |" in (tmp_path / "suppression.md").read_text()
    assert_no_hooks(net)
