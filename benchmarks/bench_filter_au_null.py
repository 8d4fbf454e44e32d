"""How large is the filter<->AU divergence of a filter that ignores the AU? (paper 001 Sec. 4.4)

Simulation: 1,000 samples, filter maxima drawn N(0, 1), an AU present in n of them at random
(no relation to the filter), repeated over ``--reps`` filters. Printed side by side:

- ``first version``: the estimator fer-orch shipped first (20 equal-width bins, 1e-3 added to
  every bin; re-implemented here in four lines, for the comparison only);
- ``now``: ``fer_analysis.filter_au.filter_au_kl`` with its defaults (equal-frequency bins,
  Jeffreys pseudo-count) and its permutation null: raw divergence, null mean, corrected
  divergence and the share of p < 0.05 (should be ~0.05);
- the same for a real effect: the filter shifted by 0.5 sd on the samples with the AU.

The numbers quoted in ``fer_analysis/filter_au.py`` come from this script.

    .venv/bin/python benchmarks/bench_filter_au_null.py [--reps 200] [--bins 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fer_analysis.filter_au import BINS, filter_au_kl


def first_version_kl(values: torch.Tensor, present: torch.Tensor, bins: int = 20, eps: float = 1e-3) -> torch.Tensor:
    """The first estimator: equal-width bins over each column's range, eps per bin, D(Q || R)."""
    lo, hi = values.min(0).values, values.max(0).values
    b = ((values - lo) / (hi - lo).clamp_min(1e-12) * bins).floor().clamp(0, bins - 1).long()
    oh = torch.nn.functional.one_hot(b, bins).double()  # (M, C, B)
    q = oh[present].sum(0) + eps
    r = oh[~present].sum(0) + eps
    q, r = q / q.sum(-1, keepdim=True), r / r.sum(-1, keepdim=True)
    return (q * (q.log() - r.log())).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--bins", type=int, default=BINS)
    ap.add_argument("--permutations", type=int, default=500)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.samples, args.permutations = 3, 600, 10
    rng = np.random.default_rng(0)
    m = args.samples
    print(f"{m} samples, {args.reps} filters per row, bins={args.bins}, {args.permutations} permutations")
    print("| AU present in | effect | first version: KL | now: KL | null mean | corrected | share p<0.05 |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (10, 20, 50, 500):
        for shift in (0.0, 0.5):
            v = torch.from_numpy(rng.standard_normal((m, args.reps)))
            present = np.zeros(m, bool)
            present[rng.choice(m, n, replace=False)] = True
            v[torch.from_numpy(present)] += shift
            old = first_version_kl(v, torch.from_numpy(present))
            res = filter_au_kl(v, torch.from_numpy(present[:, None].astype(float)), [1], bins=args.bins,
                               min_count=1, permutations=args.permutations)
            kl, corr = res.kl[:, 0], res.corrected[:, 0]
            print(f"| {n} | {'none' if shift == 0 else f'{shift} sd'} | {old.mean():.3f} ± {old.std():.3f} "
                  f"| {kl.mean():.3f} ± {kl.std():.3f} | {res.null_mean[:, 0].mean():.3f} "
                  f"| {corr.mean():+.3f} ± {corr.std():.3f} | {(res.p[:, 0] < 0.05).float().mean():.2f} |")


if __name__ == "__main__":
    main()
