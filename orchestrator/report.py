"""Paper 002's tables and figures, rebuilt from MLflow alone (`fer-orch report`).

- Table 1: CL and CAM-COS per method and dataset, w/o vs w/ AU, mean ± std over seeds;
- Table 2: ATT-COS (attention at the aligned layer, layer 5 in the grid);
- Table 1b (synthetic data only): the same localisation scores against the map of the AUs
  truly active (ground truth the real datasets do not have);
- Table 3: the layer ablation (CAM, one dataset): CL and CAM-COS per set of aligned layers;
- Fig. 5: the λ ablation: CAM-COS and ATT-COS (left axis) and CL (right axis) vs λ, the
  w/o-AU model as dashed lines;
- ``deltas.png``: a heat-map of w/ AU minus w/o AU per method and dataset, so where AU
  helped is visible at a glance (the tables also mark the better column in bold and give
  a Δ column with an arrow).

Which runs: for each study, the latest grid invocation that contained it
(:func:`orchestrator.tracking.study_runs`), and for each of its configs the latest FINISHED
trial run, whichever invocation trained it. Everything lands in ``--out`` (default
``FER_ORCH_HOME/report/<experiment>``) as Markdown + CSV + PNG, is printed, and is logged
under ``report/`` of the parent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_models import paths
from fer_models.errors import FerOrchError
from fer_models.figures import save_figure
from orchestrator import tracking
from orchestrator.config import PAPER_LAYER_SETS, PAPER_METHODS

#: column titles of the paper
METRIC_TITLES = {"cl": "CL", "cam_cos": "CAM-COS", "att_cos": "ATT-COS", "gt_cam_cos": "GT CAM-COS", "gt_att_cos": "GT ATT-COS"}


@dataclass
class Report:
    out: Path
    markdown: str
    files: list[Path] = field(default_factory=list)
    parent_run_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def runs_frame(runs: list[Any]):
    """One row per trial run: the grid variables and the test metrics."""
    import pandas as pd

    rows = []
    for r in runs:
        t, m = r.data.tags, r.data.metrics
        rows.append(
            {
                "run_id": r.info.run_id,
                "method": t.get("method"),
                "dataset": t.get("dataset"),
                "au": t.get("au") == "true",
                "lam": float(t.get("lambda", "nan")),
                "layers": t.get("layers"),
                "seed": int(t.get("seed", 0)),
                **{k: m.get(f"test_{k}", math.nan) for k in METRIC_TITLES},
                "att_cos_5": m.get("test_att_cos_5", m.get("test_att_cos", math.nan)),
            }
        )
    return pd.DataFrame(rows)


def _agg(df, keys: list[str], metrics: list[str]):
    """mean, std (ddof=1; 0 for one seed) and n per group."""
    g = df.groupby(keys, dropna=False)[metrics]
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
    return mean, std, n


def _fmt(mean: float, std: float, n: int, metric: str) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    digits = 2
    s = f"{mean:.{digits}f}"
    if n > 1:
        s += f" ± {std:.{digits}f}"
    return s


def _order(methods) -> list[str]:
    known = [m for m in PAPER_METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def _dataset_order(datasets) -> list[str]:
    """RAF-DB before AffectNet, as in the paper; others alphabetically after."""
    return sorted(set(datasets), key=lambda d: (0 if "rafdb" in d else 1 if "affectnet" in d else 2, d))


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _au_table(df, metrics: list[str], title: str, out: Path, stem: str):
    """Per dataset, methods x (metric: w/o | w/ | Δ): Markdown (the better one in bold, Δ with
    an arrow) + one long CSV; also returns ``{(method, dataset, metric): Δ}``."""
    import pandas as pd

    mean, std, n = _agg(df, ["dataset", "method", "au"], metrics)
    datasets = _dataset_order(df["dataset"].unique())
    methods = _order(df["method"].unique())
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
                wo = _fmt(*cells[False], m) if False in cells else "–"
                w = _fmt(*cells[True], m) if True in cells else "–"
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
        sections.append(f"**{d}**\n\n" + _md_table(header, rows))
    pd.DataFrame(csv_rows).to_csv(out / f"{stem}.csv", index=False)
    return "\n\n".join(sections), deltas


def _deltas_png(deltas: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not deltas:
        return False
    metrics = [m for m in METRIC_TITLES if any(k[2] == m for k in deltas)]
    methods = _order({k[0] for k in deltas})
    datasets = _dataset_order({k[1] for k in deltas})
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


def _layers_table(df, out: Path) -> str:
    import pandas as pd

    metrics = ["cl", "cam_cos", "att_cos_5"]
    mean, std, n = _agg(df, ["au", "layers"], metrics)
    order = [(False, None)] + [(True, s) for s in PAPER_LAYER_SETS]
    extra = sorted({(True, lay) for au, lay in mean.index if au} - set(order))
    rows, csv_rows = [], []
    base = None
    for au, lay in order + extra:
        key = (au, lay) if au else next((k for k in mean.index if not k[0]), None)
        if key is None or key not in mean.index:
            continue
        vals = [(mean.loc[key, m], std.loc[key, m], int(n.loc[key, m])) for m in metrics]
        if not au:
            base = vals
        label = "w/o AU" if not au else f"w/ AU at {lay}"
        cells = [_fmt(*v, m) for v, m in zip(vals, metrics)]
        if au and base is not None:  # mark improvements over w/o AU
            cells = [f"**{c}**" if math.isfinite(v[0]) and v[0] > b[0] else c for c, v, b in zip(cells, vals, base)]
        rows.append([label] + cells)
        csv_rows.append({"au": au, "layers": lay if au else "", **{f"{m}_mean": v[0] for m, v in zip(metrics, vals)},
                         **{f"{m}_std": v[1] for m, v in zip(metrics, vals)}, "n": vals[0][2]})
    pd.DataFrame(csv_rows).to_csv(out / "table3_layers.csv", index=False)
    ds = ", ".join(sorted(df["dataset"].unique()))
    meth = ", ".join(sorted(df["method"].unique()))
    title = f"### Table 3: layer ablation ({meth}, {ds}; bold: better than w/o AU)"
    return title + "\n\n" + _md_table(["Layers", "CL", "CAM-COS", "ATT-COS (layer 5)"], rows)


def _lambda_fig(df, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    metrics = ["cl", "cam_cos", "att_cos"]
    au = df[df["au"]]
    mean, std, _n = _agg(au, ["lam"], metrics)
    vanilla = df[~df["au"]][metrics].mean() if (~df["au"]).any() else None
    mean.assign(**{f"{m}_std": std[m] for m in metrics}).to_csv(out / "fig5_lambda.csv")
    lams = list(mean.index)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax2 = ax.twinx()
    for m, color in (("cam_cos", "tab:red"), ("att_cos", "darkred")):
        ax.errorbar(lams, mean[m], yerr=std[m], color=color, marker="o", label=METRIC_TITLES[m], capsize=2)
        if vanilla is not None and math.isfinite(vanilla[m]):
            ax.axhline(vanilla[m], color=color, ls="--", lw=1, label=f"{METRIC_TITLES[m]} w/o AU")
    ax2.errorbar(lams, mean["cl"], yerr=std["cl"], color="tab:green", marker="s", label="CL", capsize=2)
    if vanilla is not None and math.isfinite(vanilla["cl"]):
        ax2.axhline(vanilla["cl"], color="tab:green", ls="--", lw=1, label="CL w/o AU")
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel("localisation (cosine)", color="tab:red")
    ax2.set_ylabel("CL (%)", color="tab:green")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    ds = ", ".join(sorted(df["dataset"].unique()))
    ax.set_title(f"Fig. 5: impact of λ ({ds}, test)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "fig5_lambda.png", dpi=120)
    rows = [[f"{lam:g}"] + [_fmt(mean.loc[lam, m], std.loc[lam, m], 1, m) for m in metrics] for lam in lams]
    if vanilla is not None:
        rows.insert(0, ["w/o AU"] + [_fmt(vanilla[m], 0, 1, m) for m in metrics])
    return "### Fig. 5 data: λ ablation (fig5_lambda.png)\n\n" + _md_table(["λ", "CL", "CAM-COS", "ATT-COS"], rows)


def build_report(experiment: str = "fer-orch", uri: str | None = None, out: str | Path | None = None,
                 log: bool = True) -> Report:
    """Rebuild the tables and figures of ``experiment`` into ``out`` (see module docstring)."""
    uri = tracking.resolve_uri(uri)
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise FerOrchError(
            f"no MLflow experiment '{experiment}' in {uri}; run `fer-orch grid` first or pass --experiment/--tracking-uri"
        )
    out = Path(out) if out is not None else paths.home() / "report" / experiment
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# fer-orch report: experiment `{experiment}`\n\nMLflow store: `{uri}`"]
    files: list[Path] = []
    counts: dict[str, int] = {}
    parent_ids = []
    parent, runs = tracking.study_runs(exp.experiment_id, "grid", uri)
    counts["grid"] = len(runs)
    deltas_all: dict = {}
    if runs:
        parent_ids.append(parent.info.run_id)
        df = runs_frame(runs)
        lam = parent.data.tags.get("lambda", "?")
        src = parent.data.tags.get("lambda_source", "")
        parts.append(f"Main grid: {len(runs)} finished trials, λ = {lam} ({src}). CL in %, cosines in [0, 1]; "
                     "mean ± std over seeds; bold: the better of w/o and w/ AU.")
        md, d1 = _au_table(df, ["cl", "cam_cos"], "Table 1: classification (CL) and CAM localisation (CAM-COS), test",
                           out, "table1")
        parts.append(md)
        md, d2 = _au_table(df, ["att_cos"], "Table 2: attention localisation (ATT-COS), test", out, "table2")
        parts.append(md)
        deltas_all = {**d1, **d2}
        gt = df[["gt_cam_cos", "gt_att_cos"]].notna().to_numpy().any() and (df[["gt_cam_cos", "gt_att_cos"]].fillna(0) != 0).to_numpy().any()
        if gt:
            md, _ = _au_table(df, ["gt_cam_cos", "gt_att_cos"],
                              "Table 1b: localisation against the truly active AUs (synthetic ground truth), test",
                              out, "table1b_gt")
            parts.append(md)
        if _deltas_png(deltas_all, out / "deltas.png"):
            parts.append("![where AU helped](deltas.png)")
    else:
        parts.append("No finished main-grid trials (run `fer-orch grid`).")
    parent_l, runs_l = tracking.study_runs(exp.experiment_id, "layers", uri)
    counts["layers"] = len(runs_l)
    if runs_l:
        parent_ids.append(parent_l.info.run_id)
        parts.append(_layers_table(runs_frame(runs_l), out))
    else:
        parts.append("No finished layer-ablation trials (run `fer-orch ablate layers`).")
    parent_f, runs_f = tracking.study_runs(exp.experiment_id, "lambda", uri)
    counts["lambda"] = len(runs_f)
    if runs_f:
        parent_ids.append(parent_f.info.run_id)
        parts.append(_lambda_fig(runs_frame(runs_f), out))
        parts.append("![Fig. 5](fig5_lambda.png)")
    else:
        parts.append("No finished λ-ablation trials (run `fer-orch ablate lambda`).")
    markdown = "\n\n".join(parts) + "\n"
    (out / "report.md").write_text(markdown)
    files = sorted(p for p in out.iterdir() if p.is_file())
    report = Report(out, markdown, files, parent_ids[0] if parent_ids else None, counts)
    if log:
        for pid in dict.fromkeys(parent_ids):
            tracking.log_to_run(pid, out, "report", uri=uri)
    return report
