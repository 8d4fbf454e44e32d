"""Backtracking (paper 003, Alg. 1-2, Table 3) on hand-set networks."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_analysis.backtrack import backtrack, backtrack_masks, feature_tracking, find_dense_head
from fer_analysis.backtrack_pairs import pair_cases
from fer_analysis.backtrack_suppression import run_backtrack
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


class _Pairs(nn.Module):
    """x (1, 2, 2) -> identity 1x1 conv -> ReLU -> a0 (4) -> fc1 -> ReLU -> fc2 = I (2 classes).
    fc1: h0 = a0[0] + a0[2] + a0[3], h1 = a0[1] + a0[3]: input 3 feeds both classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4, 2, bias=False)
        self.relu_fc = nn.ReLU()
        self.fc2 = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc1.weight.copy_(torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 1]]))
            self.fc2.weight.copy_(torch.eye(2))

    def forward(self, x):
        return self.fc2(self.relu_fc(self.fc1(self.flatten(self.relu(self.conv(x))))))


# a0 of each image; A is misclassified (h = [3, 1.5] -> class 0), B its partner (h = [1, 3] -> 1)
_A = [1.0, 1.0, 1.5, 0.5]  # backtracked from class 0: inputs 0, 2, 3
_B = [0.0, 2.0, 0.0, 1.0]  # backtracked from class 1: inputs 1, 3
_C = [0.5, 2.0, 1.0, 0.5]  # class 1, nearer to A than B is (|A-C|^2 = 1.5 < 4.5), but another key differs
_E = [1.0, 1.0, 1.4, 0.5]  # class 0 like A's prediction, nearest of all, but another class / key


def _pair_loader(rows):
    """rows: (a0, label, identity); a dataset of dicts as FaceDataset yields."""
    x = torch.tensor([r[0] for r in rows]).reshape(-1, 1, 2, 2)
    items = [{"image": x[i], "label": torch.tensor(r[1]), "identity": torch.tensor(r[2]), "index": torch.tensor(i)}
             for i, r in enumerate(rows)]

    class _Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    return DataLoader(_Items(), batch_size=3)


def test_pairs_are_misclassified_with_the_nearest_correct_image_of_the_same_class_subject_and_expression():
    images = torch.tensor([_A, _B, _C, _E, _A]).reshape(5, 1, 2, 2)
    labels = torch.tensor([1, 1, 1, 0, 1])
    preds = torch.tensor([0, 1, 1, 0, 0])  # rows 0 and 4 are misclassified
    subjects = torch.tensor([5, 5, 6, 5, 9])  # row 4: a subject with no correct image
    expressions = labels.clone()
    pairs, lonely = pair_cases(images, labels, preds, subjects, expressions, fallback=False)
    assert [(p.a, p.b, p.basis) for p in pairs] == [(0, 1, "subject+expression")]  # not C (subject), not E (class)
    assert pairs[0].distance == pytest.approx(math.sqrt(4.5), rel=1e-5) and lonely == [4]
    # with the fallback, row 4 (no correct image of its subject) takes the nearest correct one of its class
    pairs, lonely = pair_cases(images, labels, preds, subjects, expressions)
    assert [(p.a, p.b, p.basis) for p in pairs] == [(0, 1, "subject+expression"), (4, 2, "class only")]
    assert lonely == []
    # without identities the nearest correct image of the class is the partner
    pairs, lonely = pair_cases(images, labels, preds, torch.full((5,), -1), expressions)
    assert [(p.a, p.b, p.basis) for p in pairs] == [(0, 2, "expression"), (4, 2, "expression")] and lonely == []
    # an identity network's pair must also show the same expression (the paper's pair differs by gaze only)
    expressions = torch.tensor([3, 4, 3, 3, 3])
    pairs, _ = pair_cases(images, labels, preds, torch.full((5,), -1), expressions)
    assert [(p.a, p.b) for p in pairs] == [(0, 2), (4, 2)]
    pairs, lonely = pair_cases(images, labels, preds, torch.tensor([5, 5, 6, 5, 9]), expressions, fallback=False)
    assert pairs == [] and lonely == [0, 4]
    images_e = torch.tensor([_A, _B, _E]).reshape(3, 1, 2, 2)  # no correct image of class 1 at all
    assert pair_cases(images_e, torch.tensor([1, 0, 0]), torch.tensor([0, 0, 0]), torch.full((3,), -1),
                      torch.full((3,), -1)) == ([], [0])


def test_expression_run_zeroes_the_pixels_unique_to_the_misclassified_image(tmp_path):
    """Table 3: L_A = {0, 2, 3}, L_B = {1, 3}; zeroing L_A minus L_B = {0, 2} in A gives
    h = [0.5, 1.5]: the prediction becomes the true class."""
    net = _Pairs().eval()
    loader = _pair_loader([(_A, 1, 5), (_B, 1, 5), (_C, 1, 6), (_E, 0, 5)])  # (a0, expression, subject)
    metrics = run_backtrack(net, loader, tmp_path, cases=4, target="expression", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "suppression.csv")))
    assert len(rows) == 1
    r = rows[0]
    assert (r["image_index"], r["partner_index"], r["pair_basis"], r["zeroed"]) == ("0", "1", "subject+expression", "unique")
    assert (r["kept_a"], r["kept_b"], r["common"], r["unique_a"], r["zeroed_pixels"]) == ("3", "2", "1", "2", "2")
    assert (r["true"], r["pred_before"], r["pred_after"]) == ("disgust", "anger", "disgust")
    assert float(r["after_disgust"]) == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-5)  # softmax([0.5, 1.5])
    assert float(r["before_anger"]) == pytest.approx(1 / (1 + math.exp(-1.5)), rel=1e-5)  # softmax([3, 1.5])
    assert metrics["backtrack_cases"] == 1 and metrics["backtrack_fixed_fraction"] == 1.0
    assert metrics["backtrack_misclassified"] == 1 and metrics["backtrack_unpaired"] == 0
    assert "unique to the misclassified image" in (tmp_path / "suppression.md").read_text()
    assert (tmp_path / "backtrack.png").stat().st_size > 1000
    assert_no_hooks(net)


