"""Backtracking and feature tracking (paper 003, Alg. 1-2): which feature-map pixels pushed
a decision, and which facial features they stand for.

**Algorithm 1 (backtracking).** With a_j the input of dense layer j (so a_n feeds the output
layer W_o) and k the predicted class, keep neuron i of a_n when a_n[i] * W_o[k, i] > 0; then,
going down, keep neuron r of a_{j-1} when a_{j-1}[r] * W_j[i, r] > 0 for *some* kept neuron i
of layer j. What is kept at the input of the first dense layer are the feature-map pixels
(channel, row, col of the flattened maps) that pushed the decision. torch stores a weight as
(out, in), the paper as (in, out): W_paper[i][k] = weight[k, i].

The paper assumes ReLU activations (a >= 0), so a * W > 0 means "active and positively
weighted"; for other activations (the paper-004 CNN: ELU + batch norm) we keep the same
test, which then reads "contributes positively", and say so here rather than refuse.

**Algorithm 2 (feature tracking).** Deconvolve the feature maps M feeding the first dense
layer (the deconvnet signal at that layer is M itself) and the same maps M' with the
backtracked pixels set to zero; |dd - dd'| shows the facial features behind the decision.

**Not applicable: heads that keep almost everything.** The test a·W > 0 assumes a >= 0 (ReLU):
then an input is kept only where it is active, and the kept set is the active feature-map
pixels that push the decision. Where the dense inputs take both signs (the paper-004 CNN:
ELU + batch norm), some kept neuron above agrees in sign with almost every input, so
backtracking keeps nearly all of them and zeroing "the backtracked pixels" zeroes the whole
map. When the first dense layer's inputs take negative values and more than ``MAX_KEPT`` =
90 % of them are kept (measured on the first test images), the job raises
:class:`NotApplicableError` with both numbers instead of printing a meaningless Table 3.

Applies to networks whose head is a chain of ``nn.Linear`` layers fed by *flattened spatial
feature maps* (Tiny VGG, zero-bias CNN, paper-004 CNN); a global-average-pooled head (CAM
ResNets) or a token head (transformers) raises :class:`NotApplicableError` saying why.

The rest of paper 003's backtracking builds on this module, in the order of the paper:
:mod:`fer_analysis.backtrack_pairs` pairs each misclassified test image with a similar
correctly classified one, :mod:`fer_analysis.backtrack_suppression` zeroes their unique or
common pixels (Table 3, Figs. 9-11) and is the job's entry point, and
:mod:`fer_analysis.backtrack_compare` compares two networks on the same images (Fig. 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from fer_analysis.hooks import LogitsOnly, NotApplicableError, capture, patch_input
from fer_analysis.registry import EXPLAINERS


def backtrack_masks(acts: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Algorithm 1 for one sample. ``acts[j]`` is the input vector of dense layer j,
    ``weights[j]`` its (out, in) weight, the last one the output layer; ``k`` the class.
    Returns, per dense layer, the boolean mask of its kept input neurons (``[0]``: the
    feature-map pixels at the first dense layer)."""
    keep_out = torch.zeros(weights[-1].shape[0], dtype=torch.bool, device=weights[-1].device)
    keep_out[int(k)] = True
    masks: list[torch.Tensor] = []
    for a, w in zip(reversed(list(acts)), reversed(list(weights))):
        contrib = a[None, :] * w[keep_out]  # (kept above, inputs): a[r] * W[i, r]
        keep_in = (contrib > 0).any(dim=0)
        masks.append(keep_in)
        keep_out = keep_in
    return masks[::-1]


@dataclass
class DenseHead:
    linears: list[nn.Module]  # the dense chain, first to output layer
    names: list[str]
    feature_module: nn.Module  # module whose (B, C, h, w) output is flattened into linears[0]
    feature_name: str
    feature_shape: tuple[int, int, int]


def find_dense_head(model: nn.Module, x: torch.Tensor) -> DenseHead:
    """Find the chain of dense layers ending in the logits and the feature maps feeding it."""
    fwd = LogitsOnly(model).eval()
    named = dict(model.named_modules())
    linears = {n: m for n, m in named.items() if isinstance(m, nn.Linear)}
    if not linears:
        raise NotApplicableError(
            "backtracking needs a dense (fully connected) head, and this model has no nn.Linear layer "
            "(its class scores come from pooled class maps), so it does not apply"
        )
    leaves = {n: m for n, m in named.items() if n and not list(m.children())}
    with torch.no_grad(), capture(linears, inputs=True) as ins, capture(leaves) as outs:
        logits = fwd(x[:1])
    order = [n for n in ins]  # call order
    last = order[-1]
    if not torch.allclose(torch.as_tensor(outs.get(last, torch.empty(0))).reshape(-1).float(),
                          logits.reshape(-1).float(), atol=1e-5):
        raise NotApplicableError(
            "backtracking needs the logits to come straight out of a dense layer, which is not the case "
            "for this model's head, so it does not apply"
        )
    chain = [last]
    for n in reversed(order[:-1]):
        if linears[n].out_features == linears[chain[0]].in_features and ins[chain[0]].dim() == 2:
            chain.insert(0, n)
        else:
            break
    first = linears[chain[0]]
    feat_name = None
    for n in reversed(list(outs)):  # latest-called leaf first
        t = outs[n]
        if n in chain or t.dim() != 4 or t.shape[-1] * t.shape[-2] <= 1:
            continue
        if t[0].numel() == first.in_features and list(outs).index(n) < list(outs).index(chain[0]):
            feat_name = n
            break
    if feat_name is None or ins[chain[0]].dim() != 2:
        raise NotApplicableError(
            "backtracking needs the first dense layer to read flattened spatial feature maps, but this "
            "model's head reads globally pooled features (or tokens), so there are no feature-map pixels "
            "to track and it does not apply"
        )
    return DenseHead([linears[n] for n in chain], chain, named[feat_name], feat_name,
                     tuple(outs[feat_name].shape[1:]))


