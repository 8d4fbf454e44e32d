"""Silhouette curves across layers (paper 004, Study 3, Fig. 4).

Per layer: project the embedding on its first ``n_pcs`` principal components (10 in the
paper: "the 10 PCs explain more than 60% of the variance ... we treat the remaining PCs
as noise"), then the mean silhouette (Euclidean distance) of the samples with respect to
identity labels and, separately, to expression labels. Rows with unknown labels
(identity -1) are left out of that score and counted.

Departure: silhouette is O(N^2); above ``max_samples`` (5,000) rows it is computed on a
seeded random subset (scikit-learn's ``sample_size``), which estimates the same mean.
The PCA is fitted on all rows. With ``control`` (the same architecture untrained, paper
004's NN3) both networks' curves go on one plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import silhouette_score

from fer_analysis.embeddings import Embeddings
from fer_analysis.plots_probe import plot_silhouette_curves
from fer_analysis.probes._base import ProbeResult, metric_key, pca_project, write_csv
from fer_analysis.registry import PROBES


def silhouette(z: np.ndarray, labels: np.ndarray, *, max_samples: int = 5000, seed: int = 0) -> float:
    """Mean silhouette of rows ``z`` under ``labels`` (negatives = unknown, left out); NaN if undefined."""
    labels = np.asarray(labels)
    keep = labels >= 0
    z, labels = z[keep], labels[keep]
    n_labels = len(np.unique(labels))
    if n_labels < 2 or n_labels > len(labels) - 1:
        return float("nan")
    size = max_samples if len(labels) > max_samples else None
    return float(silhouette_score(z, labels, metric="euclidean", sample_size=size, random_state=seed))


def silhouette_curve(
    emb: Embeddings, *, n_pcs: int = 10, max_samples: int = 5000, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per layer: ``layer, identity, expression, explained_variance, n_pcs, n_identity, n_expression``."""
    rows = []
    for name, x in emb.layers.items():
        z, evr = pca_project(x, n_pcs, seed)
        rows.append(
            {
                "layer": name,
                "identity": silhouette(z, emb.identity, max_samples=max_samples, seed=seed),
                "expression": silhouette(z, emb.label, max_samples=max_samples, seed=seed),
                "explained_variance": float(np.sum(evr)) * emb.variance_share(name),
                "n_pcs": int(z.shape[1]),
                "n_identity": int((emb.identity >= 0).sum()),
                "n_expression": int((emb.label >= 0).sum()),
            }
        )
    return rows


def crossover(rows: list[dict[str, Any]]) -> tuple[int, str]:
    """Index and name of the first layer whose expression silhouette exceeds its identity
    silhouette (where identity fades and expression emerges); (-1, "") if none."""
    for i, r in enumerate(rows):
        if np.isfinite(r["expression"]) and np.isfinite(r["identity"]) and r["expression"] > r["identity"]:
            return i, str(r["layer"])
    return -1, ""


@PROBES.register("silhouette", paper="004 Study 3")
def silhouette_probe(
    emb: Embeddings,
    out_dir: Path,
    *,
    control: Embeddings | None = None,
    n_pcs: int = 10,
    max_samples: int = 5000,
    seed: int = 0,
    title: str = "",
    **_: Any,
) -> ProbeResult:
    """Silhouette by identity and by expression per layer, on the first PCs (paper 004, Study 3)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {"trained": silhouette_curve(emb, n_pcs=n_pcs, max_samples=max_samples, seed=seed)}
    if control is not None:
        curves["untrained"] = silhouette_curve(control, n_pcs=n_pcs, max_samples=max_samples, seed=seed)
    res = ProbeResult()
    table = []
    for net, rows in curves.items():
        suffix = "" if net == "trained" else "untrained"
        for r in rows:
            table.append({"network": net, **r})
            res.metrics[metric_key("silhouette_identity", r["layer"], suffix)] = r["identity"]
            res.metrics[metric_key("silhouette_expression", r["layer"], suffix)] = r["expression"]
        idx, name = crossover(rows)
        res.metrics[metric_key("silhouette_crossover_index", suffix)] = float(idx)
        res.notes[f"crossover_{net}"] = name
    res.tables["silhouette"] = table
    res.files.append(write_csv(out_dir / "silhouette.csv", table))
    res.files.append(plot_silhouette_curves(curves, out_dir / "silhouette.png", title or f"Silhouette on {n_pcs} PCs"))
    return res