def test_identity_run_zeroes_the_pixels_common_to_both_images_in_both(tmp_path):
    """Figs. 9-10: the classes are identities (the identity column), the pair shares the
    expression; the common pixel {3} is zeroed in A (h = [2.5, 1]) and in B (h = [0, 2])."""
    net = _Pairs().eval()
    # (a0, expression, identity): C has the same identity but another expression
    loader = _pair_loader([(_A, 3, 1), (_B, 3, 1), (_C, 4, 1), (_E, 3, 0)])
    metrics = run_backtrack(net, loader, tmp_path, cases=4, target="identity", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "suppression.csv")))
    assert len(rows) == 1
    r = rows[0]
    assert (r["partner_index"], r["zeroed"], r["zeroed_pixels"], r["common"]) == ("1", "common", "1", "1")
    assert (r["true"], r["pred_before"], r["pred_after"]) == ("class 1", "class 0", "class 0")
    assert float(r["after_class 0"]) == pytest.approx(1 / (1 + math.exp(-1.5)), rel=1e-5)  # softmax([2.5, 1])
    assert float(r["b_before_class 1"]) == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)  # softmax([1, 3])
    assert float(r["b_after_class 1"]) == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)  # softmax([0, 2])
    assert metrics["backtrack_partner_prob_after"] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)
    assert "common to the misclassified image" in (tmp_path / "suppression.md").read_text()
    assert_no_hooks(net)


def test_run_backtrack_without_a_pair_draws_alg_1_2_and_no_table(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 7),
    ).eval()
    x = torch.randn(12, 3, 16, 16)
    with torch.no_grad():
        y = (net(x).argmax(1) + 1) % 7  # every image misclassified: no partner
    metrics = run_backtrack(net, DataLoader(TensorDataset(x, y), batch_size=6), tmp_path, cases=4, progress=False)
    assert metrics["backtrack_cases"] == 0 and metrics["backtrack_unpaired"] == 12
    assert not (tmp_path / "suppression.csv").exists()
    assert "No suppression test" in (tmp_path / "suppression.md").read_text()
    assert (tmp_path / "backtrack.png").stat().st_size > 1000
    assert_no_hooks(net)


def test_elu_batchnorm_heads_are_not_applicable_with_the_measured_share():
    """Paper 004's light CNN: its dense inputs follow ELU + batch norm and take both signs, so
    backtracking keeps almost every input and the suppression test says nothing."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.manual_seed(0)
    net = build_model(TrainConfig(method="light-cnn", data=DataConfig(image_size=32))).eval()
    x = torch.randn(8, 3, 32, 32)
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(NotApplicableError, match=r"keeps (9\d|100)\.\d% of the 4096 inputs.*negative.*does not apply"):
        run_backtrack(net, DataLoader(TensorDataset(x, y), batch_size=4), "/tmp/unused-bt", progress=False)
    assert_no_hooks(net)


def test_suppression_covers_every_misclassified_image_fallbacks_apart_with_a_random_control(tmp_path):
    """Two misclassified copies of A: one has a same-subject partner (exact pair), the other
    only the nearest correct image of its class (fallback). ``cases=1`` limits the figure and
    the per-case table, never the test; the random control zeroes as many active pixels."""
    net = _Pairs().eval()
    loader = _pair_loader([(_A, 1, 5), (_B, 1, 5), (_A, 1, 7), (_E, 0, 5)])
    m = run_backtrack(net, loader, tmp_path, cases=1, target="expression", progress=False)
    assert m["backtrack_cases"] == 2 and m["backtrack_pairs_exact"] == 1 and m["backtrack_pairs_fallback"] == 1
    assert m["backtrack_fixed_fraction_exact"] == 1.0 and m["backtrack_fixed_fraction_fallback"] == 1.0
    rows = list(csv.DictReader(open(tmp_path / "suppression.csv")))
    assert [r["pair_basis"] for r in rows] == ["subject+expression", "class only"]
    assert all(r["random_pixels"] == r["zeroed_pixels"] == "2" for r in rows)
    assert 0.0 <= m["backtrack_fixed_fraction_random"] <= 1.0 and "backtrack_true_prob_after_random" in m
    md = (tmp_path / "suppression.md").read_text()
    assert "| exact | 1 |" in md and "| fallback | 1 |" in md and "The first 1 pairs" in md


def test_the_random_control_draws_as_many_active_pixels_seeded():
    from fer_analysis.backtrack_suppression import random_pixels

    zero = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool).reshape(2, 1, 2, 3)
    active = torch.tensor([[1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 1, 1]], dtype=torch.bool).reshape(2, 1, 2, 3)
    picks = [random_pixels(zero, active, torch.Generator().manual_seed(s)) for s in range(20)]
    for p in picks:
        assert p.flatten(1).sum(1).tolist() == [2, 2]  # as many as zeroed, or every active pixel
        assert not (p & ~active).any()
    assert len({tuple(p[0].flatten().tolist()) for p in picks}) > 1  # random, not the first ones
    assert torch.equal(picks[3], random_pixels(zero, active, torch.Generator().manual_seed(3)))
