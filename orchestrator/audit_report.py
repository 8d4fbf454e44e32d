"""The audited models' section of ``fer-orch report``: one row per model, with uncertainty.

Rows come from the experiment's ``fer-orch audit`` runs (tag ``fer_orch.kind`` = ``audit``),
the latest per (model, dataset). A zoo model is one network: its cells are the audit's own
intervals, the 95% Wilson interval of CL over the test faces and the 95% Student t interval of
each mean over the faces (CAM-COS) or over the faithfulness subset (deletion, insertion). A
grid method audited with ``--run`` is several trained networks (one per seed): its row is the
mean over seeds with a 95% t interval over the seeds (``fer_analysis.audit.mean_ci``), the
replication a training seed adds, as the grid's own tables report it.

Beside the table, ``audit_mean_maps.png``: per class, the mean AU map of the test faces and
each model's mean map of the true class (``mean_maps.npz`` of the audit runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import tracking
from orchestrator.tables import dataset_order, md_table

#: (metric key, column title) of the table
COLUMNS = (("cl", "CL (%)"), ("cam_cos", "CAM-COS"), ("released_cam_cos", "CAM-COS (released)"),
           ("gt_cam_cos", "CAM-COS vs labelled AUs"), ("deletion_cam", "deletion ↓"), ("insertion_cam", "insertion ↑"))
LEGEND = ("Zoo model (one network): 95% Wilson interval of CL over the test faces, 95% t interval of each mean "
          "over the faces. Grid method (several seeds, audited with `fer-orch audit --run`): mean over seeds with "
          "the 95% t interval over seeds (n = seeds). CAM-COS: cosine of the true class's Grad-CAM-family map with "
          "the AU map (project definition: the stored map; released: rendered at the input's size); deletion / "
          "insertion: area under the true class's probability as the map's pixels are removed / restored.")


def audit_runs_frame(experiment_id: str, uri: str | None = None):
    """One row per latest FINISHED audit run per (model, dataset): tags and metrics."""
    import pandas as pd

    from orchestrator.tracking.layout import KIND_TAG
    from orchestrator.tracking.store import search_all

    c = tracking.client(uri)
    runs = search_all(c, experiment_id, f"tags.`{KIND_TAG}` = 'audit' and attributes.status = 'FINISHED'")
    rows = []
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        t = r.data.tags
        rows.append({"run_id": r.info.run_id, "model": t.get("model"), "group": t.get("group", t.get("model")),
                     "dataset": t.get("dataset"), "zoo": t.get("zoo", "true") == "true", "seed": t.get("seed"),
                     **r.data.metrics})
    df = pd.DataFrame(rows)
    return df.drop_duplicates(["model", "dataset"], keep="last") if len(df) else df


def _cell(row: Any, key: str, digits: int) -> str:
    v = row.get(key, math.nan)
    if v is None or not math.isfinite(v):
        return "–"
    lo, hi = row.get(f"{key}_ci_low", math.nan), row.get(f"{key}_ci_high", math.nan)
    s = f"{v:.{digits}f}"
    return s + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if math.isfinite(lo) and math.isfinite(hi) else "")


def _group_cell(values, digits: int) -> str:
    from fer_analysis.audit import mean_ci

    iv = mean_ci(values)
    return iv.format(digits) + (f" (n={iv.n})" if math.isfinite(iv.low) else "")


def model_table(df) -> list[list[str]]:
    """Rows ``[dataset, model, n, cells...]``: zoo models by their own intervals, grid groups over seeds."""

    rows = []
    for d in dataset_order(df["dataset"].dropna()):
        sub = df[df["dataset"] == d]
        for group in sorted(sub["group"].unique(), key=lambda g: (not sub[sub["group"] == g]["zoo"].iloc[0], g)):
            g = sub[sub["group"] == group]
            digits = lambda k: 1 if k == "cl" else 3  # noqa: E731
            if len(g) == 1 and g["zoo"].iloc[0]:
                r = g.iloc[0].to_dict()
                cells = [_cell(r, k, digits(k)) for k, _ in COLUMNS]
                n = f"{int(r.get('test_n', 0))} faces"
            else:
                cells = [_group_cell(g[k].to_numpy(float) if k in g else [], digits(k)) for k, _ in COLUMNS]
                n = f"{len(g)} seeds"
            rows.append([d, group, n, *cells])
    return rows


def mean_maps_figure(df, out: Path, uri: str | None = None) -> Path | None:
    """Per class (columns): the mean AU map, then each model's mean map of the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_models.figures import save_figure
    from fer_models.labels import class_names

    c = tracking.client(uri)
    maps: dict[str, list[np.ndarray]] = {}
    au = None
    for _, r in df.iterrows():
        try:
            z = np.load(c.download_artifacts(r["run_id"], "mean_maps.npz"))
        except Exception:  # noqa: BLE001 - an audit without maps (a TorchScript model): no row
            continue
        if "cam" not in z:
            continue
        maps.setdefault(f"{r['group']} ({r['dataset']})", []).append(z["cam"])
        au = z["au"] if au is None and "au" in z else au
    if not maps or au is None:
        return None
    rows = [("AU map (mean)", au)] + [(k, np.mean(v, 0)) for k, v in maps.items()]
    k = au.shape[0]
    fig, axes = plt.subplots(len(rows), k, figsize=(1.2 * k + 1.6, 1.25 * len(rows)), squeeze=False)
    for i, (name, m) in enumerate(rows):
        for j in range(k):
            ax = axes[i, j]
            ax.imshow(m[j], cmap="jet", vmin=0, vmax=max(float(m[j].max()), 1e-6))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(class_names(k)[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=0.2, right=0.99, top=0.9, bottom=0.02, wspace=0.05, hspace=0.08)
    return save_figure(fig, out / "audit_mean_maps.png")


def audit_section(experiment_id: str, out: Path, uri: str | None = None) -> list[str]:
    """The report's "Audited models" section (empty when the experiment has no audit run)."""

    df = audit_runs_frame(experiment_id, uri)
    if not len(df):
        return []
    rows = model_table(df)
    header = ["dataset", "model", "n", *[t for _, t in COLUMNS]]
    table = md_table(header, rows)
    import csv

    with open(out / "audit_models.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    parts = ["## Audited models (`fer-orch audit`)\n\n" + table + "\n\n" + LEGEND]
    fig = mean_maps_figure(df, out, uri)
    if fig is not None:
        parts.append(f"![per-class mean maps of the audited models beside the AU maps]({fig.name})")
    return parts
