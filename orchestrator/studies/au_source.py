"""``au-source``: which AUs the training map should show (paper 002, Sec. 2's next step).

Paper 002 draws every image's AU map from its expression's codebook entry. This study trains
the ablation method (CAM, or the methods given with ``ablate au-source --methods``) with each
AU source of ``GridConfig.au_sources`` (``DataConfig.au_source``: ``codebook``, ``labels``,
``codebook+labels``; ``detector:NAME`` when listed) plus the w/o-AU model, for every seed of
``GridConfig.seeds``, on the ablation dataset and, when that is ``synthetic-rafdb``, on its
planted-shortcut variant ``synthetic-rafdb-shortcut`` (a corner colour predicts the
expression in train, random in test), at the λ the driver chose and the grid's layers.

It is not part of ``fer-orch grid`` (``in_grid = False``): run it with
``fer-orch ablate au-source`` (``make au-source``); ``fer-orch report`` adds its section
whenever its runs exist.

Report section, per dataset: CL, CAM-COS / ATT-COS against the codebook map (paper 002's
metric), GT CAM-COS / GT ATT-COS against the map of the truly active AUs, and the deletion /
insertion AUC of the CAM and the layer-5 attention (``fer_models.faithfulness``; deletion
lower = more faithful, insertion higher), mean ± sd over seeds; then every row's paired
difference to the codebook row with its 95% t interval over seeds
(``fer_analysis.stats.paired_difference``; "n.s." where it contains 0). CSV:
``au_source.csv``. :func:`faithfulness_table` is the faithfulness table beside Table 1.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Iterator

from orchestrator.registry import STUDIES
from orchestrator.studies._base import Ablation
from orchestrator.tables import dataset_order, md_table, method_order, paired

SHORTCUT = "synthetic-rafdb-shortcut"
#: columns of the study's table: (frame column, title, better)
COLUMNS = (("cl", "CL", "up"), ("cam_cos", "CAM-COS", "up"), ("att_cos", "ATT-COS", "up"),
           ("gt_cam_cos", "GT CAM-COS", "up"), ("gt_att_cos", "GT ATT-COS", "up"),
           ("deletion_cam", "Del CAM ↓", "down"), ("insertion_cam", "Ins CAM ↑", "up"),
           ("deletion_att", "Del ATT ↓", "down"), ("insertion_att", "Ins ATT ↑", "up"))
FAITHFULNESS = ("deletion_cam", "insertion_cam", "deletion_att", "insertion_att")
W_O = "w/o AU"


def study_datasets(g: Any) -> tuple[str, ...]:
    """The ablation dataset, and its shortcut variant when it is synthetic-rafdb."""
    ds = g.ablation_on()
    return (ds, SHORTCUT) if ds == "synthetic-rafdb" else (ds,)


@STUDIES.register("au-source")
class AUSourceStudy(Ablation):
    """AU map from the codebook, the image's labelled AUs, or both (CAM, with the shortcut variant)."""

    ignores: ClassVar[dict[str, str]] = {}  # --methods picks the methods compared

    order = 4
    in_grid: ClassVar[bool] = False
    missing = "No AU-source study runs (optional: `fer-orch ablate au-source`, `make au-source`)."

    def variants(self, g, lam: float):
        return ({"lam": lam, "layers": list(g.layers), "data": {"au_source": s}} for s in g.au_sources)

    def configs(self, g, lam: float) -> Iterator:
        methods = getattr(g, "au_source_methods", None) or (g.ablation_method,)
        for ds in study_datasets(g):
            for m in methods:
                for seed in g.seeds:
                    yield g.train_config(m, ds, au=False, seed=seed)
                    for fields in self.variants(g, lam):
                        yield g.train_config(m, ds, au=True, seed=seed, **fields)

    def report(self, parent, df, out: Path) -> list[str]:
        return source_tables(df, out)


def _row_key(au: bool, source: str) -> str:
    return source if au else W_O


