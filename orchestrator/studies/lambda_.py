"""``lambda``: paper 002's Fig. 5, the impact of λ (Eq. 3) on classification and localisation.

The ablation method (CAM) on one dataset at the grid's aligned layers, for each λ of
``GridConfig.lambdas`` (the paper presets: Fig. 5's 0.01, 0.1 and 1..20), plus the w/o-AU
model. It runs first: the driver chooses the λ of
the other studies on its *validation* results (:func:`orchestrator.tuning.choose_lambda`).

Report section: CAM-COS and ATT-COS (left axis) and CL (right axis) against λ on test,
the w/o-AU model as dashed lines (``fig5_lambda.png``), and the same numbers as a table
with each λ's paired difference to the w/o-AU model (95% t interval over
``GridConfig.ablation_seeds``; "n.s." where it contains 0, always with one seed); on
RAF-DB, the same points beside the values read off paper 002's Fig. 5.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Iterable

from fer_models.figures import save_figure
from orchestrator.registry import STUDIES
from orchestrator.studies._base import Ablation
from orchestrator.tables import (
    CI_LEGEND, METRIC_TITLES, against_paper, agg, delta_cell, fmt, mark, md_table, paired,
    published_value,
)


@STUDIES.register("lambda")
class LambdaAblation(Ablation):
    """Fig. 5: λ from 0.01 to 20 (CAM, layer 5, one dataset); chooses λ on validation."""
    ignores: ClassVar[dict[str, str]] = {
        **Ablation.ignores, "lam": "the λ ablation trains every value of `lambdas` (set them in a --config file)"}

    order = 5
    runs_first = True
    missing = "No finished λ-ablation trials (run `fer-orch ablate lambda`)."

    def variants(self, g, lam: float) -> Iterable[dict[str, Any]]:
        return ({"lam": float(value), "layers": list(g.layers)} for value in g.lambdas)

    def report(self, parent, df, out: Path) -> list[str]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt


        metrics = ["cl", "cam_cos", "att_cos"]
        au = df[df["au"]]
        mean, std, n = agg(au, ["lam"], metrics)
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
        wo = df[~df["au"]]
        rows = []
        for lam in lams:
            cells = [fmt(mean.loc[lam, m], std.loc[lam, m], int(n.loc[lam, m]), m) for m in metrics]
            diffs = [paired(wo, au[au["lam"] == lam], m) if not wo.empty else None for m in metrics]
            rows.append([f"{lam:g}"] + [mark(c, d, higher=True) for c, d in zip(cells, diffs)]
                        + [delta_cell(d) if d is not None else "–" for d in diffs])
        if vanilla is not None:
            wmean, wstd, wn = agg(wo.assign(k=0), ["k"], metrics)
            rows.insert(0, ["w/o AU"] + [fmt(wmean.loc[0, m], wstd.loc[0, m], int(wn.loc[0, m]), m) for m in metrics]
                        + ["–"] * len(metrics))
        header = ["λ", "CL", "CAM-COS", "ATT-COS", "ΔCL [95% CI]", "ΔCAM-COS [95% CI]", "ΔATT-COS [95% CI]"]
        table = ("### Fig. 5 data: λ ablation (fig5_lambda.png; bold: better than w/o AU, 95% CI excluding 0)\n\n"
                 + md_table(header, rows) + "\n\n" + CI_LEGEND)
        return [table, "![Fig. 5](fig5_lambda.png)"] + fig5_vs_paper(df)


def fig5_vs_paper(df) -> list[str]:
    """Fig. 5's points (CL, CAM-COS, ATT-COS per λ; w/o AU) beside the values read off the paper's figure."""

    return against_paper(
        df[df["method"] == "cam"], "Fig. 5 against paper 002 ({d}, test; paper values read off the figure)", ["λ"],
        ("cl", "cam_cos", "att_cos"), ["au", "lam"], lambda k: [f"{k[1]:g}" if k[0] else "w/o AU"],
        lambda d, metric, k: published_value("fig5", d, "cam", metric, k[0], lam=k[1] if k[0] else None))
