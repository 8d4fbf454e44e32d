"""Which action unit does each filter respond to? (paper 001, Sec. 4.4, Table 4, Fig. 5).

For filter i of a layer and AU j, paper 001 builds a histogram of the filter's *maximum*
activation over the samples showing AU j (Q_ij) and over the samples without it (R_ij) and
computes D_KL(Q_ij || R_ij); the AU with the largest divergence is the filter's AU.

Choices the paper leaves open, made as the community would:

- **Direction**: D_KL(Q || R) = sum_b Q_b log(Q_b / R_b), with Q = "AU present", as in the
  paper's step (iv). It asks how poorly the AU-absent distribution explains the activations
  seen when the AU is present, and weights each bin by how often the AU-present samples fall
  in it: a filter that fires for AU j (Q piled up at values R rarely reaches) scores high,
  while R's spread over bins Q never visits costs little. It is asymmetric by design; a
  filter that is *silenced* by an AU also scores, so the table reports both means.
- **Bins**: shared per filter (the same edges for Q and R, spanning that filter's observed
  range over all samples), ``bins=20`` by default.
- **Smoothing**: ``eps`` added to every bin count before normalising, so empty R-bins do
  not give infinite divergences (Laplace-style; the value is reported with the table).
- **Presence**: intensity > ``threshold`` (CK+/DISFA codes or the synthetic faces' ground
  truth); NaN intensities (unknown) leave a sample out for that AU; AUs with fewer than
  ``min_count`` present or absent samples get NaN (no divergence can be trusted there).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

# FACS names (Ekman & Friesen) of the AUs the codebooks use.
AU_NAMES = {
    1: "Inner Brow Raiser", 2: "Outer Brow Raiser", 4: "Brow Lowerer", 5: "Upper Lid Raiser",
    6: "Cheek Raiser", 7: "Lid Tightener", 9: "Nose Wrinkler", 10: "Upper Lip Raiser",
    11: "Nasolabial Deepener", 12: "Lip Corner Puller", 14: "Dimpler", 15: "Lip Corner Depressor",
    16: "Lower Lip Depressor", 17: "Chin Raiser", 18: "Lip Pucker", 20: "Lip Stretcher",
    22: "Lip Funneler", 23: "Lip Tightener", 24: "Lip Pressor", 25: "Lips Part",
    26: "Jaw Drop", 27: "Mouth Stretch", 28: "Lip Suck", 43: "Eyes Closed", 45: "Blink",
}


def au_label(au: int) -> str:
    return f"AU{au}: {AU_NAMES[au]}" if au in AU_NAMES else f"AU{au}"


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_KL(p || q) over the last axis of two (already normalised, positive) histograms."""
    return (p * (p.log() - q.log())).sum(dim=-1)


def histograms(values: torch.Tensor, groups: torch.Tensor, bins: int = 20) -> torch.Tensor:
    """Counts of ``values`` (M, C) in ``bins`` shared bins per column, for each group mask
    ``groups`` (M, G): returns (C, G, bins). Edges span each column's min..max."""
    v = values.double()
    lo, hi = v.min(dim=0).values, v.max(dim=0).values
    width = (hi - lo).clamp_min(1e-12)
    b = ((v - lo) / width * bins).floor().clamp(0, bins - 1).long()  # (M, C); max -> last bin
    onehot = torch.nn.functional.one_hot(b, bins).double()  # (M, C, B)
    return torch.einsum("mcb,mg->cgb", onehot, groups.double())


@dataclass
class FilterAU:
    kl: torch.Tensor  # (C, A) D_KL(Q || R); NaN where an AU has too few samples
    n_present: torch.Tensor  # (A,)
    n_absent: torch.Tensor  # (A,)
    mean_with: torch.Tensor  # (C, A) mean max-activation with the AU
    mean_without: torch.Tensor  # (C, A)
    au_ids: list[int]


def filter_au_kl(values: torch.Tensor, aus: torch.Tensor, au_ids: Sequence[int], *, threshold: float = 0.0,
                 bins: int = 20, eps: float = 1e-3, min_count: int = 5) -> FilterAU:
    """D_KL(Q_ij || R_ij) for every filter i (columns of ``values``) and AU j (columns of ``aus``)."""
    values = values.double()
    aus = aus.double()
    known = ~torch.isnan(aus)
    present = known & (aus > threshold)
    absent = known & ~(aus > threshold)
    groups = torch.cat([present, absent], dim=1)  # (M, 2A)
    h = histograms(values, groups, bins) + eps  # (C, 2A, B)
    h = h / h.sum(dim=-1, keepdim=True)
    a = aus.shape[1]
    q, r = h[:, :a], h[:, a:]
    kl = kl_divergence(q, r)
    n_p, n_a = present.sum(0), absent.sum(0)
    bad = (n_p < min_count) | (n_a < min_count)
    kl[:, bad] = float("nan")
    pw, aw = present.double(), absent.double()
    mean_with = values.T @ pw / n_p.clamp_min(1)
    mean_without = values.T @ aw / n_a.clamp_min(1)
    return FilterAU(kl.float(), n_p, n_a, mean_with.float(), mean_without.float(), list(au_ids))


def top_au(res: FilterAU) -> tuple[torch.Tensor, torch.Tensor]:
    """Per filter: the AU column with the largest divergence and that divergence (NaN-safe)."""
    kl = torch.nan_to_num(res.kl, nan=-1.0)
    best, j = kl.max(dim=1)
    best = torch.where(best < 0, torch.full_like(best, float("nan")), best)
    return j, best


