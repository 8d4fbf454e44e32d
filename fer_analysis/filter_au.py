"""Which action unit does each filter respond to? (paper 001, Sec. 4.4, Table 4, Fig. 5).

For filter i of a layer and AU j, paper 001 builds a histogram of the filter's *maximum*
activation over the samples showing AU j (Q_ij) and over the samples without it (R_ij) and
computes D_KL(Q_ij || R_ij); the AU with the largest divergence is the filter's AU.

**Direction.** D_KL(Q || R) = sum_b Q_b log(Q_b / R_b), with Q = "AU present", as in the
paper's step (iv): how poorly the AU-absent distribution explains the activations seen when
the AU is present. It is asymmetric by design (``tests`` pin it on a hand-computed pair).

**Why a null.** The plug-in divergence of two *estimated* histograms is biased upwards, the
more so the fewer samples a histogram has: about (B_occupied - 1) / (2 n_Q) nats for a
group of n_Q samples (the Miller-Madow term), plus much more when R has empty bins that Q
visits. Rare AUs therefore win by chance: with the first version of this module (20
equal-width bins, 1e-3 added to every bin, 5 samples at least) an AU present in 10 of 1,000
samples and unrelated to the filter scored 0.74 ± 0.23 nats on normal activations (0.62
in the issue's simulation), far more than a real 0.5-sd shift on an AU present in half the
samples (0.20). Every divergence is therefore reported with a **permutation null**: the AU
labels are shuffled over the samples (the same permutation for all AUs, so each AU keeps
its sample sizes and the AUs their co-occurrence), the divergence is recomputed
``permutations`` times (1,000 by default; all permutations of a chunk in one matrix
product), and the table reports

- ``null_mean``: the mean divergence under the null, i.e. the bias at these sample sizes;
- ``kl_corrected`` = ``kl`` - ``null_mean`` (near 0 for an unrelated AU whatever its size);
- ``p`` = (1 + #null >= observed) / (1 + permutations) (Phipson & Smyth 2010) and ``q``, the
  Benjamini-Hochberg adjustment over every (filter, AU) pair of the table.

**Bins and minimum count (chosen so that the null is small).** Bins are equal-frequency
per filter (edges at the quantiles of that filter's maxima over all samples), so R, the
larger group as a rule, has no empty bin and every bin carries data; ``bins=5`` and a
pseudo-count ``alpha=0.5`` (Jeffreys) in every occupied bin of both histograms replace the
1e-3; an AU needs ``min_count=20`` units with it and 20 without. Measured with
``benchmarks/bench_filter_au_null.py`` (normal activations, 1,000 samples, 200 filters): the
null mean of an AU present in 10 samples is 0.14 nats (0.74 before), in 20 samples 0.08,
in 50 samples 0.04, in 500 samples 0.008, and the corrected divergence of the unrelated AU
is 0.00 ± 0.09 / ± 0.06 / ± 0.03 / ± 0.006 with 4-6 % of p < 0.05; the 0.5-sd shift on an AU
present in 500 samples keeps 0.11 nats corrected (p < 0.05 in every filter; in a third of
them at 20 samples). With 10 bins the null at 20 samples doubles (0.15) and the power there
drops; with 3 bins a real effect's divergence shrinks by a sixth and a filter that fires
only in the top tail of its range is blurred over the top third. Ties (a filter that is 0
in most images) merge quantile edges: such bins are empty for both groups and take no pseudo-count.

**Expressive frames, and what the permutation may swap.** CK+ gives each sequence a neutral
first frame (no AU) and peak frames (the sequence's AUs). A filter that only separates peak
from neutral frames then "responds" to every frequent AU: simulated on CK+'s structure, 40 of
40 such filters got a significant AU. So by default (``frames="expressive"``) the neutral rows
are left out and the question is asked among expressive frames; ``frames="all"`` keeps them
(the paper's set). The permutation moves a unit's AU labels only to another unit with the same
number of frames (the neutral frame and the 3 peak frames of a sequence are units of 1 and 3),
so every permuted labelling keeps the frame counts of each AU and the null is exact; shuffling
across unit sizes made the test conservative (2 % below p = 0.05 under a pure null).
``within="class"`` permutes only among units of one expression, for the question "AU j beyond
the expression it belongs to". ``tests/test_fer_analysis/test_filter_au.py`` measures the false
positive rate under a pure null and under the peak-vs-neutral confound.

**Units (CK+ sequences).** The frames of one CK+ sequence are near-copies with the same
FACS labels, so counting frames overstates the evidence. When the data carries a per-row
``sequence`` column, a *unit* is one sequence's frames that share the same AU labels (the
neutral first frame and the peak frames of a sequence are two units); the minimum count
counts units and the permutation shuffles the AU labels of whole units. The histograms stay
over frames, as in the paper. Without the column each row is a unit.

**Which filters.** Paper 001 first visualises N filters (its Figs. 3-4: the strongest top-N
responses, ``fer_analysis.topn.strongest_filters``) and then computes their divergences; the
job does the same, so the table is not a search for the largest KL over every filter (which
would select noise). The full (filter x AU) matrix of raw divergences is written too.

**Presence**: intensity > ``threshold`` (CK+/DISFA codes or the synthetic faces' ground
truth); NaN intensities (unknown) leave a sample out for that AU.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fer_models.data.au_rules import AU_NAMES
from fer_models.labels import NEUTRAL

BINS = 5
ALPHA = 0.5
MIN_COUNT = 20
PERMUTATIONS = 1000
FRAMES = ("expressive", "all")
WITHIN = ("none", "class")


def au_label(au: int) -> str:
    return f"AU{au}: {AU_NAMES[au]}" if au in AU_NAMES else f"AU{au}"


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_KL(p || q) over the last axis of two normalised histograms (0 log 0 = 0)."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=-1)


def bin_index(values: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Equal-frequency bin of every value, per column: (M, C) -> (M, C) in 0..bins-1, edges at
    the 1/bins, 2/bins, ... quantiles of the column (a value on an edge goes up)."""
    v = values.double()
    qs = torch.linspace(0, 1, bins + 1, dtype=v.dtype)[1:-1]
    if len(qs) == 0:
        return torch.zeros_like(v, dtype=torch.long)
    edges = torch.quantile(v, qs, dim=0).T.contiguous()  # (C, bins - 1)
    return torch.searchsorted(edges, v.T.contiguous(), right=True).T.contiguous()


