"""What the report's sections share: the runs as a data frame, paper 002's published numbers,
mean ± sd over seeds (over folds when cross-validated), paired differences with their t
intervals, cell formatting, the method and dataset order, Markdown tables.

The studies (``orchestrator/studies/``) write their own report sections with these, and
:mod:`orchestrator.report` assembles the sections; neither imports the other's internals.

Uncertainty: every cell is mean ± sd over seeds (over folds when cross-validated); every
w/o-vs-w/ AU comparison is a *paired* difference with a 95% Student t interval
(:func:`fer_analysis.stats.paired_difference`, ``scipy.stats.ttest_rel``), the unit being one
seed (one fold, its seeds averaged, when cross-validated): :func:`paired`. Bold and arrows
mark only differences whose interval excludes 0 (:func:`delta_cell`, :func:`mark`); the rest
print "n.s.". The test split's own sampling error is the Wilson interval of CL from the
logged test-set size ``test_n`` (:func:`test_ci_line`). :data:`CI_LEGEND` is the sentence
every table with Δ columns carries.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from fer_analysis.stats import PairedDiff, accuracy_ci, paired_difference
from fer_models.config import METRIC_DEF
from orchestrator.variables import columns_of

#: column titles of the paper's metrics
METRIC_TITLES = {"cl": "CL", "cam_cos": "CAM-COS", "att_cos": "ATT-COS", "gt_cam_cos": "GT CAM-COS", "gt_att_cos": "GT ATT-COS"}
#: class-mean ("Average" row) counterparts of the per-sample cosines, when the runs log them
CLASS_MEAN = {"cam_cos": "cam_cos_avg", "att_cos": "att_cos_avg"}
#: column titles of every metric a table may show (the class means beside the per-sample ones)
TITLES = {**METRIC_TITLES, "cam_cos_avg": "CAM-COS (class mean)", "att_cos_avg": "ATT-COS (class mean)",
          "att_cos_5": "ATT-COS (layer 5)"}
#: the legend sentence of every table with a Δ column
CI_LEGEND = ("Δ = w/ AU − w/o AU, the mean paired difference with its 95% Student t interval "
             "(scipy.stats.ttest_rel) over seeds, each seed's w/o and w/ AU runs forming a pair (over folds, "
             "each fold's seeds averaged, when cross-validated); **bold** and ↑/↓ only where the interval "
             "excludes 0, \"n.s.\" otherwise (always with a single seed, n=1).")
#: how a column set beside the paper is named
COMPARED_NAMES = {"cl": "CL", "cam_cos": "CAM-COS (per sample)", "att_cos": "ATT-COS (per sample)",
                  "cam_cos_avg": "CAM-COS (class mean)", "att_cos_avg": "ATT-COS (class mean)"}
PUBLISHED_CSV = Path(__file__).with_name("published") / "paper002.csv"
#: the datasets paper 002 reports on
PAPER_DATASETS = ("rafdb", "affectnet")
NO_PUBLISHED = ("No column of published numbers: these runs are not on RAF-DB or AffectNet "
                "(e.g. the synthetic faces), and paper 002 reports only those two datasets.")


def runs_frame(runs: list[Any]):
    """One row per trial run: the grid variables (:data:`orchestrator.variables.GRID_VARIABLES`,
    read from the run's tags) and the test metrics."""
    import pandas as pd

    from fer_models.faithfulness import KEYS as FAITHFULNESS_KEYS

    rows = []
    for r in runs:
        t, m = r.data.tags, r.data.metrics
        rows.append(
            {
                "run_id": r.info.run_id,
                **columns_of(t),  # the grid variables (orchestrator.variables)
                **{k: m.get(f"test_{k}", math.nan) for k in METRIC_TITLES},
                **{k: m.get(f"test_{k}", math.nan) for k in CLASS_MEAN.values()},
                "test_n": m.get("test_n", math.nan),
                "att_cos_5": m.get("test_att_cos_5", m.get("test_att_cos", math.nan)),
                "metric_def": r.data.params.get("metric_def", METRIC_DEF),
                **{k: m.get(f"test_{k}", math.nan) for k in FAITHFULNESS_KEYS},
            }
        )
    return pd.DataFrame(rows)


@lru_cache(maxsize=1)
def published():
    """Paper 002's published numbers (``orchestrator/published/paper002.csv``) as a frame."""
    import pandas as pd

    return pd.read_csv(PUBLISHED_CSV, dtype={"table": str, "au": str, "layers": str, "lam": str}, keep_default_na=False)


def published_value(table: str, dataset: str, method: str, metric: str, au: bool, layers: str = "",
                    lam: float | None = None) -> float:
    """One published number (NaN when the paper has none, e.g. APViT's CAM-COS)."""
    p = published()
    sel = (p.table == table) & (p.dataset == dataset) & (p.method == method) & (p.metric == metric) & \
        (p.au == str(bool(au)).lower())
    if layers:
        sel &= p.layers == layers
    if lam is not None:
        sel &= p.lam == f"{lam:g}"
    vals = p.loc[sel, "value"]
    return float(vals.iloc[0]) if len(vals) else math.nan


def on_paper_data(df) -> bool:
    return bool(df["dataset"].isin(PAPER_DATASETS).any())


def comparable(df, metric: str) -> str:
    """The column of ``df`` to set beside the paper's ``metric``: the class mean when logged."""
    avg = CLASS_MEAN.get(metric)
    if avg and avg in df and df[avg].notna().any():
        return avg
    return metric


def against_paper(df, title: str, first: list[str], metrics: Iterable[str], keys: list[str],
                  label: Callable[[tuple], list[str]], lookup: Callable[[str, str, tuple], float],
                  order: Callable[[tuple], Any] | None = None) -> list[str]:
    """For each paper dataset in ``df``: the groups of ``keys`` (mean ± std over seeds of the
    :func:`comparable` column of each metric) beside ``lookup(dataset, metric, key)``, the
    published value, as one :func:`vs_paper` table titled ``title.format(d=dataset)``;
    ``label(key)`` gives a row's first cells, ``order`` sorts the groups."""
    parts = []
    for d in (x for x in PAPER_DATASETS if x in set(df["dataset"])):
        sub = df[df["dataset"] == d]
        rows = []
        for metric in metrics:
            col = comparable(sub, metric)
            mean, std, n = agg(sub, keys, [col])
            for key in sorted(mean.index, key=order) if order else mean.index:
                k = key if isinstance(key, tuple) else (key,)
                rows.append((label(k) + [COMPARED_NAMES[col]], mean.loc[key, col], std.loc[key, col],
                             lookup(d, metric, k), int(n.loc[key, col])))
        md = vs_paper(title.format(d=d), rows, first + ["Metric"])
        if md:
            parts.append(md)
    return parts


def vs_paper(title: str, rows: Iterable[tuple[list[str], float, float, float, int]], first: list[str]) -> str:
    """A Markdown table ``first columns | ours | paper | Δ (ours − paper)`` from rows
    ``(labels, ours mean, ours std, published, n)``; rows without a published value are left out."""
    out = []
    for labels, mean, std, pub, n in rows:
        if not math.isfinite(pub):
            continue
        diff = f"{mean - pub:+.2f}" if math.isfinite(mean) else "–"
        out.append(labels + [fmt(mean, std, n, ""), f"{pub:.2f}", diff])
    if not out:
        return ""
    return f"### {title}\n\n" + md_table(first + ["ours", "paper", "Δ (ours − paper)"], out)


def agg(df, keys: list[str], metrics: list[str]):
    """mean, std (ddof=1; 0 for one value) and n per group.

    Cross-validated runs (a ``fold`` tag, ``fer-orch grid --folds``): the seeds of each fold
    are averaged first, then mean ± std are taken over the folds and n counts folds, as
    papers 001 and 003 report ("average the results over all 5 folds"); without folds, over
    the seeds.
    """
    if "fold" in df.columns and df["fold"].notna().any():
        import pandas as pd

        has = df["fold"].notna()
        folds = df[has].groupby([*keys, "fold"], dropna=False)[metrics].mean().reset_index()
        df = pd.concat([folds, df[~has][[*keys, *metrics]]], ignore_index=True)
    g = df.groupby(keys, dropna=False)[metrics]
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
    return mean, std, n


def unit_values(df, metric: str):
    """``metric`` per unit of replication: per seed, or per fold (its seeds averaged) when
    the runs are cross-validated, as :func:`agg` counts n. A Series indexed by the unit."""
    if "fold" in df.columns and df["fold"].notna().any():
        return df.groupby("fold")[metric].mean()
    return df.groupby("seed")[metric].mean()


def paired(without, with_, metric: str) -> PairedDiff:
    """``with_ − without`` of ``metric`` paired by seed (by fold when cross-validated), with
    its 95% t interval (:func:`fer_analysis.stats.paired_difference`); units present in
    only one of the two are left out."""
    a, b = unit_values(without, metric), unit_values(with_, metric)
    units = a.index.intersection(b.index)
    return paired_difference(a.loc[units].to_numpy(), b.loc[units].to_numpy())


def delta_cell(d: PairedDiff, digits: int = 2) -> str:
    """A Δ cell: ``↑ +4.00 [+1.20, +6.80]`` when the interval excludes 0, else the plain
    value and interval with "n.s." (:meth:`PairedDiff.format`)."""
    s = d.format(digits)
    if d.significant:
        s = ("↑ " if d.mean > 0 else "↓ ") + s
    return s


def mark(cell: str, d: PairedDiff | None, higher: bool) -> str:
    """``cell`` in bold when ``d`` is significant and favours this side (``higher``: the
    side that is better when the difference is positive)."""
    if d is None or not d.significant or cell == "–":
        return cell
    return f"**{cell}**" if (d.mean > 0) == higher else cell


def test_ci_line(df, label: str = "") -> str | None:
    """One sentence: the test split's size and the 95% Wilson interval of a CL on it
    (:func:`fer_analysis.stats.accuracy_ci`) at the lowest and highest mean CL of ``df``'s
    cells, or None when the runs did not log ``test_n``."""
    if "test_n" not in df or not df["test_n"].notna().any():
        return None
    n = int(df["test_n"].dropna().median())
    cells = df.groupby(["method", "au"])["cl"].mean().dropna()
    if cells.empty:
        return None
    widths = []
    for cl in (cells.min(), cells.max()):
        lo, hi = accuracy_ci(cl, n)
        widths.append(f"{cl:.1f}% [{lo:.1f}, {hi:.1f}]")
    where = f" ({label})" if label else ""
    return (f"Test split{where}: {n} faces; the sampling error of one CL on it (95% Wilson interval, "
            f"scipy.stats.binomtest) runs from {widths[0]} at the lowest cell mean to {widths[1]} at the "
            f"highest: the error a CL carries from the test split alone, which the intervals over seeds do not "
            f"include (per cell in the CSV: cl_ci_low, cl_ci_high).")


def fmt(mean: float, std: float, n: int, metric: str) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    digits = 2
    s = f"{mean:.{digits}f}"
    if n > 1:
        s += f" ± {std:.{digits}f}"
    return s


def method_order(methods) -> list[str]:
    """Paper 002's Table-1 order (``fer_models.methods.paper_methods``); others alphabetically after."""
    from fer_models.methods import paper_methods

    known = [m for m in paper_methods() if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def dataset_order(datasets) -> list[str]:
    """RAF-DB before AffectNet, as in the paper; others alphabetically after."""
    return sorted(set(datasets), key=lambda d: (0 if "rafdb" in d else 1 if "affectnet" in d else 2, d))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
