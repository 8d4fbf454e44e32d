"""``grid``: paper 002's Table 1 and 2, method x dataset x {w/o AU, w/ AU} x seed.

Report section: Table 1 (CL and CAM-COS), Table 2 (ATT-COS at the aligned layer), Table 1b
on synthetic data (the same localisation scores against the map of the AUs truly active,
a ground truth the real datasets do not have), each per dataset as methods x (w/o | w/ |
Δ): mean ± sd over seeds, Δ the paired difference with its 95% t interval, the better
column in bold only when that interval excludes 0 ("n.s." otherwise; see
:mod:`orchestrator.tables`), the cosines also as class means; the test split's Wilson
interval of CL; and ``deltas.png``, a heat-map of w/ AU minus w/o AU
per method and dataset, so where AU helped is visible at a glance; the λ each method's w/-AU
runs used; on RAF-DB / AffectNet, Tables 1 and 2 against the published numbers
(:func:`paper_tables`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from fer_models.figures import save_figure
from orchestrator.registry import STUDIES
from orchestrator.studies._base import Study
from orchestrator.tables import (
    CI_LEGEND, CLASS_MEAN, METRIC_TITLES, TITLES, against_paper, agg, dataset_order, delta_cell,
    fmt, mark, md_table, method_order, paired, published_value, test_ci_line,
)


@STUDIES.register("grid")
class Grid(Study):
    """Tables 1-2: every method x dataset x {w/o, w/ AU} x seed, λ chosen on validation."""

    order = 1
    missing = "No finished main-grid trials (run `fer-orch grid`)."

    def configs(self, g, lam: float) -> Iterable[Any]:
        for dataset in g.datasets:
            for method in g.methods:
                for fold in g.fold_options(method, dataset):  # [{}] unless --folds (cross-validation)
                    data = {"data": {"options": fold}} if fold else {}
                    for au in g.au:
                        for seed in g.seeds:
                            yield g.train_config(method, dataset, au=au, lam=lam, layers=list(g.layers), seed=seed,
                                                 **data)

    def report(self, parent, df, out: Path) -> list[str]:
        lam = parent.data.tags.get("lambda", "?")
        src = parent.data.tags.get("lambda_source", "")

        parts = [f"Main grid: {len(df)} finished trials, λ = {lam} ({src}). CL in %, cosines in [0, 1]; "
                 "mean ± sd over seeds (over folds when cross-validated, `--folds`). " + CI_LEGEND]
        for d in dataset_order(df["dataset"].unique()):
            line = test_ci_line(df[df["dataset"] == d], d)
            if line:
                parts.append(line)
        # the cosines as the per-sample mean and as the mean of the per-class means (the
        # paper's "Average" row), when the runs logged the latter
        avg = {m: a for m, a in CLASS_MEAN.items() if a in df and df[a].notna().any()}
        md, d1 = au_table(df, ["cl", "cam_cos"] + ([avg["cam_cos"]] if "cam_cos" in avg else []),
                          "Table 1: classification (CL) and CAM localisation (CAM-COS: per-sample mean; class mean: "
                          "mean of the per-class means, the paper's \"Average\"), test", out, "table1")
        parts.append(md)
        md, d2 = au_table(df, ["att_cos"] + ([avg["att_cos"]] if "att_cos" in avg else []),
                          "Table 2: attention localisation (ATT-COS: per-sample mean and class mean), test",
                          out, "table2")
        parts.append(md)
        gt_cols = df[["gt_cam_cos", "gt_att_cos"]]
        if gt_cols.notna().to_numpy().any() and (gt_cols.fillna(0) != 0).to_numpy().any():
            md, _ = au_table(df, ["gt_cam_cos", "gt_att_cos"],
                             "Table 1b: localisation against the truly active AUs (synthetic ground truth), test",
                             out, "table1b_gt")
            parts.append(md)
        if deltas_png({**d1, **d2}, out / "deltas.png"):
            parts.append("![where AU helped](deltas.png)")
        line = lambda_per_method(df)
        if line:
            parts.append(line)
        parts += paper_tables(df)
        return parts


def lambda_per_method(df) -> str | None:
    """One line: the λ of each method's w/-AU runs (one value for all when they agree)."""
    au = df[df["au"]]
    if au.empty:
        return None

    lams = {m: sorted(set(au.loc[au["method"] == m, "lam"])) for m in method_order(au["method"].unique())}
    values = {tuple(v) for v in lams.values()}
    if len(values) == 1 and len(next(iter(values))) == 1:
        return f"λ of the w/ AU runs: {next(iter(values))[0]:g} for every method."
    return "λ of the w/ AU runs per method: " + ", ".join(
        f"{m} {'/'.join(f'{x:g}' for x in v)}" for m, v in lams.items()) + "."


def paper_tables(df) -> list[str]:
    """Tables 1 (CL, CAM-COS) and 2 (ATT-COS) beside paper 002's numbers, per paper dataset."""

    rank = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    return against_paper(
        df, "Tables 1-2 against paper 002 ({d}, test)", ["Method", "AU"], ("cl", "cam_cos", "att_cos"),
        ["method", "au"], lambda k: [k[0], "w/" if k[1] else "w/o"],
        lambda d, metric, k: published_value("2" if metric == "att_cos" else "1", d, k[0], metric, k[1]),
        order=lambda k: (rank[k[0]], k[1]))