def histograms(values: torch.Tensor, groups: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Counts of ``values`` (M, C) in the shared equal-frequency bins of each column, for each
    group mask ``groups`` (M, G): returns (C, G, bins)."""
    onehot = torch.nn.functional.one_hot(bin_index(values, bins), bins).double()  # (M, C, B)
    return torch.einsum("mcb,mg->cgb", onehot, groups.double())


def smoothed_kl(cq: torch.Tensor, cr: torch.Tensor, occupied: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """D_KL(Q || R) from bin counts (..., B), each histogram given ``alpha`` per occupied bin
    (``occupied`` broadcasts against the counts: bins no sample of the filter falls in stay 0)."""
    occ = occupied.to(cq.dtype)
    q = cq + alpha * occ
    r = cr + alpha * occ
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-300)
    r = r / r.sum(-1, keepdim=True).clamp_min(1e-300)
    return kl_divergence(q, r)


@dataclass
class FilterAU:
    """Divergences of the filters (rows) against the AUs (columns), with their null."""

    kl: torch.Tensor  # (C, A) raw D_KL(Q || R); NaN where an AU has too few units
    null_mean: torch.Tensor  # (C, A) mean under the permutation null (NaN without permutations)
    null_sd: torch.Tensor  # (C, A)
    p: torch.Tensor  # (C, A) permutation p-value
    q: torch.Tensor  # (C, A) Benjamini-Hochberg q-value over the finite p of the table
    n_present: torch.Tensor  # (A,) units with the AU
    n_absent: torch.Tensor  # (A,)
    mean_with: torch.Tensor  # (C, A) mean max-activation of the frames with the AU
    mean_without: torch.Tensor  # (C, A)
    au_ids: list[int]
    filters: list[int]  # the filter index of each row
    bins: int = BINS
    permutations: int = 0
    unit: str = "row"  # "sequence" when samples were counted by sequence
    n_units: int = 0
    frames: str = "expressive"  # the rows tested: "expressive" (neutral dropped) or "all"
    within: str = "none"  # the permutation's strata beyond the frame count: "class" or "none"
    n_rows: int = 0

    @property
    def corrected(self) -> torch.Tensor:
        """``kl - null_mean``: the divergence beyond what chance gives at these sample sizes."""
        return self.kl - self.null_mean

    @property
    def score(self) -> torch.Tensor:
        """What ranks the AUs of a filter: the corrected divergence when a null was drawn, else the raw one."""
        return self.kl if self.permutations == 0 else self.corrected


def _units(aus_state: np.ndarray, units: np.ndarray | None,
           labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit of each row (M,), AU state of each unit (U, A), class of each unit (U,)): a unit is
    one ``units`` value (a sequence) with one AU state pattern and one class; without ``units``
    every row is a unit."""
    lab = np.full(len(aus_state), -1) if labels is None else np.asarray(labels).reshape(-1).astype(np.int64)
    if units is None:
        return np.arange(len(aus_state)), aus_state, lab
    codes = np.unique(np.asarray(units).astype(str), return_inverse=True)[1].reshape(-1, 1)
    key = np.concatenate([codes, lab.reshape(-1, 1), aus_state.astype(np.int64)], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return inverse.reshape(-1), aus_state[first], lab[first]


def permutations_within(strata: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` permutations (k, U) of the units that move a unit only to the place of another of
    its stratum (same frame count; same class with ``within="class"``): every permuted labelling
    has the frame counts of the observed one, so the null compares like with like."""
    n = len(strata)
    perm = np.tile(np.arange(n), (k, 1))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        if len(idx) > 1:
            perm[:, idx] = rng.permuted(np.tile(idx, (k, 1)), axis=1)
    return perm


def filter_au_kl(values: torch.Tensor, aus: torch.Tensor, au_ids: Sequence[int], *, units=None, labels=None,
                 frames: str = "expressive", within: str = "none", threshold: float = 0.0, bins: int = BINS,
                 alpha: float = ALPHA, min_count: int = MIN_COUNT, permutations: int = PERMUTATIONS, seed: int = 0,
                 filters: Sequence[int] | None = None, chunk_elements: int = 4_000_000) -> FilterAU:
    """D_KL(Q_ij || R_ij) of every filter i (columns of ``values`` (M, C)) and AU j (columns of
    ``aus`` (M, A), NaN = unknown), with its permutation null (see the module docstring).

    ``units`` (M,): the sequence of each row (counted and permuted by unit); ``labels`` (M,):
    the expression of each row; ``frames``: ``expressive`` drops the neutral rows, ``all`` keeps
    them; ``within``: ``class`` permutes only among units of one expression, ``none`` among all
    (always among units of the same frame count); ``filters``: the filter index of each column
    (for the table). ``permutations=0`` skips the null.
    """
    values = torch.as_tensor(values).double()
    aus_np = torch.as_tensor(aus).double().numpy()
    if frames not in FRAMES or within not in WITHIN:
        from fer_models.errors import ConfigError
        raise ConfigError(f"frames must be one of {', '.join(FRAMES)} and within one of {', '.join(WITHIN)}, "
                          f"got '{frames}' and '{within}'")
    if labels is not None and frames == "expressive":
        keep = np.asarray(labels).reshape(-1) != NEUTRAL  # unknown expressions (-1) stay
        values, aus_np = values[torch.from_numpy(keep)], aus_np[keep]
        units = None if units is None else np.asarray(units).reshape(-1)[keep]
        labels = np.asarray(labels).reshape(-1)[keep]
    m, c = values.shape
    state = np.where(np.isnan(aus_np), -1, (aus_np > threshold).astype(np.int64))  # 1 / 0 / -1
    unit_of_row, unit_state, unit_class = _units(state, units, labels)
    size = np.bincount(unit_of_row, minlength=len(unit_state))
    strata = size * 1000 + (unit_class + 1 if within == "class" else 0)
    n_p = torch.as_tensor((unit_state == 1).sum(0))
    n_a = torch.as_tensor((unit_state == 0).sum(0))
    bad = (n_p < min_count) | (n_a < min_count)

    onehot = torch.nn.functional.one_hot(bin_index(values, bins), bins).to(torch.float32)  # (M, C, B)
    mat = onehot.reshape(m, c * bins).T.contiguous()  # (C*B, M)
    occupied = onehot.sum(0) > 0  # (C, B)

    def divergences(state_rows: np.ndarray) -> torch.Tensor:
        """state_rows (P, M, A) -> D_KL (C, P, A) for P labelings at once."""
        p_, _, a_ = state_rows.shape
        present = torch.from_numpy((state_rows == 1).astype(np.float32)).permute(1, 0, 2).reshape(m, p_ * a_)
        known = torch.from_numpy((state_rows >= 0).astype(np.float32)).permute(1, 0, 2).reshape(m, p_ * a_)
        cq = (mat @ present).reshape(c, bins, p_, a_)
        ck = (mat @ known).reshape(c, bins, p_, a_)
        kl = smoothed_kl(cq.movedim(1, -1).double(), (ck - cq).movedim(1, -1).double(),
                         occupied[:, None, None, :], alpha)
        return kl  # (C, P, A)

    kl = divergences(state[None])[:, 0]  # (C, A)
    null_mean, null_sd, pval = _permutation_null(divergences, kl, unit_state, unit_of_row, strata, permutations,
                                                 seed, max(1, chunk_elements // max(1, m * unit_state.shape[1])))
    for t in (kl, null_mean, null_sd, pval):
        t[:, bad] = float("nan")
    qval = torch.full_like(kl, float("nan"))
    finite = torch.isfinite(pval)
    if finite.any():
        from scipy.stats import false_discovery_control

        qval[finite] = torch.as_tensor(false_discovery_control(pval[finite].numpy()), dtype=qval.dtype)
    pw = torch.from_numpy((state == 1).astype(np.float64))
    aw = torch.from_numpy((state == 0).astype(np.float64))
    mean_with = values.T @ pw / pw.sum(0).clamp_min(1)
    mean_without = values.T @ aw / aw.sum(0).clamp_min(1)
    return FilterAU(kl.float(), null_mean.float(), null_sd.float(), pval.float(), qval.float(), n_p, n_a,
                    mean_with.float(), mean_without.float(), [int(x) for x in au_ids],
                    list(range(c)) if filters is None else [int(f) for f in filters], bins, int(permutations),
                    "row" if units is None else "sequence", int(unit_state.shape[0]), frames, within, int(m))


def _permutation_null(divergences, kl: torch.Tensor, unit_state: np.ndarray, unit_of_row: np.ndarray,
                      strata: np.ndarray, permutations: int, seed: int, per_chunk: int):
    """Mean, sd and p-value (C, A) of ``kl`` under ``permutations`` relabellings of the units
    within their strata (NaN without permutations), ``per_chunk`` permutations a matrix product."""
    nan = torch.full_like(kl, float("nan"))
    if permutations <= 0:
        return nan.clone(), nan.clone(), nan.clone()
    rng = np.random.default_rng(seed)
    total, total_sq, exceed = torch.zeros_like(kl), torch.zeros_like(kl), torch.zeros_like(kl)
    done = 0
    while done < permutations:
        k = min(per_chunk, permutations - done)
        perm = permutations_within(strata, k, rng)  # (k, U)
        null = divergences(unit_state[perm][:, unit_of_row])  # (C, k, A)
        total += null.sum(1)
        total_sq += (null ** 2).sum(1)
        exceed += (null >= kl[:, None, :] - 1e-12).sum(1)
        done += k
    null_mean = total / permutations
    null_sd = (total_sq / permutations - null_mean ** 2).clamp_min(0).sqrt()
    return null_mean, null_sd, (1 + exceed) / (1 + permutations)


def rank_aus(res: FilterAU) -> torch.Tensor:
    """(C, A) AU columns of each filter, best first: smallest permutation p, ties (p at its floor
    for every strong effect) broken by the largest corrected divergence; AUs without enough
    units last. Without a null: the largest raw divergence, as paper 001 ranks. Ranking by the
    corrected value alone would still let a rare AU's noise (sd 0.09 nats at 10 samples, module
    docstring) beat a real effect now and then; its p does not."""
    score = torch.nan_to_num(res.score.double(), nan=-1e9)
    if res.permutations == 0:
        return score.argsort(dim=1, descending=True)
    p = torch.nan_to_num(res.p.double(), nan=2.0)
    return (score - 1e6 * p).argsort(dim=1, descending=True)  # p steps are >= 1/(1+perms) >> score range / 1e6


def top_au(res: FilterAU) -> tuple[torch.Tensor, torch.Tensor]:
    """Per filter: the first AU column of :func:`rank_aus` and its :attr:`FilterAU.score` (NaN if none)."""
    j = rank_aus(res)[:, 0]
    best = res.score.gather(1, j[:, None])[:, 0]
    return j, best


def table_rows(res: FilterAU, rows: Sequence[int] | None = None, level: float = 0.05) -> list[dict]:
    """Paper 001 Table 4 rows (``rows``: row positions in ``res``, default all): the filter, its
    first AU by :func:`rank_aus`, that AU's raw KL, null mean, corrected KL, p and q, the
    runner-up, the mean activations with / without, and whether q < ``level``."""
    out = []
    ranks = rank_aus(res)
    for i in (range(len(res.filters)) if rows is None else rows):
        order = ranks[i].tolist()
        a1 = order[0]
        a2 = order[1] if len(order) > 1 else a1
        out.append({
            "filter": int(res.filters[i]),
            "au": int(res.au_ids[a1]),
            "au_name": au_label(int(res.au_ids[a1])),
            "kl": float(res.kl[i, a1]),
            "null_mean": float(res.null_mean[i, a1]),
            "kl_corrected": float(res.corrected[i, a1]),
            "p": float(res.p[i, a1]),
            "q": float(res.q[i, a1]),
            "significant": bool(float(res.q[i, a1]) < level),
            "second_au": int(res.au_ids[a2]),
            "second_kl_corrected": float(res.score[i, a2]),
            "mean_act_with": float(res.mean_with[i, a1]),
            "mean_act_without": float(res.mean_without[i, a1]),
            "n_with": int(res.n_present[a1]),
            "n_without": int(res.n_absent[a1]),
            "unit": res.unit,
        })
    return out


def write_table(rows: list[dict], csv_path: Path, md_path: Path, layer: str, res: FilterAU | None = None) -> None:
    if not rows:
        return
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"| Filter ({layer}) | FAU (smallest p, then largest corrected KL) | D_KL | null mean | corrected | p | q "
        "| runner-up | n with / without | mean act. with / without | peak row / col (fraction) |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        star = " *" if r["significant"] else ""
        lines.append(
            f"| {r['filter']} | {r['au_name']}{star} | {r['kl']:.3f} | {r['null_mean']:.3f} | {r['kl_corrected']:+.3f} "
            f"| {r['p']:.3g} | {r['q']:.3g} | AU{r['second_au']} ({r['second_kl_corrected']:+.3f}) "
            f"| {r['n_with']} / {r['n_without']} {r['unit']}s "
            f"| {r['mean_act_with']:.3g} / {r['mean_act_without']:.3g} "
            f"| {r.get('peak_row_frac', float('nan')):.2f} / {r.get('peak_col_frac', float('nan')):.2f} |"
        )
    if res is not None:
        lines += ["", f"D_KL(Q || R) of the maximal activation, Q = frames with the AU, R = without; {res.bins} "
                  f"equal-frequency bins per filter, pseudo-count {ALPHA} per occupied bin; frames: {res.frames} "
                  f"({res.n_rows}); null: {res.permutations} permutations of the AU labels over {res.n_units} "
                  f"{res.unit}s, among units of one frame count{' and one expression' if res.within == 'class' else ''}; "
                  "corrected = D_KL - null mean; "
                  "* = Benjamini-Hochberg q < 0.05 over this table's filters x AUs."]
    Path(md_path).write_text("\n".join(lines) + "\n")


def write_matrix(res: FilterAU, path: Path) -> None:
    """The (filter x AU) matrix of raw divergences as CSV (no null: every filter of the layer)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filter"] + [f"AU{a}" for a in res.au_ids])
        for i, f in enumerate(res.filters):
            w.writerow([f] + [f"{float(v):.6g}" for v in res.kl[i]])


def run_filter_au(model, loader, out_dir: Path, *, layer: str | None = None, au_ids: Sequence[int] | None = None,
                  k: int = 10, n: int = 10, threshold: float = 0.0, bins: int = BINS, min_count: int = MIN_COUNT,
                  frames: str = "expressive", within: str = "none",
                  permutations: int = PERMUTATIONS, seed: int = 0, device: str = "cpu", visualise: bool = True,
                  max_batches: int | None = None, progress: bool = True) -> dict[str, float]:
    """The paper-001 Sec. 4.4 job: the ``k`` filters of Figs. 3-4 (strongest top-``n`` responses),
    their divergences against every AU with the permutation null (Table 4, CSV + Markdown), Fig. 5
    bars of the corrected divergences, the raw matrix of every filter, and the top-``n`` patches
    of the same filters (so the AU can be checked against them)."""
    from fer_analysis.plots_explain import kl_bars
    from fer_analysis.topn import run_topn, scan_layer, strongest_filters, top_n
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
    if au_ids is None:  # the cache's AU columns (FaceDataset.au_ids), else the codebooks' AU_IDS
        from fer_models.data.au import AU_IDS

        au_ids = getattr(getattr(loader, "dataset", None), "au_ids", None) or AU_IDS
    if len(au_ids) != resp.aus.shape[1]:
        raise DatasetError(f"the batches carry {resp.aus.shape[1]} AU columns but {len(au_ids)} AU numbers name them; "
                           "pass au_ids matching the data's AU columns")
    units = resp.columns.get("sequence")
    filters = strongest_filters(resp, k, n)
    common = dict(units=units, labels=None if resp.labels is None else resp.labels.numpy(), frames=frames,
                  within=within, threshold=threshold, bins=bins, min_count=min_count)
    full = filter_au_kl(resp.values, resp.aus, au_ids, permutations=0, **common)
    res = filter_au_kl(resp.values[:, filters], resp.aus, au_ids, permutations=permutations, seed=seed,
                       filters=filters, **common)
    rows = table_rows(res)
    # where on the (aligned) face each filter peaks in its top-n images: mean row / column of
    # the maximum as a fraction of the map (brows ~0.3, eyes ~0.4, nose ~0.55, mouth ~0.75)
    top = top_n(resp, n, filters)
    fh, fw = resp.feature_hw
    for r, pos in zip(rows, top.position):
        r["peak_row_frac"] = float((pos[:, 0].float() + 0.5).mean() / fh)
        r["peak_col_frac"] = float((pos[:, 1].float() + 0.5).mean() / fw)
    safe = resp.layer.replace(".", "_")
    write_matrix(full, out_dir / f"kl_matrix_{safe}.csv")
    write_table(rows, out_dir / f"filter_au_{safe}.csv", out_dir / f"filter_au_{safe}.md", resp.layer, res)
    kl_bars(res.corrected.numpy(), [f"AU{a}" for a in res.au_ids], filters, out_dir / f"kl_bars_{safe}.png",
            title=f"D_KL(with AU || without AU) - null mean, layer {resp.layer}", significant=(res.q < 0.05).numpy())
    if visualise and hasattr(loader, "dataset"):
        from fer_analysis.hooks import NotApplicableError

        try:
            run_topn(model, loader, out_dir, layer=resp.layer, n=n, filters=filters, device=device,
                     responses=resp, progress=progress)
        except NotApplicableError as e:  # e.g. ELU networks: no deconvnet / guided backprop
            (out_dir / "topn_skipped.txt").write_text(str(e) + "\n")
    _, best = top_au(res)
    finite = best[torch.isfinite(best)]
    raw_best = torch.tensor([r["kl"] for r in rows])
    raw_best = raw_best[torch.isfinite(raw_best)]
    return {
        "filter_au_max_kl": float(raw_best.max()) if len(raw_best) else float("nan"),
        "filter_au_max_kl_corrected": float(finite.max()) if len(finite) else float("nan"),
        "filter_au_mean_top_kl_corrected": float(finite.mean()) if len(finite) else float("nan"),
        "filter_au_significant_filters": float(sum(r["significant"] for r in rows)),
        "filter_au_samples": float(resp.values.shape[0]),
        "filter_au_units": float(res.n_units),
        "filter_au_aus_tested": float(torch.isfinite(res.kl[0]).sum()) if len(rows) else 0.0,
    }
