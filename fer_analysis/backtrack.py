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

**Suppression test (Table 3) and common pixels (Figs. 9-10).** The paper pairs each
misclassified image A with a visually similar, correctly classified image B and compares the
backtracked pixel sets L_A and L_B (positions in the maps feeding the first dense layer):

- *expression network* (Fig. 11, Table 3): the pixels **unique to A** (L_A \ L_B) are
  zeroed in A; "once their values are suppressed, the classifications become correct";
- *identity network* (Figs. 9-10): the **common pixels** (L_A & L_B; 547 of 623 / 693 in the
  paper) are zeroed in both images; the confidence of both drops to near zero.

:func:`pair_cases` makes the pairs automatically where the paper picked them by eye: B is a
correctly classified image of the **same subject and the same expression** as A (the paper's
identity pair differs only in gaze; its expression pairs are "visually similar"), the nearest
to A in input pixels (L2) among those; without identities (-1) the same expression and the
nearest image. Where no image shares all the keys (the synthetic faces have one or two test
images per subject and expression) the nearest correctly classified image of A's class is
taken, same-subject-other-expression on an identity run, other-subject on an expression run.
The ``pair_basis`` column says which rule made each pair and ``backtrack_pairs_exact`` counts
the pairs on all keys; misclassified images without a partner are counted, not shown.

**Not applicable: heads that keep almost everything.** The test a·W > 0 assumes a >= 0 (ReLU):
then an input is kept only where it is active, and the kept set is the active feature-map
pixels that push the decision. Where the dense inputs take both signs (the paper-004 CNN:
ELU + batch norm), some kept neuron above agrees in sign with almost every input, so
backtracking keeps nearly all of them and zeroing "the backtracked pixels" zeroes the whole
map. When the first dense layer's inputs take negative values and more than ``MAX_KEPT`` =
90 % of them are kept (measured on the first test images), the job raises
:class:`NotApplicableError` with both numbers instead of printing a meaningless Table 3.

