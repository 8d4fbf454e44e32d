"""Figures of the probing jobs (paper 004, Figs. 2-5), matplotlib Agg, one PNG each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fer_models.figures import save_figure  # noqa: E402
from fer_models.labels import EXPRESSIONS  # noqa: E402


def _scatter(ax, xy: np.ndarray, labels: np.ndarray, kind: str) -> None:
    known = labels >= 0
    if (~known).any():
        ax.scatter(xy[~known, 0], xy[~known, 1], s=4, c="lightgrey", linewidths=0)
    if kind == "expression":
        cmap = plt.get_cmap("tab10")
        for k in np.unique(labels[known]):
            m = labels == k
            name = EXPRESSIONS[k] if 0 <= k < len(EXPRESSIONS) else str(k)
            ax.scatter(xy[m, 0], xy[m, 1], s=5, color=cmap(int(k) % 10), label=name, linewidths=0)
    else:  # identities: many; colour by id modulo a 20-colour map, no legend
        ids = labels[known]
        ax.scatter(xy[known, 0], xy[known, 1], s=5, c=ids % 20, cmap="tab20", vmin=0, vmax=19, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_maps(
    coords: dict[str, dict[str, np.ndarray]],
    rows_idx: dict[str, dict[str, np.ndarray]],
    identity: np.ndarray,
    label: np.ndarray,
    scores: dict[str, dict[str, float]],
    path: Path,
    title: str = "",
) -> Path:
    """Grid: one row per layer, columns (PCA, UMAP) x (identity, expression).

    ``coords[layer][method]`` is (n, 2) for the samples ``rows_idx[layer][method]``;
    ``scores[layer]["<method>_<kind>"]`` (e.g. ``umap_identity``) annotates each panel's
    title with the silhouette of that 2-D map where known.
    """
    layers = list(coords)
    methods = [m for m in ("pca", "umap") if any(m in coords[l] for l in layers)]
    ncol = 2 * len(methods)
    fig, axes = plt.subplots(len(layers), ncol, figsize=(2.6 * ncol, 2.4 * len(layers) + 0.8), squeeze=False)
    for i, layer in enumerate(layers):
        for j, method in enumerate(methods):
            for c, kind in enumerate(("identity", "expression")):
                ax = axes[i, 2 * j + c]
                if method not in coords[layer]:
                    ax.axis("off")
                    continue
                idx = rows_idx[layer][method]
                lab = (identity if kind == "identity" else label)[idx]
                _scatter(ax, coords[layer][method], lab, kind)
                s = scores.get(layer, {}).get(f"{method}_{kind}")
                extra = f"\nsil={s:.2f}" if s is not None and np.isfinite(s) else ""
                ax.set_title(f"{method.upper()} · {kind}{extra}", fontsize=7)
                if c == 0 and j == 0:
                    ax.set_ylabel(layer, fontsize=8)
    handles, labels = [], []
    for ax in axes[:, 1]:
        h, l = ax.get_legend_handles_labels()
        if h:
            handles, labels = h, l
            break
    bottom = 0.0
    if handles:
        leg_cols = min(2 * ncol, len(labels))
        fig.legend(handles, labels, loc="lower center", ncol=leg_cols, fontsize=7, markerscale=3)
        bottom = 0.3 * -(-len(labels) // leg_cols) / fig.get_figheight()  # ~0.3 inch per legend row
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.3 / fig.get_figheight() if title else 1))
    return save_figure(fig, path)


def plot_silhouette_curves(
    curves: dict[str, list[dict[str, Any]]], path: Path, title: str = "Silhouette by layer"
) -> Path:
    """Identity and expression silhouette across layers (paper 004, Fig. 4).

    ``curves`` maps a network name (e.g. "trained", "untrained") to rows with keys
    ``layer``, ``identity``, ``expression``; the first network is drawn solid, the others
    dashed/dotted, identity in blue and expression in red.
    """
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * max(len(r) for r in curves.values()) + 2), 3.6))
    styles = ["-", "--", ":", "-."]
    layers: list[str] = []
    for i, (name, rows) in enumerate(curves.items()):
        layers = [r["layer"] for r in rows] if len(rows) > len(layers) else layers
        x = np.arange(len(rows))
        ls = styles[i % len(styles)]
        ax.plot(x, [r["identity"] for r in rows], ls, marker="o", color="tab:blue", label=f"identity ({name})")
        ax.plot(x, [r["expression"] for r in rows], ls, marker="s", color="tab:red", label=f"expression ({name})")
    ax.set_xticks(np.arange(len(layers)))
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("silhouette (first PCs)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_valence_arousal(
    pcs: np.ndarray,
    valence: np.ndarray,
    arousal: np.ndarray,
    label: np.ndarray,
    fits: dict[tuple[str, str], dict[str, float]],
    path: Path,
    title: str = "",
) -> Path:
    """PC1 vs valence and PC2 vs arousal with fit lines, plus PC1-PC2 by expression (paper 004, Figs. 5, 7)."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (pc, target, vals) in zip(axes[:2], ((0, "valence", valence), (1, "arousal", arousal))):
        ok = np.isfinite(vals)
        if pc < pcs.shape[1] and ok.any():
            ax.scatter(vals[ok], pcs[ok, pc], s=5, alpha=0.6, linewidths=0)
            f = fits.get((f"PC{pc + 1}", target))
            if f and np.isfinite(f.get("slope", np.nan)):
                xs = np.linspace(np.nanmin(vals[ok]), np.nanmax(vals[ok]), 10)
                ax.plot(xs, f["intercept"] + f["slope"] * xs, color="tab:red")
                ax.set_title(f"PC{pc + 1} ~ {target}: r={f['r']:.2f}, p={f['p']:.1e}", fontsize=8)
        else:
            ax.set_title(f"no {target} labels", fontsize=8)
        ax.set_xlabel(target)
        ax.set_ylabel(f"PC{pc + 1}")
    _scatter(axes[2], pcs[:, :2] if pcs.shape[1] > 1 else np.c_[pcs[:, 0], np.zeros(len(pcs))], label, "expression")
    axes[2].set_xlabel("PC1")
    axes[2].set_ylabel("PC2")
    axes[2].legend(fontsize=6, markerscale=2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_compare(curves: dict[str, Sequence[dict[str, Any]]], path: Path, title: str = "") -> Path:
    """Two runs' silhouette curves on one plot (same drawing as :func:`plot_silhouette_curves`)."""
    return plot_silhouette_curves({k: list(v) for k, v in curves.items()}, path, title or "Silhouette: run comparison")


def plot_face_strips(strips: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """One row of faces per axis (paper 004, Figs. 2d and 6): ``strips[axis]`` is (n, h, w, C)
    uint8, left to right from the smallest coordinate on that axis to the largest."""
    n = max(len(v) for v in strips.values())
    fig, axes = plt.subplots(len(strips), n, figsize=(0.55 * n + 0.6, 0.7 * len(strips) + 0.5), squeeze=False)
    for i, (axis, faces) in enumerate(strips.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(faces):
                img = faces[j]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_ylabel(f"{axis} →", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2, w_pad=0.05, h_pad=0.2)
    return save_figure(fig, path)


def plot_correct(pcs: np.ndarray, truth: np.ndarray, correct: np.ndarray, classes: Sequence[int],
                 names: Sequence[str], path: Path, title: str = "") -> Path:
    """PC1 vs PC2 with correct predictions green and errors red (paper 004, Fig. 7): the first
    panel every labelled sample, then one panel per class with that class highlighted and
    the other samples grey."""
    panels = [("all", truth >= 0)] + [(name, truth == k) for k, name in zip(classes, names)]
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.5 * nrow + 0.4), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, sel) in zip(axes.flat, panels):
        ax.scatter(pcs[~sel, 0], pcs[~sel, 1], s=4, c="lightgrey", linewidths=0)
        for ok, colour in ((True, "tab:green"), (False, "tab:red")):
            m = sel & (correct == ok)
            ax.scatter(pcs[m, 0], pcs[m, 1], s=6, c=colour, linewidths=0,
                       label=f"{'correct' if ok else 'error'} ({int(m.sum())})")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=1.5, loc="best")
    axes[0, 0].set_xlabel("PC1", fontsize=7)
    axes[0, 0].set_ylabel("PC2", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