def source_tables(df, out: Path) -> list[str]:
    """The study's tables (module docstring) from :func:`orchestrator.tables.runs_frame`'s rows."""
    import pandas as pd

    from fer_analysis.stats import mean_sd

    df = df.copy()
    if "au_source" not in df:
        df["au_source"] = "codebook"
    df["source"] = [_row_key(a, s) for a, s in zip(df["au"], df["au_source"].fillna("codebook"))]
    cols = [c for c, _, _ in COLUMNS if c in df]
    parts, csv_rows = [], []
    for (method, ds) in sorted({(m, d) for m, d in zip(df["method"], df["dataset"])},
                               key=lambda k: (dataset_order(df["dataset"]).index(k[1]), k[0])):
        sub = df[(df["method"] == method) & (df["dataset"] == ds)]
        by_seed = dict(tuple(sub.groupby("source")))
        order = [W_O] + [s for s in ("codebook", "labels", "codebook+labels") if s in by_seed] + \
            sorted(set(by_seed) - {W_O, "codebook", "labels", "codebook+labels"})
        rows, deltas = [], []
        ref = by_seed.get("codebook")
        for src in order:
            if src not in by_seed:
                continue
            g = by_seed[src]
            cells, rec = [], {"method": method, "dataset": ds, "source": src, "n": len(g)}
            for c in cols:
                mean, sd, n = mean_sd(g[c].to_numpy())
                cells.append("–" if not math.isfinite(mean) else f"{mean:.2f} ± {sd:.2f}" if n > 1 else f"{mean:.2f}")
                rec[f"{c}_mean"], rec[f"{c}_sd"] = mean, sd
            rows.append([src, str(len(g))] + cells)
            if ref is not None and src != "codebook":
                diffs = [paired(ref, g, c) for c in cols]  # paired by seed
                for c, d in zip(cols, diffs):
                    rec[f"{c}_delta"], rec[f"{c}_low"], rec[f"{c}_high"] = d.mean, d.low, d.high
                pairs = len(set(g["seed"]) & set(ref["seed"]))
                deltas.append([f"{src} − codebook", str(pairs)] + [d.format() for d in diffs])
            csv_rows.append(rec)
        titles = [t for c, t, _ in COLUMNS if c in cols]
        parts.append(f"### AU source ({method}, {ds}; mean ± sd over seeds)\n\n"
                     + md_table(["AU map", "seeds"] + titles, rows))
        if deltas:
            parts.append(f"Paired difference to the codebook map ({method}, {ds}; mean [95% t CI over seeds], "
                         f"n.s.: the interval contains 0)\n\n" + md_table(["Δ", "pairs"] + titles, deltas))
    pd.DataFrame(csv_rows).to_csv(out / "au_source.csv", index=False)
    note = ("CAM-COS / ATT-COS: cosine with the codebook map (paper 002); GT: with the map of the truly active "
            "AUs; Del / Ins: deletion (lower: more faithful) and insertion (higher) AUC of the true class's "
            "probability (fer_models.faithfulness). synthetic-rafdb-shortcut: corner colours predict the "
            "expression in train, random in test.")
    return ["## AU source of the training map\n\n" + note] + parts


def faithfulness_table(df, out: Path) -> list[str]:
    """Faithfulness beside Table 1: deletion / insertion AUC of the CAM and the layer-5
    attention per method and dataset, w/o and w/ AU (mean ± sd), and the paired w/ − w/o
    difference with its 95% t interval over seeds. Empty when no run logged them."""
    import pandas as pd

    from fer_analysis.stats import mean_sd

    have = [c for c in FAITHFULNESS if c in df and df[c].notna().any()]
    if not have:
        return []
    rows, csv_rows = [], []
    for ds in dataset_order(df["dataset"]):
        for m in method_order(df.loc[df["dataset"] == ds, "method"]):
            sub = df[(df["dataset"] == ds) & (df["method"] == m)]
            runs_wo, runs_w = sub[sub["au"] == False], sub[sub["au"] == True]  # noqa: E712 (a column)
            wo, w = (r.groupby("seed")[have].mean() for r in (runs_wo, runs_w))
            cells = []
            for c in have:
                a, sa, na = mean_sd(wo[c].to_numpy()) if len(wo) else (math.nan, math.nan, 0)
                b, sb, nb = mean_sd(w[c].to_numpy()) if len(w) else (math.nan, math.nan, 0)
                d = paired(runs_wo, runs_w, c)  # paired by seed
                fm = lambda x, s: "–" if not math.isfinite(x) else f"{x:.2f} ± {s:.2f}"  # noqa: E731
                cells += [fm(a, sa), fm(b, sb), d.format()]
                csv_rows.append({"dataset": ds, "method": m, "metric": c, "wo_mean": a, "w_mean": b,
                                 "delta": d.mean, "low": d.low, "high": d.high, "pairs": d.n})
            rows.append([m, ds] + cells)
    pd.DataFrame(csv_rows).to_csv(out / "faithfulness.csv", index=False)
    head = ["Method", "Dataset"]
    for c in have:
        t = dict((k, v) for k, v, _ in COLUMNS)[c]
        head += [f"{t} w/o", f"{t} w/", "Δ [95% CI]"]
    return ["### Faithfulness beside Table 1 (deletion: lower is more faithful; insertion: higher; "
            "Δ = w/ − w/o AU, paired over seeds)\n\n" + md_table(head, rows)]
