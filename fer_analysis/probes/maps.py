"""2-D maps of each layer: PCA and UMAP, coloured by identity and by expression (paper 004, Studies 1-2, Figs. 2-3).

One grid PNG: rows are layers, columns (PCA, UMAP) x (identity, expression); titles carry
the silhouette of the 2-D map (the paper quotes those under its Figs. 2-3).

Cost: UMAP dominates the whole probe job. Choices (umap-learn defaults otherwise, as the
paper does not give its settings): rows are first reduced to 50 PCs (the usual practice,
it makes the k-NN graph cheap on wide layers), at most ``umap_max_samples`` (2,000) rows
are embedded (a seeded random subset, shown in the plot), and ``umap_n_epochs`` (200) is
fixed so that the time does not jump when N crosses umap-learn's 10,000-row threshold.
``umap=False`` draws PCA only. With ``control`` (paper 004's untrained NN3) the same maps of
the untrained network go to ``maps_untrained.png`` (Fig. 3c is its penultimate layer's UMAP)
and the CSV's ``network`` column tells the two apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fer_analysis.embeddings import Embeddings
from fer_analysis.plots_probe import plot_maps
from fer_analysis.probes._base import ProbeResult, metric_key, networks, pca_project, write_csv
from fer_analysis.probes.silhouette import silhouette
from fer_analysis.registry import PROBES


def umap_2d(x: np.ndarray, *, n_epochs: int = 200, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    import umap  # heavy import (numba), only when a map is asked for

    z, _ = pca_project(x, 50, seed)
    if z.shape[0] <= 3:
        return np.zeros((z.shape[0], 2))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, z.shape[0] - 1),
        min_dist=0.1,
        n_epochs=n_epochs,
        random_state=seed,
        n_jobs=1,  # a seed makes umap-learn single-threaded anyway; saying so silences its warning
        init="spectral" if z.shape[0] > 10 else "random",
    )
    return np.asarray(reducer.fit_transform(z))


def layer_maps(emb: Embeddings, *, umap: bool, umap_max_samples: int, umap_n_epochs: int, seed: int):
    """(coords, rows_idx, scores, table) of every layer of ``emb``: its PCA map, its UMAP map on
    a seeded subset of at most ``umap_max_samples`` rows, and their 2-D silhouettes."""
    rng = np.random.default_rng(seed)
    all_idx = np.arange(emb.n)
    sub = np.sort(rng.choice(emb.n, umap_max_samples, replace=False)) if emb.n > umap_max_samples else all_idx
    coords: dict[str, dict[str, np.ndarray]] = {}
    rows_idx: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, dict[str, float]] = {}
    table = []
    for name, x in tqdm(list(emb.layers.items()), desc="maps", unit="layer", leave=False):
        pca2, _ = pca_project(x, 2, seed)
        if pca2.shape[1] == 1:
            pca2 = np.c_[pca2, np.zeros(len(pca2))]
        coords[name] = {"pca": pca2}
        rows_idx[name] = {"pca": all_idx}
        row = {"layer": name,
               "pca2_identity": silhouette(pca2, emb.identity, seed=seed),
               "pca2_expression": silhouette(pca2, emb.label, seed=seed)}
        if umap:
            u = umap_2d(x[sub], n_epochs=umap_n_epochs, seed=seed)
            coords[name]["umap"] = u
            rows_idx[name]["umap"] = sub
            row["umap_identity"] = silhouette(u, emb.identity[sub], seed=seed)
            row["umap_expression"] = silhouette(u, emb.label[sub], seed=seed)
        scores[name] = {"pca_identity": row["pca2_identity"], "pca_expression": row["pca2_expression"],
                        "umap_identity": row.get("umap_identity"), "umap_expression": row.get("umap_expression")}
        table.append(row)
    return coords, rows_idx, scores, table, len(sub)


@PROBES.register("maps", paper="004 Studies 1-2")
def maps_probe(
    emb: Embeddings,
    out_dir: Path,
    *,
    control: Embeddings | None = None,
    umap: bool = True,
    umap_max_samples: int = 2000,
    umap_n_epochs: int = 200,
    seed: int = 0,
    title: str = "",
    **_: Any,
) -> ProbeResult:
    """PCA and UMAP maps per layer by identity and expression, and the control's (paper 004, Figs. 2-3).

    With ``control`` (the untrained network) its maps go to ``maps_untrained.png`` (Fig. 3c)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = ProbeResult()
    table = []
    for net, e in networks(emb, control):
        coords, rows_idx, scores, rows, n_umap = layer_maps(e, umap=umap, umap_max_samples=umap_max_samples,
                                                            umap_n_epochs=umap_n_epochs, seed=seed)
        suffix = "" if net == "trained" else "untrained"
        for r in rows:
            table.append({"network": net, **r})
            if umap:
                res.metrics[metric_key("umap_silhouette_identity", r["layer"], suffix)] = r["umap_identity"]
        head = title or f"{e.n} samples" + (f" (UMAP on {n_umap})" if umap else "")
        res.files.append(plot_maps(coords, rows_idx, e.identity, e.label, scores,
                                   out_dir / ("maps.png" if net == "trained" else "maps_untrained.png"),
                                   head if net == "trained" else f"untrained control: {head}"))
    res.tables["maps"] = table
    res.files.append(write_csv(out_dir / "maps_silhouette_2d.csv", table))
    return res
