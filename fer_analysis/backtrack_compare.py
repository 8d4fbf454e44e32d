"""Paper 003's comparison of its two networks (Fig. 7: 811 kept pixels for faces, 188 for
emotions): ``backtrack --compare-run`` on an expression run and an identity run.

**Each network on its own misclassifications.** The paper backtracks each network's own
misclassified test images. :func:`own_misclassified` does that for each run on *its own* test
split (the expression run's per-class split, the identity run's per-identity split): how many
test images it misclassifies and how many feature-map pixels backtracking keeps on them. These
are the counts that stand for Fig. 7.

**The same images through both networks.** :func:`compare_backtracking` also backtracks the
explained run's test images through both networks and compares the kept pixel sets (the
pixels both keep, where both read maps of one shape; each network's confidence with the
common and with its own unique pixels zeroed). Paper 003's two random splits are drawn
independently, so about half of one run's test images are training or validation images of
the other; such an image says nothing about the other network's generalisation. The caller
passes those rows (``exclude``, found by file path in the two caches); they are left out of
this part and counted in ``compare.md`` (``backtrack_compare_overlap_*``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from fer_analysis.backtrack import DenseHead, backtrack, check_applicable, find_dense_head, suppress
from fer_analysis.backtrack_pairs import scan_images, scan_split
from fer_analysis.hooks import LogitsOnly, NotApplicableError, capture
from fer_analysis.run_labels import class_labels
from fer_analysis.topn import iter_batches
from fer_models.errors import DatasetError


@torch.no_grad()
def own_misclassified(model: nn.Module, loader, *, target: str, images: int = 256, device: str = "cpu",
                      chunk: int = 64) -> dict[str, float]:
    """Backtrack the test images ``model`` misclassifies in its own ``loader`` (up to ``images``
    of them): their count and the mean number of kept feature-map pixels (Fig. 7)."""
    scan = scan_split(model, loader, target=target, device=device, keep_images=not hasattr(loader, "dataset"))
    known = scan.labels >= 0
    wrong = torch.nonzero(known & (scan.preds != scan.labels)).flatten().tolist()
    first = scan_images(loader, scan, range(min(len(scan), 16)), device)
    head = find_dense_head(model, first)
    kept: list[torch.Tensor] = []
    for s in range(0, min(len(wrong), images), chunk):
        x = scan_images(loader, scan, wrong[s: min(s + chunk, images)], device)
        kept.append(backtrack(model, x, head).pixel_mask.flatten(1).sum(1).float().cpu())
    k = torch.cat(kept) if kept else torch.zeros(0)
    return {"test": float(int(known.sum())), "misclassified": float(len(wrong)), "backtracked": float(len(k)),
            "kept": float(k.mean()) if len(k) else float("nan"), "total": float(torch.Size(head.feature_shape).numel())}


def _own_lines(own_a: dict[str, float], own_b: dict[str, float], targets: tuple[str, str]) -> list[str]:
    return [
        "Each network on its own test split's misclassified images (paper 003, Fig. 7: 811 kept pixels for "
        "faces, 188 for emotions):", "",
        "| | run a (explained) | run b (--compare-run) |", "|---|---|---|",
        f"| target | {targets[0]} | {targets[1]} |",
        f"| misclassified / test images | {own_a['misclassified']:.0f} / {own_a['test']:.0f} | "
        f"{own_b['misclassified']:.0f} / {own_b['test']:.0f} |",
        f"| kept pixels (mean over {own_a['backtracked']:.0f} / {own_b['backtracked']:.0f} backtracked) | "
        f"{own_a['kept']:.1f} of {own_a['total']:.0f} | {own_b['kept']:.1f} of {own_b['total']:.0f} |", ""]


@torch.no_grad()
def compare_backtracking(model_a: nn.Module, model_b: nn.Module, loader, out_dir: Path, *,
                         target_a: str = "expression", target_b: str = "identity", images: int = 256,
                         shown: int = 6, device: str = "cpu", progress: bool = False, loader_b=None,
                         exclude: set[int] | frozenset = frozenset(), overlap: dict[str, int] | None = None
                         ) -> dict[str, float]:
    """Paper 003's two networks (module docstring). First each network on its own test split's
    misclassified images (``loader`` for a, ``loader_b`` for b; without it b is scored on a's
    split and ``compare.md`` says so); then ``loader``'s images but the rows in ``exclude`` (a's
    test images that b trained or validated on) through both: kept pixel counts, the pixels
    both keep (where both read maps of one shape), and each network's confidence in its
    prediction with the common pixels zeroed and with its own unique pixels zeroed.
    ``overlap`` (counts of shared images) is reported. Writes ``compare.csv`` (one row per
    shared image), ``compare.md`` and ``compare.png`` (Fig. 7 style)."""
    from fer_analysis.plots_explain import backtrack_compare_figure  # matplotlib: loaded only to draw

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models, targets = (model_a.eval(), model_b.eval()), (target_a, target_b)
    own_a = own_misclassified(models[0], loader, target=target_a, images=images, device=device)
    own_b = own_misclassified(models[1], loader_b if loader_b is not None else loader, target=target_b,
                              images=images, device=device)
    heads: list[DenseHead] = []
    rows: list[dict] = []
    fig: dict[str, list[torch.Tensor]] = {k: [] for k in ("x", "ma", "mb", "ka", "kb")}
    for n, (x, ex) in enumerate(_shared_batches(loader, exclude, images, device, progress)):
        if not heads:
            heads = [find_dense_head(models[0], x), find_dense_head(models[1], x)]
        got, la, lb = _backtrack_both(models, heads, x, ex, targets, check=n == 0)
        rows += got
        if len(fig["x"]) < shown:
            ma, mb = _feature_maps(models, heads, x[:shown])
            for k, v in zip(fig, (x[:shown].cpu(), ma, mb, la[:shown].cpu(), lb[:shown].cpu())):
                fig[k].append(v)
    if not rows:
        why = (f"all its {len(exclude)} test images are training or validation images of the --compare-run run"
               if exclude else "the test split is empty")
        raise DatasetError(f"{why}, so there is nothing to backtrack through both runs; check the runs' datasets")
    with open(out_dir / "compare.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    same_shape = heads[0].feature_shape == heads[1].feature_shape
    m = _compare_metrics(rows, own_a, own_b, overlap, same_shape)
    lines = _compare_lines(m, rows, own_a, own_b, targets, heads, scored_on_a=loader_b is None, overlap=overlap)
    (out_dir / "compare.md").write_text("\n".join(lines) + "\n")
    cat = {k: torch.cat(v)[:shown] for k, v in fig.items()}
    backtrack_compare_figure(cat["x"], cat["ma"], cat["mb"], cat["ka"], cat["kb"], targets, out_dir / "compare.png")
    return m


def _shared_batches(loader, exclude, images: int, device: str, progress: bool) -> Iterator[tuple[torch.Tensor, dict]]:
    """``loader``'s batches without the rows in ``exclude``, until ``images`` images are through."""
    seen = 0
    for x, extras in tqdm(iter_batches(loader, device), desc="backtrack: compare", disable=not progress):
        take = min(x.shape[0], images - seen)
        if take <= 0:
            break
        keep = torch.tensor([int(i) not in exclude for i in torch.as_tensor(extras["index"]).reshape(-1)[:take]])
        if not keep.any():
            continue
        x = x[:take][keep.to(x.device)]
        yield x, {k: (v[:take][keep.to(v.device)] if torch.is_tensor(v) else v) for k, v in extras.items()}
        seen += x.shape[0]


