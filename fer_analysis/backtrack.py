"""Backtracking and feature tracking of (mis)classified faces (paper 003, Alg. 1-2, Table 3).

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

**Suppression test (Table 3).** Class probabilities before and after zeroing the backtracked
activations at the input of the first dense layer. The paper's emotion experiment suppresses
only the pixels unique to misclassified images of hand-picked look-alike pairs; we suppress
all backtracked pixels of each image (its Alg. 2 and face experiment), which needs no pairs.

Applies to networks whose head is a chain of ``nn.Linear`` layers fed by *flattened spatial
feature maps* (Tiny VGG, zero-bias CNN, paper-004 CNN); a global-average-pooled head (CAM
ResNets) or a token head (transformers) raises :class:`NotApplicableError` saying why.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from fer_analysis.hooks import LogitsOnly, NotApplicableError, capture, patch_input


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


@dataclass
class Backtracked:
    probs_before: torch.Tensor  # (B, K)
    probs_after: torch.Tensor  # (B, K) with the backtracked pixels zeroed
    pred: torch.Tensor  # (B,) class backtracked from (the prediction)
    pixel_mask: torch.Tensor  # (B, C, h, w) bool: the backtracked feature-map pixels
    masks: list[list[torch.Tensor]]  # per sample, per dense layer input


@torch.no_grad()
def backtrack(model: nn.Module, x: torch.Tensor, head: DenseHead | None = None, target=None) -> Backtracked:
    """Algorithm 1 on a batch (from the prediction, or from ``target``) + the suppression test."""
    head = head or find_dense_head(model, x)
    fwd = LogitsOnly(model).eval()
    with capture(dict(zip(head.names, head.linears)), inputs=True) as ins:
        logits = fwd(x)
    pred = logits.argmax(1) if target is None else torch.as_tensor(target).expand(x.shape[0])
    weights = [m.weight.detach() for m in head.linears]
    masks = [backtrack_masks([ins[n][b] for n in head.names], weights, int(pred[b])) for b in range(x.shape[0])]
    first = torch.stack([m[0] for m in masks])  # (B, in_features)
    with patch_input(head.linears[0], lambda t: t * (~first).to(t.dtype)):
        after = fwd(x)
    return Backtracked(logits.softmax(1), after.softmax(1), pred, first.reshape(-1, *head.feature_shape), masks)


def feature_tracking(model: nn.Module, x: torch.Tensor, head: DenseHead, pixel_mask: torch.Tensor):
    """Algorithm 2: deconvnet of the feature maps M and of M' (backtracked pixels zeroed)."""
    from fer_analysis.registry import EXPLAINERS

    with torch.no_grad(), capture({head.feature_name: head.feature_module}) as acts:
        LogitsOnly(model).eval()(x)
    m = acts[head.feature_name]
    m_sup = m * (~pixel_mask).to(m.dtype)
    dec = EXPLAINERS.get("deconvnet")(model)
    dd = dec.signal(x, head.feature_module, m)
    dd_sup = dec.signal(x, head.feature_module, m_sup)
    return dd, dd_sup, dd - dd_sup


def run_backtrack(model, loader, out_dir: Path, *, cases: int = 8, class_names: Sequence[str] | None = None,
                  device: str = "cpu", progress: bool = True) -> dict[str, float]:
    """Paper 003 job on a test loader: up to ``cases`` misclassified images (filled with correctly
    classified ones when there are fewer), Table 3 (CSV + Markdown) and Fig. 11-style PNG."""
    from fer_analysis.plots_explain import backtrack_figure
    from fer_analysis.topn import iter_batches
    from fer_models.labels import class_names as default_names

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    fwd = LogitsOnly(model)
    head = None
    wrong, right = [], []  # (image, label, index)
    with torch.no_grad():
        for x, extras in tqdm(iter_batches(loader, device), desc="backtrack: find cases", disable=not progress):
            if head is None:
                head = find_dense_head(model, x)
            pred = fwd(x).argmax(1).cpu()
            y = torch.as_tensor(extras["label"]).cpu()
            for b in range(x.shape[0]):
                (wrong if pred[b] != y[b] else right).append((x[b].cpu(), int(y[b]), int(extras["index"][b])))
            if len(wrong) >= cases:
                break
    found = (wrong + right)[:cases]
    if not found:
        from fer_models.errors import DatasetError

        raise DatasetError("the test split is empty, so there is nothing to backtrack; check the run's dataset")
    x = torch.stack([c[0] for c in found]).to(device)
    labels = [c[1] for c in found]
    bt = backtrack(model, x, head)
    k = bt.probs_before.shape[1]
    names = list(class_names or default_names(k))
    if len(names) < k:
        names += [str(i) for i in range(len(names), k)]
    try:
        dd, dd_sup, diff = feature_tracking(model, x, head, bt.pixel_mask)
    except NotApplicableError:  # no nn.ReLU (e.g. ELU nets): the deconvnet does not apply
        dd = dd_sup = diff = None
    pred_after = bt.probs_after.argmax(1)
    rows = []
    for i, (_, y, idx) in enumerate(found):
        p = int(bt.pred[i])
        rows.append({
            "case": i + 1, "image_index": idx, "true": names[y], "pred_before": names[p],
            "pred_after": names[int(pred_after[i])], "misclassified": p != y,
            "kept_pixels": int(bt.pixel_mask[i].sum()), "total_pixels": int(bt.pixel_mask[i].numel()),
            **{f"before_{c}": float(bt.probs_before[i, j]) for j, c in enumerate(names)},
            **{f"after_{c}": float(bt.probs_after[i, j]) for j, c in enumerate(names)},
        })
    with open(out_dir / "suppression.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = ["| Case | | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for r in rows:
        tag = f"{r['case']} (true {r['true']})"
        md.append(f"| {tag} | before | " + " | ".join(f"{r['before_' + c]:.2e}" for c in names) + " |")
        md.append("| | after | " + " | ".join(f"{r['after_' + c]:.2e}" for c in names) + " |")
    (out_dir / "suppression.md").write_text("\n".join(md) + "\n")
    figs = []
    for i in range(len(found)):
        figs.append({
            "image": x[i].cpu(), "label": labels[i], "pred": int(bt.pred[i]),
            "deconv": (dd if dd is not None else torch.zeros_like(x))[i].cpu(),
            "deconv_suppressed": (dd_sup if dd_sup is not None else torch.zeros_like(x))[i].cpu(),
            "difference": (diff if diff is not None else torch.zeros_like(x))[i].cpu(),
            "before": bt.probs_before[i].cpu().numpy(), "after": bt.probs_after[i].cpu().numpy(),
        })
    backtrack_figure(figs, out_dir / "backtrack.png", names)
    idx = torch.arange(len(found))
    p_before = bt.probs_before[idx, bt.pred]
    p_after = bt.probs_after[idx, bt.pred]
    mis = torch.tensor([r["misclassified"] for r in rows])
    fixed = torch.tensor([names.index(r["pred_after"]) == labels[i] for i, r in enumerate(rows)])
    return {
        "backtrack_cases": float(len(found)),
        "backtrack_misclassified": float(mis.sum()),
        "backtrack_pred_prob_before": float(p_before.mean()),
        "backtrack_pred_prob_after": float(p_after.mean()),
        "backtrack_changed_fraction": float((pred_after != bt.pred).float().mean()),
        "backtrack_fixed_fraction": float(fixed[mis].float().mean()) if mis.any() else 0.0,
        "backtrack_kept_pixel_fraction": float(bt.pixel_mask.float().mean()),
    }
