"""``layers``: paper 002's Table 3, which layers to align with the AU map.

The ablation method (CAM) on one dataset, for each set of aligned layers of
``GridConfig.layer_sets`` (layer 1 is the input layer; "5+4" aligns layers 5 and 4), at
the λ the driver chose, plus the w/o-AU model.

Report section: CL, CAM-COS and ATT-COS at layer 5 per set of aligned layers, in the
paper's row order, with each set's paired difference to the w/o-AU model (95% t interval
over seeds; scores in bold only where it excludes 0, "n.s." otherwise) in
``table3_layers.csv``; the ablations run ``GridConfig.ablation_seeds``; on RAF-DB,
the same rows beside paper 002's Table 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from fer_models.config import parse_layers
from orchestrator.config import PAPER_LAYER_SETS
from orchestrator.registry import STUDIES
from orchestrator.studies._base import Ablation
from orchestrator.tables import (
    CI_LEGEND, against_paper, agg, delta_cell, fmt, mark, md_table, paired, published_value,
)


@STUDIES.register("layers")
class LayerAblation(Ablation):
    """Table 3: align layers 1..5, 5+4, ..., 5+4+3+2+1 (CAM, one dataset, the chosen λ)."""

    order = 3
    missing = "No finished layer-ablation trials (run `fer-orch ablate layers`)."

    def variants(self, g, lam: float) -> Iterable[dict[str, Any]]:
        return ({"lam": lam, "layers": list(parse_layers(spec))} for spec in g.layer_sets)

    def report(self, parent, df, out: Path) -> list[str]:
        import pandas as pd


        metrics = ["cl", "cam_cos", "att_cos_5"]
        mean, std, n = agg(df, ["au", "layers"], metrics)
        order = [(False, None)] + [(True, s) for s in PAPER_LAYER_SETS]
        extra = sorted({(True, lay) for au, lay in mean.index if au} - set(order))
        rows, csv_rows = [], []
        vanilla = df[~df["au"]]
        for au, lay in order + extra:
            key = (au, lay) if au else next((k for k in mean.index if not k[0]), None)
            if key is None or key not in mean.index:
                continue
            vals = [(mean.loc[key, m], std.loc[key, m], int(n.loc[key, m])) for m in metrics]
            label = "w/o AU" if not au else f"w/ AU at {lay}"
            cells = [fmt(*v, m) for v, m in zip(vals, metrics)]
            diffs = [None] * len(metrics)
            if au and not vanilla.empty:  # paired with the w/o-AU model of the same seed
                runs = df[df["au"] & (df["layers"] == lay)]
                diffs = [paired(vanilla, runs, m) for m in metrics]
                cells = [mark(c, d, higher=True) for c, d in zip(cells, diffs)]
            rows.append([label] + cells + [delta_cell(d) if d is not None else "–" for d in diffs])
            csv_rows.append({"au": au, "layers": lay if au else "", **{f"{m}_mean": v[0] for m, v in zip(metrics, vals)},
                             **{f"{m}_std": v[1] for m, v in zip(metrics, vals)}, "n": vals[0][2],
                             **{f"{m}_delta": d.mean for m, d in zip(metrics, diffs) if d is not None},
                             **{f"{m}_delta_low": d.low for m, d in zip(metrics, diffs) if d is not None},
                             **{f"{m}_delta_high": d.high for m, d in zip(metrics, diffs) if d is not None}})
        pd.DataFrame(csv_rows).to_csv(out / "table3_layers.csv", index=False)
        ds = ", ".join(sorted(df["dataset"].unique()))
        meth = ", ".join(sorted(df["method"].unique()))
        title = f"### Table 3: layer ablation ({meth}, {ds}; bold: better than w/o AU, 95% CI excluding 0)"
        header = ["Layers", "CL", "CAM-COS", "ATT-COS (layer 5)", "ΔCL [95% CI]", "ΔCAM-COS [95% CI]",
                  "ΔATT-COS (layer 5) [95% CI]"]
        parts = [title + "\n\n" + md_table(header, rows) + "\n\n" + CI_LEGEND]
        return parts + table3_vs_paper(df)


def table3_vs_paper(df) -> list[str]:
    """Table 3 (CL, CAM-COS per set of aligned layers) beside paper 002's, for CAM on a paper dataset."""

    return against_paper(
        df[df["method"] == "cam"], "Table 3 against paper 002 ({d}, test)", ["Layers"], ("cl", "cam_cos"),
        ["au", "layers"], lambda k: [f"w/ AU at {k[1]}" if k[0] else "w/o AU"],
        lambda d, metric, k: published_value("3", d, "cam", metric, k[0], k[1] if k[0] else ""))
