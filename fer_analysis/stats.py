"""Uncertainty for result tables: paired differences over seeds (or folds) and the test
split's own binomial error.

Paper 002 reports one run per cell and reads gains of 0.2-1.3 CL points as improvements;
on the synthetic faces five seeds of one cell span 2-3 points (sd). Every w/o-vs-w/ AU
claim in a fer-orch table therefore goes through :func:`paired_difference`:

- the unit is a *pair*: the same seed (and fold) trained w/o and w/ AU, so the seed's
  data order, initialisation and split cancel in the difference;
- the interval is Student's t on the paired differences (``scipy.stats.ttest_rel``),
  not a bootstrap: with the 3-5 seeds a grid affords, a bootstrap's percentile interval is
  far too narrow (it can only resample the few values seen), while t is exact when the
  differences are normal and is what the field expects;
- a difference is *significant* only when its interval excludes 0; tables print "n.s."
  otherwise, and with a single pair no interval exists ("n=1": never significant).

:func:`binomial_ci` is the sampling error of one test accuracy (the test split is a
sample too): the Wilson interval of ``correct / total`` (``scipy.stats.binomtest``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDiff:
    """``b - a`` over ``n`` pairs: mean, the ``confidence`` interval (NaN when n < 2), p."""

    mean: float
    low: float
    high: float
    n: int
    p: float
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (needs at least two pairs)."""
        return self.n >= 2 and math.isfinite(self.low) and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 2, signed: bool = True) -> str:
        """``+1.20 [+0.40, +2.00]``, ``+0.30 [-1.10, +1.70] n.s.`` or ``+0.30 (n=1) n.s.``."""
        if not math.isfinite(self.mean):
            return "–"
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        s = f.format(self.mean)
        if self.n >= 2 and math.isfinite(self.low):
            s += f" [{f.format(self.low)}, {f.format(self.high)}]"
        else:
            s += f" (n={self.n})"
        return s if self.significant else s + " n.s."


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> PairedDiff:
    """``b - a`` for paired samples (``a[i]`` and ``b[i]`` share a seed/fold).

    Pairs where either value is NaN are dropped. Identical differences (zero variance)
    give a zero-width interval at the mean: significant unless the mean is 0.
    """
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(len(x))
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, math.nan, confidence)
    d = y - x
    mean = float(d.mean())
    if n < 2:
        return PairedDiff(mean, math.nan, math.nan, n, math.nan, confidence)
    if np.allclose(d, d[0]):
        return PairedDiff(mean, mean, mean, n, 0.0 if mean != 0 else 1.0, confidence)
    res = stats.ttest_rel(y, x)
    ci = res.confidence_interval(confidence_level=confidence)
    return PairedDiff(mean, float(ci.low), float(ci.high), n, float(res.pvalue), confidence)


def binomial_ci(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of an accuracy, in percent; ``(nan, nan)`` for an empty split."""
    from scipy import stats

    if total <= 0:
        return math.nan, math.nan
    correct = int(round(correct))
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be in 0..{total}, got {correct}")
    ci = stats.binomtest(correct, int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return 100.0 * ci.low, 100.0 * ci.high


def accuracy_ci(cl_percent: float, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """:func:`binomial_ci` from a CL given in percent (as the tables store it)."""
    if not math.isfinite(cl_percent) or total <= 0:
        return math.nan, math.nan
    return binomial_ci(int(round(cl_percent / 100.0 * total)), total, confidence)


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample sd (ddof=1; 0 for one value) and n of the finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))