**Two runs (paper 003's comparison of its two networks)**: :mod:`fer_analysis.backtrack_compare`.

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
    from fer_analysis.registry import EXPLAINERS

    with torch.no_grad(), capture({head.feature_name: head.feature_module}) as acts:
        LogitsOnly(model).eval()(x)
    m = acts[head.feature_name]
    m_sup = m * (~pixel_mask.to(m.device)).to(m.dtype)
    dec = EXPLAINERS.get("deconvnet")(model)
    dd = dec.signal(x, head.feature_module, m)
    dd_sup = dec.signal(x, head.feature_module, m_sup)
    return dd, dd_sup, dd - dd_sup


# ----------------------------------------------------------------------------- pairs
@dataclass
class Pair:
    a: int  # position of the misclassified image in the scanned rows
    b: int  # its correctly classified partner
    basis: str  # "subject+expression", "expression" (identities unknown) or "class only" (fallback)
    distance: float  # L2 between the two (down-sampled) inputs


def pair_cases(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, subjects: torch.Tensor,
               expressions: torch.Tensor, *, fallback: bool = True) -> tuple[list[Pair], list[int]]:
    """Pair every misclassified row (``preds != labels``) with the nearest correctly classified
    row (L2 over ``images`` flattened) of the same class, the same subject and the same
    expression, each where known (>= 0). With ``fallback``, a row without such a partner takes
    the nearest correctly classified row of its class (basis ``"class only"``). Returns (pairs,
    misclassified rows without a partner). See the module docstring for why these keys."""
    labels, preds = labels.long(), preds.long()
    subjects, expressions = subjects.long(), expressions.long()
    known = labels >= 0  # an identity run's rows of unknown identity have no class
    wrong = torch.nonzero(known & (preds != labels)).flatten()
    right = torch.nonzero(known & (preds == labels)).flatten()
    if len(wrong) == 0:
        return [], []
    if len(right) == 0:
        return [], wrong.tolist()
    flat = images.reshape(len(images), -1).float()
    dist = torch.cdist(flat[wrong], flat[right])  # (W, R)
    same_class = labels[wrong][:, None] == labels[right][None, :]
    strict = same_class.clone()
    for key in (subjects, expressions):
        kw, kr = key[wrong][:, None], key[right][None, :]
        strict &= (kw < 0) | (kw == kr)
    inf = torch.full_like(dist, float("inf"))
    best_strict, j_strict = torch.where(strict, dist, inf).min(1)
    best_class, j_class = torch.where(same_class, dist, inf).min(1)
    pairs, lonely = [], []
    for i, w in enumerate(wrong.tolist()):
        if best_strict[i] < float("inf"):
            basis = "subject+expression" if subjects[w] >= 0 else "expression"
            pairs.append(Pair(w, int(right[j_strict[i]]), basis, float(best_strict[i])))
        elif fallback and best_class[i] < float("inf"):
            pairs.append(Pair(w, int(right[j_class[i]]), "class only", float(best_class[i])))
        else:
            lonely.append(w)
    return pairs, lonely


@dataclass
class Scan:
    """One pass over a split: per row the class, prediction, subject, expression, dataset index
    and a small copy of the image (for pairing), plus the images themselves when the loader
    offers no dataset to fetch them from again."""

    labels: torch.Tensor
    preds: torch.Tensor
    subjects: torch.Tensor
    expressions: torch.Tensor
    index: torch.Tensor
    small: torch.Tensor
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@torch.no_grad()
def scan_split(model: nn.Module, loader, *, target: str = "expression", max_images: int | None = None,
               device: str = "cpu", progress: bool = False, small_size: int = 32,
               keep_images: bool = False) -> Scan:
    """Predict every image of ``loader`` (up to ``max_images``) and keep what pairing needs."""
    import torch.nn.functional as F

    from fer_analysis.targets import class_labels, expression_labels, subject_labels
    from fer_analysis.topn import iter_batches

    fwd = LogitsOnly(model).eval()
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("labels", "preds", "subjects", "expressions", "index",
                                                         "small", "images")}
    seen = 0
    for x, extras in tqdm(iter_batches(loader, device), desc="backtrack: predict", disable=not progress):
        take = x.shape[0] if max_images is None else min(x.shape[0], max_images - seen)
        if take <= 0:
            break
        x = x[:take]
        ex = {k: (v[:take] if torch.is_tensor(v) or isinstance(v, (list, tuple)) else v) for k, v in extras.items()}
        cols["labels"].append(class_labels(ex, target))
        cols["preds"].append(fwd(x).argmax(1).cpu())
        cols["subjects"].append(subject_labels(ex))
        cols["expressions"].append(expression_labels(ex, target))
        cols["index"].append(torch.as_tensor(ex["index"]).reshape(-1).cpu().long())
        s = min(small_size, x.shape[-1])
        cols["small"].append(F.adaptive_avg_pool2d(x.float(), s).cpu())
        if keep_images:
            cols["images"].append(x.cpu())
        seen += take
    if seen == 0:
        from fer_models.errors import DatasetError

        raise DatasetError("the test split is empty, so there is nothing to backtrack; check the run's dataset")
    cat = {k: torch.cat(v) if v else None for k, v in cols.items()}
    return Scan(cat["labels"], cat["preds"], cat["subjects"], cat["expressions"], cat["index"], cat["small"],
                cat["images"])


def scan_images(loader, scan: Scan, rows: Sequence[int], device: str = "cpu") -> torch.Tensor:
    """The full-size images of the scanned ``rows`` (from the loader's dataset, or kept)."""
    from fer_analysis.topn import fetch_images

    if scan.images is not None:
        return scan.images[list(rows)].to(device)
    return fetch_images(loader.dataset, scan.index[list(rows)].tolist()).to(device).float()