MAX_KEPT = 0.9  # above this share of kept dense inputs the suppression test says nothing (module docstring)


@dataclass
class Backtracked:
    probs_before: torch.Tensor  # (B, K)
    probs_after: torch.Tensor  # (B, K) with all the backtracked pixels zeroed (Alg. 2's M')
    pred: torch.Tensor  # (B,) class backtracked from (the prediction)
    pixel_mask: torch.Tensor  # (B, C, h, w) bool: the backtracked feature-map pixels
    masks: list[list[torch.Tensor]]  # per sample, per dense layer input
    negative_fraction: float = 0.0  # share of the first dense layer's inputs below 0 (0 after a ReLU)

    @property
    def kept_fraction(self) -> float:
        return float(self.pixel_mask.float().mean())


@torch.no_grad()
def suppress(model: nn.Module, x: torch.Tensor, head: DenseHead, mask: torch.Tensor) -> torch.Tensor:
    """Class probabilities of ``x`` with the feature-map pixels in ``mask`` (B, C, h, w) set to
    zero at the input of the first dense layer (paper 003: "we set their values to zero")."""
    keep = (~mask.reshape(mask.shape[0], -1)).to(x.device)
    with patch_input(head.linears[0], lambda t: t * keep.to(t.dtype)):
        return LogitsOnly(model).eval()(x).softmax(1)


@torch.no_grad()
def backtrack(model: nn.Module, x: torch.Tensor, head: DenseHead | None = None, target=None) -> Backtracked:
    """Algorithm 1 on a batch (from the prediction, or from ``target``), and the probabilities
    with every backtracked pixel zeroed."""
    head = head or find_dense_head(model, x)
    fwd = LogitsOnly(model).eval()
    with capture(dict(zip(head.names, head.linears)), inputs=True) as ins:
        logits = fwd(x)
    pred = logits.argmax(1) if target is None else torch.as_tensor(target).expand(x.shape[0])
    weights = [m.weight.detach() for m in head.linears]
    masks = [backtrack_masks([ins[n][b] for n in head.names], weights, int(pred[b])) for b in range(x.shape[0])]
    pixel_mask = torch.stack([m[0] for m in masks]).reshape(-1, *head.feature_shape)
    negative = float((ins[head.names[0]] < 0).float().mean())
    return Backtracked(logits.softmax(1), suppress(model, x, head, pixel_mask), pred, pixel_mask, masks, negative)


def check_applicable(bt: Backtracked, head: DenseHead) -> float:
    """The share of first-dense-layer inputs backtracking keeps; :class:`NotApplicableError`
    when the inputs take negative values (not ReLU outputs) and more than :data:`MAX_KEPT` of
    them are kept (module docstring). A ReLU head keeps its active inputs, whatever their share:
    that is the paper's premise."""
    kept = bt.kept_fraction
    if bt.negative_fraction > 0 and kept > MAX_KEPT:
        raise NotApplicableError(
            f"backtracking keeps {100 * kept:.1f}% of the {int(bt.pixel_mask[0].numel())} inputs of this model's "
            f"first dense layer '{head.names[0]}': they are not ReLU outputs ({100 * bt.negative_fraction:.0f}% are "
            "negative, e.g. after ELU and batch norm), so a·W > 0 holds for almost every input and zeroing the "
            "backtracked pixels would zero nearly the whole map; paper 003's suppression test does not apply"
        )
    return kept


def feature_tracking(model: nn.Module, x: torch.Tensor, head: DenseHead, pixel_mask: torch.Tensor):
    """Algorithm 2: deconvnet of the feature maps M and of M' (``pixel_mask`` zeroed)."""
    with torch.no_grad(), capture({head.feature_name: head.feature_module}) as acts:
        LogitsOnly(model).eval()(x)
    m = acts[head.feature_name]
    m_sup = m * (~pixel_mask.to(m.device)).to(m.dtype)
    dec = EXPLAINERS.get("deconvnet")(model)
    dd = dec.signal(x, head.feature_module, m)
    dd_sup = dec.signal(x, head.feature_module, m_sup)
    return dd, dd_sup, dd - dd_sup