def _backtrack_both(models, heads: list[DenseHead], x: torch.Tensor, ex: dict, targets: tuple[str, str], *,
                    check: bool) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """One batch of shared images through both networks: one row per image (each network right
    or wrong, its kept pixels, the pixels both keep, its confidence with the common and with its
    own unique pixels zeroed) and the two kept-pixel masks. ``check``: first make sure
    backtracking says something on both heads (:func:`check_applicable`)."""
    (model_a, model_b), (ha, hb) = models, heads
    bta, btb = backtrack(model_a, x, ha), backtrack(model_b, x, hb)
    if check:
        for name, bt, h in (("the explained run", bta, ha), ("the --compare-run run", btb, hb)):
            try:
                check_applicable(bt, h)
            except NotApplicableError as e:
                raise NotApplicableError(f"{name}: {e}") from None
    la, lb = bta.pixel_mask, btb.pixel_mask
    ya, yb = class_labels(ex, targets[0]), class_labels(ex, targets[1])
    idx = torch.arange(x.shape[0])
    same_shape = ha.feature_shape == hb.feature_shape
    rec = {"a_pred_prob": bta.probs_before[idx, bta.pred].cpu(), "b_pred_prob": btb.probs_before[idx, btb.pred].cpu()}
    if same_shape:
        common = la & lb
        rec["a_after_common"] = suppress(model_a, x, ha, common)[idx, bta.pred].cpu()
        rec["b_after_common"] = suppress(model_b, x, hb, common)[idx, btb.pred].cpu()
        rec["a_after_unique"] = suppress(model_a, x, ha, la & ~lb)[idx, bta.pred].cpu()
        rec["b_after_unique"] = suppress(model_b, x, hb, lb & ~la)[idx, btb.pred].cpu()
    rows = []
    for i in range(x.shape[0]):
        r = {"image_index": int(torch.as_tensor(ex["index"]).reshape(-1)[i]),
             "a_correct": bool(bta.pred[i].cpu() == ya[i]), "b_correct": bool(btb.pred[i].cpu() == yb[i]),
             "kept_a": int(la[i].sum()), "kept_b": int(lb[i].sum()),
             "total_a": int(la[i].numel()), "total_b": int(lb[i].numel())}
        if same_shape:
            inter, union = int((la[i] & lb[i]).sum()), int((la[i] | lb[i]).sum())
            r.update(common=inter, jaccard=inter / union if union else float("nan"))
        r.update({k: float(v[i]) for k, v in rec.items()})
        rows.append(r)
    return rows, la, lb