# ----------------------------------------------------------------------------- the job
def _probs_md(rows: list[dict], names: Sequence[str], who: str) -> list[str]:
    md = ["| Case | | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for r in rows:
        md.append(f"| {r['case']} (true {r['true']}) | before | "
                  + " | ".join(f"{r[f'{who}before_{c}']:.2e}" for c in names) + " |")
        md.append("| | after | " + " | ".join(f"{r[f'{who}after_{c}']:.2e}" for c in names) + " |")
    return md


def random_pixels(zero: torch.Tensor, active: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The size-matched random control of the suppression test: per sample as many pixels as
    ``zero`` holds, drawn uniformly (seeded) among the ``active`` (non-zero) pixels of the map,
    all of them where fewer are active. Zeroing an inactive pixel changes nothing, so drawing
    among all positions would make the control weaker than the test."""
    b = zero.shape[0]
    z, act = zero.reshape(b, -1).cpu(), active.reshape(b, -1).cpu()
    score = torch.rand(z.shape, generator=generator) + (~act).float() * 2  # active pixels rank first
    rank = score.argsort(1).argsort(1)
    n = torch.minimum(z.sum(1), act.sum(1))
    return (rank < n[:, None]).reshape(zero.shape)


def _suppress_pairs(model, loader, scan: Scan, head: DenseHead, pairs: list, mode: str, device: str,
                    seed: int = 0, chunk: int = 64) -> dict[str, torch.Tensor]:
    """The suppression test on every pair, ``chunk`` pairs at a time: the backtracked sets of A
    and B, the zeroed set (unique to A, or common), the probabilities before and after, and
    after zeroing as many random active pixels instead (the control)."""
    gen = torch.Generator().manual_seed(int(seed))
    cols: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(pairs), chunk):
        part = pairs[s: s + chunk]
        xa = scan_images(loader, scan, [p.a for p in part], device)
        xb = scan_images(loader, scan, [p.b for p in part], device)
        bta, btb = backtrack(model, xa, head), backtrack(model, xb, head)
        la, lb = bta.pixel_mask, btb.pixel_mask
        zero = (la & lb) if mode == "common" else (la & ~lb)
        with capture({"f": head.feature_module}) as fa:
            LogitsOnly(model)(xa)
        rand = random_pixels(zero, fa["f"] != 0, gen).to(zero.device)
        got = {"la": la, "lb": lb, "zero": zero, "rand": rand, "pred": bta.pred, "before_a": bta.probs_before,
               "before_b": btb.probs_before, "after_a": suppress(model, xa, head, zero),
               "rand_a": suppress(model, xa, head, rand)}
        if mode == "common":  # the same pixels zeroed in B too
            with capture({"f": head.feature_module}) as fb:
                LogitsOnly(model)(xb)
            rand_b = random_pixels(zero, fb["f"] != 0, gen).to(zero.device)
            got.update(after_b=suppress(model, xb, head, zero), rand_b=suppress(model, xb, head, rand_b))
        else:
            got.update(after_b=btb.probs_before, rand_b=btb.probs_before)
        for k, v in got.items():
            cols.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in cols.items()}


def run_backtrack(model, loader, out_dir: Path, *, cases: int = 8, class_names: Sequence[str] | None = None,
                  target: str = "expression", max_images: int | None = 2000, device: str = "cpu",
                  progress: bool = True, seed: int = 0) -> dict[str, float]:
    """Paper 003 job on a test loader: every misclassified image paired with a similar correct
    one, the suppression test of the network's ``target`` on every pair (unique pixels zeroed
    for expression, common pixels for identity; Table 3, CSV + Markdown), its size-matched
    random-pixel control, exact pairs and fallback pairs reported apart, and the Fig. 11-style
    figure for the first ``cases`` pairs. Without a pair, Alg. 1-2 on up to ``cases`` images,
    misclassified first, and no Table 3."""
    from fer_analysis.targets import class_names_for

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    scan = scan_split(model, loader, target=target, max_images=max_images, device=device, progress=progress,
                      keep_images=not hasattr(loader, "dataset"))
    first = scan_images(loader, scan, range(min(len(scan), 16)), device)
    head = find_dense_head(model, first)
    kept_fraction = check_applicable(backtrack(model, first, head), head)
    k = int(LogitsOnly(model).eval()(first[:1]).shape[1])
    names = list(class_names or class_names_for(target, k, loader))
    names += [f"class {i}" for i in range(len(names), k)]
    pairs, lonely = pair_cases(scan.small, scan.labels, scan.preds, scan.subjects, scan.expressions)
    mode = "common" if target == "identity" else "unique"
    base = {
        "backtrack_scanned": float(len(scan)),
        "backtrack_misclassified": float(((scan.preds != scan.labels) & (scan.labels >= 0)).sum()),
        "backtrack_unpaired": float(len(lonely)),
        "backtrack_kept_pixel_fraction": kept_fraction,
    }
    if not pairs:
        return {**base, **_backtrack_unpaired(model, loader, scan, head, names, cases, out_dir, device, len(lonely))}
    r = _suppress_pairs(model, loader, scan, head, pairs, mode, device, seed)
    rows = _suppression_rows(pairs, scan, r, names, mode)
    with open(out_dir / "suppression.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    metrics = {**base, **_suppression_metrics(pairs, scan, r, mode)}
    shown = list(range(min(cases, len(pairs))))
    (out_dir / "suppression.md").write_text(_suppression_md(rows[: len(shown)], pairs, scan, r, names, mode,
                                                            metrics, len(lonely)))
    xa = scan_images(loader, scan, [pairs[i].a for i in shown], device)
    bta = Backtracked(r["before_a"][shown], r["after_a"][shown], r["pred"][shown], r["la"][shown], [])
    _figure(model, xa, head, r["zero"][shown].to(xa.device), bta, r["after_a"][shown],
            [int(scan.labels[pairs[i].a]) for i in shown], names, out_dir / "backtrack.png")
    return metrics


def _suppression_rows(pairs, scan: Scan, r: dict[str, torch.Tensor], names, mode: str) -> list[dict]:
    rows = []
    for i, p in enumerate(pairs):
        y, la, lb = int(scan.labels[p.a]), r["la"][i], r["lb"][i]
        row = {
            "case": i + 1, "image_index": int(scan.index[p.a]), "partner_index": int(scan.index[p.b]),
            "pair_basis": p.basis, "pair_distance": p.distance, "true": names[y],
            "pred_before": names[int(r["pred"][i])], "pred_after": names[int(r["after_a"][i].argmax())],
            "pred_after_random": names[int(r["rand_a"][i].argmax())],
            "zeroed": mode, "kept_a": int(la.sum()), "kept_b": int(lb.sum()),
            "common": int((la & lb).sum()), "unique_a": int((la & ~lb).sum()),
            "zeroed_pixels": int(r["zero"][i].sum()), "random_pixels": int(r["rand"][i].sum()),
            "total_pixels": int(la.numel()),
            **{f"before_{c}": float(r["before_a"][i, j]) for j, c in enumerate(names)},
            **{f"after_{c}": float(r["after_a"][i, j]) for j, c in enumerate(names)},
            **{f"random_after_{c}": float(r["rand_a"][i, j]) for j, c in enumerate(names)},
        }
        if mode == "common":
            row.update({f"b_before_{c}": float(r["before_b"][i, j]) for j, c in enumerate(names)})
            row.update({f"b_after_{c}": float(r["after_b"][i, j]) for j, c in enumerate(names)})
        rows.append(row)
    return rows


def _suppression_metrics(pairs, scan: Scan, r: dict[str, torch.Tensor], mode: str) -> dict[str, float]:
    """Means over every pair, over the exact pairs and the fallback pairs apart (``_exact``,
    ``_fallback``; NaN where there are none), and under the random control (``_random``)."""
    idx = torch.arange(len(pairs))
    y = scan.labels[[p.a for p in pairs]]
    pred = r["pred"]
    exact = torch.tensor([p.basis != "class only" for p in pairs])

    def mean(v: torch.Tensor, sel=None) -> float:
        v = v.float() if sel is None else v[sel].float()
        return float(v.mean()) if len(v) else float("nan")

    fixed, fixed_rand = r["after_a"].argmax(1) == y, r["rand_a"].argmax(1) == y
    m = {
        "backtrack_cases": float(len(pairs)),
        "backtrack_pairs_exact": float(exact.sum()),
        "backtrack_pairs_fallback": float((~exact).sum()),
        "backtrack_kept_pixels_a": mean(r["la"].flatten(1).sum(1)),
        "backtrack_kept_pixels_b": mean(r["lb"].flatten(1).sum(1)),
        "backtrack_common_pixels": mean((r["la"] & r["lb"]).flatten(1).sum(1)),
        "backtrack_zeroed_pixels": mean(r["zero"].flatten(1).sum(1)),
        "backtrack_random_pixels": mean(r["rand"].flatten(1).sum(1)),
        "backtrack_pred_prob_before": mean(r["before_a"][idx, pred]),
        "backtrack_true_prob_before": mean(r["before_a"][idx, y]),
    }
    for tag, sel in (("", None), ("_exact", exact), ("_fallback", ~exact)):
        m[f"backtrack_pred_prob_after{tag}"] = mean(r["after_a"][idx, pred], sel)
        m[f"backtrack_true_prob_after{tag}"] = mean(r["after_a"][idx, y], sel)
        m[f"backtrack_fixed_fraction{tag}"] = mean(fixed, sel)
        m[f"backtrack_fixed_fraction_random{tag}"] = mean(fixed_rand, sel)
    m["backtrack_pred_prob_after_random"] = mean(r["rand_a"][idx, pred])
    m["backtrack_true_prob_after_random"] = mean(r["rand_a"][idx, y])
    if mode == "common":
        m["backtrack_partner_prob_before"] = mean(r["before_b"][idx, y])
        m["backtrack_partner_prob_after"] = mean(r["after_b"][idx, y])
        m["backtrack_partner_prob_after_random"] = mean(r["rand_b"][idx, y])
    return m


def _suppression_md(rows, pairs, scan: Scan, r, names, mode: str, m: dict[str, float], lonely: int) -> str:
    what = ("the pixels unique to the misclassified image (backtracked in A, not in its correctly classified "
            "partner B) zeroed in A (paper 003, Table 3)" if mode == "unique" else
            "the pixels common to the misclassified image A and its correctly classified partner B zeroed in "
            "both (paper 003, Figs. 9-10)")
    n, exact = len(pairs), int(m["backtrack_pairs_exact"])
    md = [f"Suppression test on every misclassified test image with a partner ({n}): {what}. Pairs: same class, "
          f"same subject and same expression where known, nearest image ({exact} exact pairs; {n - exact} "
          f"fallback pairs: the nearest correct image of the class, another subject or expression); {lonely} "
          "misclassified image(s) had no partner. Control: as many random active pixels of A zeroed instead.", "",
          "| pairs | n | fixed (true class after zeroing) | P(pred) before / after | P(true) after | "
          "fixed, random control | P(true) after, random control |", "|---|---|---|---|---|---|---|"]
    for tag, label, count in (("", "all", n), ("_exact", "exact", exact), ("_fallback", "fallback", n - exact)):
        md.append(f"| {label} | {count} | {m[f'backtrack_fixed_fraction{tag}']:.3f} | "
                  f"{m['backtrack_pred_prob_before']:.3f} / {m[f'backtrack_pred_prob_after{tag}']:.3f} | "
                  f"{m[f'backtrack_true_prob_after{tag}']:.3f} | {m[f'backtrack_fixed_fraction_random{tag}']:.3f} | "
                  + (f"{m['backtrack_true_prob_after_random']:.3f} |" if not tag else "|"))
    md += ["", f"The first {len(rows)} pairs:", ""]
    if len(names) <= 10:
        md += ["A (misclassified):", ""] + _probs_md(rows, names, "")
        if mode == "common":
            md += ["", "B (its correctly classified partner):", ""] + _probs_md(rows, names, "b_")
    else:  # many classes (identities): the classes that matter
        md += ["| Case | basis | true | pred | P_A(pred) before / after | P_A(true) before / after | "
               "P_B(true) before / after | kept A / B / common |", "|---|---|---|---|---|---|---|---|"]
        for i, row in enumerate(rows):
            y, pa = int(scan.labels[pairs[i].a]), int(r["pred"][i])
            md.append(f"| {row['case']} | {row['pair_basis']} | {row['true']} | {row['pred_before']} | "
                      f"{r['before_a'][i, pa]:.2e} / {r['after_a'][i, pa]:.2e} | {r['before_a'][i, y]:.2e} / "
                      f"{r['after_a'][i, y]:.2e} | {r['before_b'][i, y]:.2e} / {r['after_b'][i, y]:.2e} | "
                      f"{row['kept_a']} / {row['kept_b']} / {row['common']} |")
    return "\n".join(md) + "\n"


def _figure(model, x, head, zero, bt, after, labels, names, path) -> None:
    from fer_analysis.plots_explain import backtrack_figure

    try:
        dd, dd_sup, diff = feature_tracking(model, x, head, zero)
    except NotApplicableError:  # no nn.ReLU (e.g. ELU nets): the deconvnet does not apply
        dd = dd_sup = diff = torch.zeros_like(x)
    figs = [{"image": x[i].cpu(), "label": labels[i], "pred": int(bt.pred[i]), "deconv": dd[i].cpu(),
             "deconv_suppressed": dd_sup[i].cpu(), "difference": diff[i].cpu(),
             "before": bt.probs_before[i].cpu().numpy(), "after": after[i].cpu().numpy()} for i in range(len(x))]
    backtrack_figure(figs, path, names)


def _backtrack_unpaired(model, loader, scan: Scan, head: DenseHead, names, cases: int, out_dir: Path,
                        device: str, lonely: int) -> dict[str, float]:
    """No pair to test: Alg. 1-2 (all backtracked pixels) on up to ``cases`` images, misclassified first."""
    known = scan.labels >= 0
    wrong = torch.nonzero(known & (scan.preds != scan.labels)).flatten().tolist()
    right = torch.nonzero(known & (scan.preds == scan.labels)).flatten().tolist()
    rows = (wrong + right)[:cases]
    if not rows:
        from fer_models.errors import DatasetError

        raise DatasetError("no test image has a known class for this run (identity runs need the identity column)")
    x = scan_images(loader, scan, rows, device)
    bt = backtrack(model, x, head)
    _figure(model, x, head, bt.pixel_mask, bt, bt.probs_after, [int(scan.labels[r]) for r in rows], names,
            out_dir / "backtrack.png")
    (out_dir / "suppression.md").write_text(
        f"No suppression test: none of the {len(wrong)} misclassified test image(s) has a correctly classified "
        f"partner of its class ({lonely} without one). backtrack.png shows Alg. 1-2 with all backtracked pixels "
        "zeroed.\n")
    return {"backtrack_cases": 0.0, "backtrack_kept_pixels_a": float(bt.pixel_mask.flatten(1).sum(1).float().mean())}
