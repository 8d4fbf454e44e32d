"""Paper 003's suppression test (Table 3, Figs. 9-11) and the ``backtrack`` job's run.

The paper pairs each misclassified image A with a visually similar, correctly classified image
B (:mod:`fer_analysis.backtrack_pairs`) and compares the backtracked pixel sets L_A and L_B
(positions in the maps feeding the first dense layer, :mod:`fer_analysis.backtrack`):

- *expression network* (Fig. 11, Table 3): the pixels **unique to A** (L_A \\ L_B) are
  zeroed in A; "once their values are suppressed, the classifications become correct";
- *identity network* (Figs. 9-10): the **common pixels** (L_A & L_B; 547 of 623 / 693 in the
  paper) are zeroed in both images; the confidence of both drops to near zero.

As a control, as many random *active* pixels of A are zeroed instead (:func:`random_pixels`).
:func:`run_backtrack` reads as the paper does: scan the test split, find the dense head and
check that backtracking says something on it, pair, suppress, then write Table 3
(``suppression.csv``, ``suppression.md``) and the Fig. 11-style figure (``backtrack.png``).
Without a single pair it draws Alg. 1-2 on a few images and writes no table.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import torch

from fer_analysis.backtrack import (Backtracked, DenseHead, backtrack, check_applicable, feature_tracking,
                                    find_dense_head, suppress)
from fer_analysis.backtrack_pairs import Scan, pair_cases, scan_images, scan_split
from fer_analysis.hooks import LogitsOnly, NotApplicableError, capture
from fer_analysis.run_labels import class_names_for
from fer_models.errors import DatasetError


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


def _probs_md(rows: list[dict], names: Sequence[str], who: str) -> list[str]:
    md = ["| Case | | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for r in rows:
        md.append(f"| {r['case']} (true {r['true']}) | before | "
                  + " | ".join(f"{r[f'{who}before_{c}']:.2e}" for c in names) + " |")
        md.append("| | after | " + " | ".join(f"{r[f'{who}after_{c}']:.2e}" for c in names) + " |")
    return md


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
    from fer_analysis.plots_explain import backtrack_figure  # matplotlib: loaded only to draw

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
