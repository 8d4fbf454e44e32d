"""``grid``: paper 002's Table 1 and 2, method x dataset x {w/o AU, w/ AU} x seed.

Report section: Table 1 (CL and CAM-COS), Table 2 (ATT-COS at the aligned layer), Table 1b
on synthetic data (the same localisation scores against the map of the AUs truly active,
a ground truth the real datasets do not have), each per dataset as methods x (w/o | w/ |
Δ) with the better column in bold, and ``deltas.png``, a heat-map of w/ AU minus w/o AU
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
                 "mean ± std over seeds (over folds when cross-validated, `--folds`); bold: the better of w/o and w/ AU."]
        md, d1 = au_table(df, ["cl", "cam_cos"], "Table 1: classification (CL) and CAM localisation (CAM-COS), test",
                          out, "table1")
        parts.append(md)
        md, d2 = au_table(df, ["att_cos"], "Table 2: attention localisation (ATT-COS), test", out, "table2")
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
    from orchestrator.report import method_order

    lams = {m: sorted(set(au.loc[au["method"] == m, "lam"])) for m in method_order(au["method"].unique())}
    values = {tuple(v) for v in lams.values()}
    if len(values) == 1 and len(next(iter(values))) == 1:
        return f"λ of the w/ AU runs: {next(iter(values))[0]:g} for every method."
    return "λ of the w/ AU runs per method: " + ", ".join(
        f"{m} {'/'.join(f'{x:g}' for x in v)}" for m, v in lams.items()) + "."


def paper_tables(df) -> list[str]:
    """Tables 1 (CL, CAM-COS) and 2 (ATT-COS) beside paper 002's numbers, per paper dataset."""
    from orchestrator.report import against_paper, method_order, published_value

    rank = {m: i for i, m in enumerate(method_order(df["method"].unique()))}
    return against_paper(
        df, "Tables 1-2 against paper 002 ({d}, test)", ["Method", "AU"], ("cl", "cam_cos", "att_cos"),
        ["method", "au"], lambda k: [k[0], "w/" if k[1] else "w/o"],
        lambda d, metric, k: published_value("2" if metric == "att_cos" else "1", d, k[0], metric, k[1]),
        order=lambda k: (rank[k[0]], k[1]))


def au_table(df, metrics: list[str], title: str, out: Path, stem: str):
    """Per dataset, methods x (metric: w/o | w/ | Δ): Markdown (the better one in bold, Δ with
    an arrow) + one long CSV; also returns ``{(method, dataset, metric): Δ}``."""
    import pandas as pd

    from orchestrator.report import METRIC_TITLES, agg, dataset_order, fmt, md_table, method_order

    mean, std, n = agg(df, ["dataset", "method", "au"], metrics)
    datasets = dataset_order(df["dataset"].unique())
    methods = method_order(df["method"].unique())
    header = ["Method"]
    for m in metrics:
        t = METRIC_TITLES[m]
        header += [f"{t} w/o AU", f"{t} w/ AU", f"Δ{t}"]
    sections, csv_rows, deltas = [f"### {title}"], [], {}
    for d in datasets:
        rows = []
        for meth in methods:
            row = [meth]
            for m in metrics:
                cells = {}
                for au in (False, True):
                    key = (d, meth, au)
                    if key in mean.index and math.isfinite(mean.loc[key, m]):
                        cells[au] = (mean.loc[key, m], std.loc[key, m], int(n.loc[key, m]))
                        csv_rows.append({"dataset": d, "method": meth, "metric": m, "au": au,
                                         "mean": cells[au][0], "std": cells[au][1], "n": cells[au][2]})
                wo = fmt(*cells[False], m) if False in cells else "–"
                w = fmt(*cells[True], m) if True in cells else "–"
                delta = "–"
                if False in cells and True in cells:
                    dv = cells[True][0] - cells[False][0]
                    deltas[(meth, d, m)] = dv
                    arrow = "↑" if dv > 0 else ("↓" if dv < 0 else "=")
                    delta = f"{arrow} {dv:+.2f}"
                    if dv > 0:
                        w = f"**{w}**"
                    elif dv < 0:
                        wo = f"**{wo}**"
                row += [wo, w, delta]
            if any(c != "–" for c in row[1:]):
                rows.append(row)
        sections.append(f"**{d}**\n\n" + md_table(header, rows))
    pd.DataFrame(csv_rows).to_csv(out / f"{stem}.csv", index=False)
    return "\n\n".join(sections), deltas


def deltas_png(deltas: dict, path: Path) -> bool:
    """Heat-map of w/ AU minus w/o AU, one panel per metric (methods x datasets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from orchestrator.report import METRIC_TITLES, dataset_order, method_order

    if not deltas:
        return False
    metrics = [m for m in METRIC_TITLES if any(k[2] == m for k in deltas)]
    methods = method_order({k[0] for k in deltas})
    datasets = dataset_order({k[1] for k in deltas})
    fig, axes = plt.subplots(1, len(metrics), figsize=(len(metrics) * (2.4 + 1.1 * len(datasets)), 1.9 + 0.33 * len(methods)),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        arr = np.array([[deltas.get((me, d, m), np.nan) for d in datasets] for me in methods])
        lim = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
        im = ax.imshow(arr, cmap="RdYlGn", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
        ax.set_xticks(range(len(datasets)), [d.replace("synthetic-", "syn-") for d in datasets], rotation=30, ha="right")
        ax.set_yticks(range(len(methods)), methods)
        for (i, j), v in np.ndenumerate(arr):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"Δ{METRIC_TITLES[m]} (w/ − w/o AU)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle("where AU alignment helped (green) or hurt (red)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True