def most_selective_filters(res: FilterAU, k: int = 10) -> list[int]:
    """Filters ranked by their largest divergence over the AUs."""
    _, best = top_au(res)
    return torch.nan_to_num(best, nan=-1.0).argsort(descending=True)[:k].tolist()


def table_rows(res: FilterAU, filters: Sequence[int]) -> list[dict]:
    """Paper 001 Table 4 rows: filter, the AU with the largest D_KL, the runner-up, means."""
    j, best = top_au(res)
    rows = []
    for f in filters:
        order = torch.nan_to_num(res.kl[f], nan=-1.0).argsort(descending=True).tolist()
        a1 = order[0]
        a2 = order[1] if len(order) > 1 else a1
        rows.append({
            "filter": int(f),
            "au": int(res.au_ids[a1]),
            "au_name": au_label(int(res.au_ids[a1])),
            "kl": float(res.kl[f, a1]),
            "second_au": int(res.au_ids[a2]),
            "second_kl": float(res.kl[f, a2]),
            "mean_act_with": float(res.mean_with[f, a1]),
            "mean_act_without": float(res.mean_without[f, a1]),
            "n_with": int(res.n_present[a1]),
        })
    return rows


def write_table(rows: list[dict], csv_path: Path, md_path: Path, layer: str) -> None:
    if not rows:
        return
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"| Filter ({layer}) | FAU with the largest KL divergence | D_KL | runner-up | mean act. with / without "
        "| peak row / col (fraction) |",
        "|---:|---|---:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['filter']} | {r['au_name']} | {r['kl']:.3f} | AU{r['second_au']} ({r['second_kl']:.3f}) "
            f"| {r['mean_act_with']:.3g} / {r['mean_act_without']:.3g} "
            f"| {r.get('peak_row_frac', float('nan')):.2f} / {r.get('peak_col_frac', float('nan')):.2f} |"
        )
    Path(md_path).write_text("\n".join(lines) + "\n")


def write_matrix(res: FilterAU, path: Path) -> None:
    """The full (filter x AU) divergence matrix as CSV."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filter"] + [f"AU{a}" for a in res.au_ids])
        for f in range(res.kl.shape[0]):
            w.writerow([f] + [f"{float(v):.6g}" for v in res.kl[f]])


def run_filter_au(model, loader, out_dir: Path, *, layer: str | None = None, au_ids: Sequence[int] | None = None,
                  k: int = 10, n: int = 8, threshold: float = 0.0, bins: int = 20, eps: float = 1e-3,
                  min_count: int = 5, device: str = "cpu", visualise: bool = True,
                  max_batches: int | None = None, progress: bool = True) -> dict[str, float]:
    """The paper-001 Sec. 4.4 job: KL matrix, Table 4 (CSV + Markdown), Fig. 5 bars and,
    for the same top filters, the top-N patches (so the AU can be checked against them)."""
    from fer_analysis.plots_explain import kl_bars
    from fer_analysis.topn import run_topn, scan_layer, top_n
    from fer_models.errors import DatasetError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    resp = scan_layer(model, loader, layer, device=device, max_batches=max_batches, progress=progress)
    if resp.aus is None or torch.isnan(resp.aus).all():
        raise DatasetError(
            "filter-AU correspondence needs AU labels, but this dataset has none; use the synthetic "
            "faces (ground-truth AUs), CK+ or DISFA"
        )
    if au_ids is None:
        from fer_models.data.au import AU_IDS as au_ids  # type: ignore[no-redef]
    res = filter_au_kl(resp.values, resp.aus, au_ids, threshold=threshold, bins=bins, eps=eps, min_count=min_count)
    filters = most_selective_filters(res, k)
    rows = table_rows(res, filters)
    # where on the (aligned) face each filter peaks in its top-n images: mean row / column of
    # the maximum as a fraction of the map (brows ~0.3, eyes ~0.4, nose ~0.55, mouth ~0.75)
    top = top_n(resp, n, filters)
    fh, fw = resp.feature_hw
    for r, pos in zip(rows, top.position):
        r["peak_row_frac"] = float((pos[:, 0].float() + 0.5).mean() / fh)
        r["peak_col_frac"] = float((pos[:, 1].float() + 0.5).mean() / fw)
    safe = resp.layer.replace(".", "_")
    write_matrix(res, out_dir / f"kl_matrix_{safe}.csv")
    write_table(rows, out_dir / f"filter_au_{safe}.csv", out_dir / f"filter_au_{safe}.md", resp.layer)
    kl_bars(res.kl[filters].numpy(), [f"AU{a}" for a in res.au_ids], filters, out_dir / f"kl_bars_{safe}.png",
            title=f"D_KL(with AU || without AU) of the max activation, layer {resp.layer}")
    if visualise and hasattr(loader, "dataset"):
        from fer_analysis.hooks import NotApplicableError

        try:
            run_topn(model, loader, out_dir, layer=resp.layer, n=n, filters=filters, device=device,
                     responses=resp, progress=progress)
        except NotApplicableError as e:  # e.g. ELU networks: no deconvnet / guided backprop
            (out_dir / "topn_skipped.txt").write_text(str(e) + "\n")
    _, best = top_au(res)
    finite = best[torch.isfinite(best)]
    metrics = {
        "filter_au_max_kl": float(finite.max()) if len(finite) else float("nan"),
        "filter_au_mean_top_kl": float(finite.mean()) if len(finite) else float("nan"),
        "filter_au_samples": float(resp.values.shape[0]),
    }
    return metrics
