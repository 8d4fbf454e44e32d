"""Faces along the axes of a layer's 2-D map (paper 004, Fig. 2d on UMAP, Fig. 6 on the PCs).

Paper 004 shows "21 equally spaced DISFA faces projected onto the X (UMAP1) and Y (UMAP2)
axis" of the penultimate layer's map, and the same on PC1 and PC2 (Fig. 6). The text gives
no rule; fer-orch reads "equally spaced" as equally spaced *values*: 21 points from the
smallest to the largest coordinate on the axis, and for each the probe-set face whose
coordinate is nearest. Faces therefore run left to right in increasing coordinate; where the
samples are sparse (the ends of an axis) the same face can stand at two neighbouring points,
which shows the gap instead of hiding it (equally spaced ranks would spread the faces evenly
over the samples instead).

Layer: the penultimate one (``Embeddings.penultimate``; ``dropout_4`` on the light CNN) unless
``layer`` is given. Axes: PC1, PC2 (``pca_project``; the sign follows scikit-learn's
convention, so the direction of an axis is not meaningful), and UMAP1, UMAP2 (the ``maps``
probe's UMAP, on the same seeded subset of at most ``umap_max_samples`` rows) unless
``umap=False``. Needs the probe set's pictures (``collect_embeddings(..., thumbnails=64)``).

Files: ``face_strips.png`` (one row per axis), ``face_strips.csv`` (axis, position, target
value, probe-set row, its coordinate, identity, expression) and ``face_coords.csv`` (every
row's coordinates on each axis, NaN outside the UMAP subset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_analysis.embeddings import Embeddings
from fer_analysis.plots_probe import plot_face_strips
from fer_analysis.probes._base import ProbeResult, pca_project, write_csv
from fer_analysis.probes.maps import umap_2d
from fer_analysis.registry import PROBES
from fer_models.errors import ConfigError

N_FACES = 21  # paper 004, Figs. 2d and 6


def along_axis(coord: np.ndarray, n: int = N_FACES) -> tuple[np.ndarray, np.ndarray]:
    """(targets, rows): ``n`` equally spaced values from the smallest to the largest of
    ``coord``, and the index of the coordinate nearest each (the first one on a tie)."""
    coord = np.asarray(coord, dtype=np.float64)
    targets = np.linspace(coord.min(), coord.max(), n)
    return targets, np.abs(coord[None, :] - targets[:, None]).argmin(axis=1)


def axes_of(emb: Embeddings, layer: str, *, umap: bool, umap_max_samples: int, umap_n_epochs: int,
            seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{axis name: (probe-set rows, coordinate of each)} for PC1, PC2 and (``umap``) UMAP1, UMAP2."""
    x = emb.layers[layer]
    pcs, _ = pca_project(x, 2, seed)
    if pcs.shape[1] == 1:
        pcs = np.c_[pcs, np.zeros(len(pcs))]
    rows = np.arange(emb.n)
    axes = {"PC1": (rows, pcs[:, 0]), "PC2": (rows, pcs[:, 1])}
    if umap:
        rng = np.random.default_rng(seed)  # the maps probe's subset
        sub = np.sort(rng.choice(emb.n, umap_max_samples, replace=False)) if emb.n > umap_max_samples else rows
        u = umap_2d(x[sub], n_epochs=umap_n_epochs, seed=seed)
        axes.update({"UMAP1": (sub, u[:, 0]), "UMAP2": (sub, u[:, 1])})
    return axes


@PROBES.register("faces", paper="004 Figs. 2d, 6")
def faces_probe(
    emb: Embeddings,
    out_dir: Path,
    *,
    control: Embeddings | None = None,
    layer: str | None = None,
    n_faces: int = N_FACES,
    umap: bool = True,
    umap_max_samples: int = 2000,
    umap_n_epochs: int = 200,
    seed: int = 0,
    title: str = "",
    **_: Any,
) -> ProbeResult:
    """21 faces equally spaced along PC1, PC2, UMAP1 and UMAP2 of the penultimate layer (paper 004, Figs. 2d, 6)."""
    if emb.images is None:
        raise ConfigError("the faces probe needs the probe set's pictures; collect the embeddings with thumbnails")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layer = layer or emb.penultimate()
    axes = axes_of(emb, layer, umap=umap, umap_max_samples=umap_max_samples, umap_n_epochs=umap_n_epochs, seed=seed)
    res = ProbeResult()
    table: list[dict[str, Any]] = []
    strips: dict[str, np.ndarray] = {}
    coords = {name: np.full(emb.n, np.nan) for name in axes}
    for name, (rows, coord) in axes.items():
        coords[name][rows] = coord
        targets, picks = along_axis(coord, n_faces)
        strips[name] = emb.images[rows[picks]]
        for pos, (t, p) in enumerate(zip(targets, picks)):
            r = int(rows[p])
            table.append({"axis": name, "position": pos, "target": float(t), "row": r, "coordinate": float(coord[p]),
                          "identity": int(emb.identity[r]), "expression": int(emb.label[r])})
    res.tables["faces"] = table
    res.notes["layer"] = layer
    res.files.append(write_csv(out_dir / "face_strips.csv", table))
    res.files.append(write_csv(out_dir / "face_coords.csv", [
        {"row": i, "identity": int(emb.identity[i]), "expression": int(emb.label[i]),
         **{name: float(c[i]) for name, c in coords.items()}} for i in range(emb.n)]))
    res.files.append(plot_face_strips(strips, out_dir / "face_strips.png",
                                      title or f"{n_faces} faces along the axes of '{layer}'"))
    return res
