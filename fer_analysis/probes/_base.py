"""What every probe shares: the result type, PCA projection, CSV writing, metric names.

A probe is a function registered in ``fer_analysis.registry.PROBES``::

    @PROBES.register("name")
    def probe(emb: Embeddings, out_dir: Path, *, control: Embeddings | None = None,
              seed: int = 0, **options) -> ProbeResult

``emb`` holds the trained network's layer embeddings, ``control`` (optional) the same
architecture untrained (paper 004's NN3). The probe writes its PNG/CSV files into
``out_dir`` and returns them with scalar metrics and its tables (rows of dicts).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA


@dataclass
class ProbeResult:
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def networks(emb: Any, control: Any = None) -> list[tuple[str, Any]]:
    """``("trained", emb)`` and, when the untrained control was embedded, ``("untrained",
    control)``: the networks a probe that also draws the control (paper 004's NN3) runs on."""
    return [(net, e) for net, e in (("trained", emb), ("untrained", control)) if e is not None]


def metric_key(*parts: str) -> str:
    """MLflow-safe metric name: ``silhouette_identity_layer1.0`` (odd characters become ``_``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", p) for p in parts if p)


def pca_project(x: np.ndarray, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` on their first ``n_components`` principal components.

    Returns (projection (N, k), explained variance ratio (k,)); k is capped by the rank
    bound min(N, D). Exact (no randomized SVD), so that a layer's PCs do not depend on
    whether it was stored flattened or as its exact PC scores (``fer_analysis.embeddings``). The sign of each component follows scikit-learn's convention (the
    loading with the largest magnitude is positive), so it is deterministic but not
    otherwise meaningful.
    """
    x = np.asarray(x, dtype=np.float64)
    k = int(max(1, min(n_components, x.shape[0], x.shape[1])))
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if float(x.std(axis=0).max(initial=0.0)) == 0.0:  # a constant layer (e.g. dead ReLUs)
        return np.zeros((x.shape[0], k)), np.zeros(k)
    # exact solvers (scikit-learn's default turns randomized above 500 columns): the covariance
    # eigendecomposition when rows outnumber columns, the full SVD otherwise
    solver = "covariance_eigh" if x.shape[0] > x.shape[1] else "full"
    pca = PCA(n_components=k, svd_solver=solver, random_state=seed)
    z = pca.fit_transform(x)
    return z, pca.explained_variance_ratio_


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, Any]]:
    def conv(v: str) -> Any:
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: conv(v) for k, v in r.items()} for r in csv.DictReader(f)]