def _feature_maps(models, heads: list[DenseHead], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps each network's first dense layer reads, for the figure."""
    with capture({"a": heads[0].feature_module}) as fa, capture({"b": heads[1].feature_module}) as fb:
        LogitsOnly(models[0])(x)
        LogitsOnly(models[1])(x)
    return fa["a"].cpu(), fb["b"].cpu()


def _compare_metrics(rows: list[dict], own_a: dict[str, float], own_b: dict[str, float],
                     overlap: dict[str, int] | None, same_shape: bool) -> dict[str, float]:
    """The ``backtrack_compare_*`` metrics: the own-split counts, the overlap, and means over
    the shared images (the pixel-set comparison only where both read maps of one shape)."""
    def mean(key: str) -> float:
        vals = [r[key] for r in rows if key in r]
        return float(sum(vals) / len(vals)) if vals else float("nan")

    m = {
        **{f"backtrack_compare_own_{k}_a": v for k, v in own_a.items() if k != "total"},
        **{f"backtrack_compare_own_{k}_b": v for k, v in own_b.items() if k != "total"},
        **{f"backtrack_compare_overlap_{k}": float(v) for k, v in (overlap or {}).items()},
        "backtrack_compare_images": float(len(rows)),
        "backtrack_compare_kept_a": mean("kept_a"), "backtrack_compare_kept_b": mean("kept_b"),
        "backtrack_compare_accuracy_a": mean("a_correct"), "backtrack_compare_accuracy_b": mean("b_correct"),
    }
    if same_shape:
        m.update({
            "backtrack_compare_common": mean("common"), "backtrack_compare_jaccard": mean("jaccard"),
            "backtrack_compare_a_pred_prob": mean("a_pred_prob"), "backtrack_compare_b_pred_prob": mean("b_pred_prob"),
            "backtrack_compare_a_after_common": mean("a_after_common"),
            "backtrack_compare_b_after_common": mean("b_after_common"),
            "backtrack_compare_a_after_unique": mean("a_after_unique"),
            "backtrack_compare_b_after_unique": mean("b_after_unique"),
        })
    return m


def _compare_lines(m: dict[str, float], rows: list[dict], own_a: dict[str, float], own_b: dict[str, float],
                   targets: tuple[str, str], heads: list[DenseHead], *, scored_on_a: bool,
                   overlap: dict[str, int] | None) -> list[str]:
    """``compare.md``: each network on its own split, the overlap of the splits, then the shared images."""
    target_a, target_b = targets
    lines = _own_lines(own_a, own_b, targets)
    if scored_on_a:
        lines += ["Run b was scored on run a's test split (its own split was not given).", ""]
    if overlap:
        lines += [f"Overlap of the two runs' splits: {overlap.get('a_test_in_b_trainval', 0)} of run a's "
                  f"{overlap.get('a_test', 0)} test images are training or validation images of run b, "
                  f"{overlap.get('b_test_in_a_trainval', 0)} of run b's {overlap.get('b_test', 0)} test images are "
                  "run a's; the shared-image comparison below leaves the former out.", ""]
    lines += [f"The same {len(rows)} test images of run a through both runs (none of them seen by run b in "
              "training or validation):", "",
              "| | run a (explained) | run b (--compare-run) |", "|---|---|---|",
              f"| target | {target_a} | {target_b} |",
              f"| accuracy on these images | {m['backtrack_compare_accuracy_a']:.3f} | "
              f"{m['backtrack_compare_accuracy_b']:.3f} |",
              f"| kept pixels (mean) | {m['backtrack_compare_kept_a']:.1f} of {rows[0]['total_a']} | "
              f"{m['backtrack_compare_kept_b']:.1f} of {rows[0]['total_b']} |"]
    if "backtrack_compare_common" in m:
        lines += [
            f"| pixels kept by both (mean; Jaccard) | {m['backtrack_compare_common']:.1f} "
            f"({m['backtrack_compare_jaccard']:.3f}) | |",
            f"| P(prediction) | {m['backtrack_compare_a_pred_prob']:.3f} | {m['backtrack_compare_b_pred_prob']:.3f} |",
            f"| ... with the common pixels zeroed | {m['backtrack_compare_a_after_common']:.3f} | "
            f"{m['backtrack_compare_b_after_common']:.3f} |",
            f"| ... with its own unique pixels zeroed | {m['backtrack_compare_a_after_unique']:.3f} | "
            f"{m['backtrack_compare_b_after_unique']:.3f} |",
        ]
    else:
        lines += ["", f"The two runs read feature maps of different shapes ({tuple(heads[0].feature_shape)} vs "
                  f"{tuple(heads[1].feature_shape)}), so their pixel sets cannot be overlaid; only the counts compare."]
    return lines