def au_table(df, metrics: list[str], title: str, out: Path, stem: str):
    """Per dataset, methods x (metric: w/o | w/ | Δ): Markdown + one long CSV; also returns
    ``{(method, dataset, metric): PairedDiff}``.

    Cells are mean ± sd over seeds; Δ is the paired difference over seeds with its 95% t
    interval (:func:`orchestrator.tables.paired`); the better side is bold and Δ has an
    arrow only when that interval excludes 0 (:func:`orchestrator.tables.delta_cell`). The
    CSV has, per cell, the Wilson interval of a test CL (``cl_ci_low``/``high``, from
    ``test_n``) and, on each w/ AU row, Δ with its interval, p and significance."""
    import pandas as pd

    from fer_analysis.stats import accuracy_ci

    mean, std, n = agg(df, ["dataset", "method", "au"], metrics)
    datasets = dataset_order(df["dataset"].unique())
    methods = method_order(df["method"].unique())
    header = ["Method"]
    for m in metrics:
        t = TITLES[m]
        header += [f"{t} w/o AU", f"{t} w/ AU", f"Δ{t} [95% CI]"]
    sections, csv_rows, deltas = [f"### {title}"], [], {}
    for d in datasets:
        rows = []
        sub = df[df["dataset"] == d]
        for meth in methods:
            row = [meth]
            runs = sub[sub["method"] == meth]
            for m in metrics:
                cells = {}
                for au in (False, True):
                    key = (d, meth, au)
                    if key in mean.index and math.isfinite(mean.loc[key, m]):
                        cells[au] = (mean.loc[key, m], std.loc[key, m], int(n.loc[key, m]))
                        extra = {}
                        if m == "cl" and "test_n" in runs and runs["test_n"].notna().any():
                            test_n = int(runs.loc[runs["au"] == au, "test_n"].median())
                            extra = dict(zip(("cl_ci_low", "cl_ci_high"), accuracy_ci(cells[au][0], test_n)),
                                         test_n=test_n)
                        csv_rows.append({"dataset": d, "method": meth, "metric": m, "au": au,
                                         "mean": cells[au][0], "std": cells[au][1], "n": cells[au][2], **extra})
                wo = fmt(*cells[False], m) if False in cells else "–"
                w = fmt(*cells[True], m) if True in cells else "–"
                delta = "–"
                if False in cells and True in cells:
                    dv = paired(runs[~runs["au"]], runs[runs["au"]], m)
                    deltas[(meth, d, m)] = dv
                    delta = delta_cell(dv)
                    wo, w = mark(wo, dv, higher=False), mark(w, dv, higher=True)
                    csv_rows[-1].update(delta=dv.mean, delta_n=dv.n, delta_low=dv.low, delta_high=dv.high,
                                        delta_p=dv.p, delta_significant=dv.significant)  # on the w/ AU row
                row += [wo, w, delta]
            if any(c != "–" for c in row[1:]):
                rows.append(row)
        sections.append(f"**{d}**\n\n" + md_table(header, rows))
    pd.DataFrame(csv_rows).to_csv(out / f"{stem}.csv", index=False)
    return "\n\n".join(sections), deltas


def deltas_png(deltas: dict, path: Path) -> bool:
    """Heat-map of w/ AU minus w/o AU (``{(method, dataset, metric): PairedDiff}``), one
    panel per metric (methods x datasets); differences whose interval contains 0 say n.s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np


    if not deltas:
        return False
    metrics = [m for m in METRIC_TITLES if any(k[2] == m for k in deltas)]  # per-sample columns only
    methods = method_order({k[0] for k in deltas})
    datasets = dataset_order({k[1] for k in deltas})
    fig, axes = plt.subplots(1, len(metrics), figsize=(len(metrics) * (2.4 + 1.1 * len(datasets)), 1.9 + 0.33 * len(methods)),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        cell = {k: v for k, v in deltas.items() if k[2] == m}
        arr = np.array([[cell[(me, d, m)].mean if (me, d, m) in cell else np.nan for d in datasets] for me in methods])
        lim = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
        im = ax.imshow(arr, cmap="RdYlGn", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
        ax.set_xticks(range(len(datasets)), [d.replace("synthetic-", "syn-") for d in datasets], rotation=30, ha="right")
        ax.set_yticks(range(len(methods)), methods)
        for (i, j), v in np.ndenumerate(arr):
            if np.isfinite(v):  # n.s.: the 95% interval over seeds contains 0
                sig = cell[(methods[i], datasets[j], m)].significant
                ax.text(j, i, f"{v:+.2f}" if sig else f"{v:+.2f}\nn.s.", ha="center", va="center",
                        fontsize=7 if sig else 6, color="black" if sig else "dimgray")
        ax.set_title(f"Δ{METRIC_TITLES[m]} (w/ − w/o AU)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle("where AU alignment helped (green) or hurt (red); n.s.: 95% t interval over seeds contains 0",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True
