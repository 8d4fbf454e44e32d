"""Pictures of the explanation jobs (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fer_models.figures import save_figure  # noqa: E402


def show_image(x: torch.Tensor) -> np.ndarray:
    """(3, h, w) network input (any normalisation) -> (h, w, 3) in [0, 1] by min-max."""
    a = x.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(1e-8)
    a = a.permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def show_attribution(a: torch.Tensor) -> np.ndarray:
    """(3, h, w) attribution -> (h, w, 3): grey is zero, scaled by the largest magnitude
    (the usual deconvnet / guided-backprop display)."""
    a = a.detach().float().cpu()
    a = a / (2 * a.abs().max().clamp_min(1e-12)) + 0.5
    a = a.permute(1, 2, 0).numpy().clip(0, 1)
    return a[..., 0] if a.shape[-1] == 1 else a


def topn_grid(recs, path: Path, title: str = "") -> Path:
    """Rows = filters, columns = top-N patches, each as (image patch, deconvnet, guided bp)."""
    rows = len(recs)
    n = max(len(r.index) for r in recs) if recs else 1
    fig, axes = plt.subplots(rows, 3 * n, figsize=(0.62 * 3 * n, 0.72 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, r in enumerate(recs):
        for k in range(len(r.index)):
            for j, (img, kind) in enumerate(((show_image(r.image[k]), "img"),
                                             (show_attribution(r.deconv[k]), "dec"),
                                             (show_attribution(r.gbp[k]), "gbp"))):
                ax = axes[i, 3 * k + j]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
                if i == 0:
                    ax.set_title(f"#{k + 1} {kind}", fontsize=6)
        axes[i, 0].text(-0.15, 0.5, f"f{r.filter}", transform=axes[i, 0].transAxes,
                        ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, bbox_inches="tight")


def kl_bars(kl: np.ndarray, au_labels: Sequence[str], filters: Sequence[int], path: Path,
            title: str = "", significant: np.ndarray | None = None) -> Path:
    """Paper 001 Fig. 5: one bar chart per filter of D_KL over the AUs, the largest in red;
    with ``significant`` (same shape, bool) the significant bars carry a star."""
    k = len(filters)
    cols = min(5, max(k, 1))
    rows = int(np.ceil(k / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    x = np.arange(len(au_labels))
    for i, f in enumerate(filters):
        ax = axes.flat[i]
        ax.axis("on")
        vals = np.nan_to_num(kl[i], nan=0.0)
        colors = ["tab:blue"] * len(vals)
        if len(vals) and np.isfinite(kl[i]).any():
            colors[int(np.nanargmax(kl[i]))] = "tab:red"
        ax.bar(x, vals, color=colors)
        ax.axhline(0, color="k", linewidth=0.5)
        if significant is not None:
            for j in np.flatnonzero(significant[i]):
                ax.text(x[j], vals[j], "*", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels(au_labels, rotation=90, fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(f"filter {f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def backtrack_figure(cases: Sequence[dict], path: Path, class_names: Sequence[str]) -> Path:
    """Paper 003 Fig. 11: per case the image, deconv with / without the backtracked
    activations, |difference|, and the class probabilities before / after suppression."""
    rows = max(len(cases), 1)
    fig, axes = plt.subplots(rows, 5, figsize=(11, 2.1 * rows), squeeze=False)
    for ax in axes.flat[:]:
        ax.axis("off")
    for i, c in enumerate(cases):
        diff = c["difference"].abs().sum(0)
        panels = [(show_image(c["image"]), f"true {class_names[c['label']]}\npred {class_names[c['pred']]}"),
                  (show_attribution(c["deconv"]), "deconv (all)"),
                  (show_attribution(c["deconv_suppressed"]), "deconv (suppressed)"),
                  ((diff / diff.max().clamp_min(1e-12)).numpy(), "|difference|")]
        for j, (img, t) in enumerate(panels):
            axes[i, j].imshow(img, cmap="magma" if j == 3 else ("gray" if img.ndim == 2 else None))
            axes[i, j].set_title(t, fontsize=7)
        ax = axes[i, 4]
        ax.axis("on")
        x = np.arange(len(c["before"]))
        ax.bar(x - 0.2, c["before"], 0.4, label="before")
        ax.bar(x + 0.2, c["after"], 0.4, label="after")
        ax.set_xticks(x)
        ax.set_xticklabels([n[:3] for n in class_names[: len(x)]], fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_ylim(0, 1)
        if i == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def gradcam_grid(images: torch.Tensor, maps: dict[str, torch.Tensor], path: Path,
                 row_titles: Sequence[str] = ()) -> Path:
    """Paper 004 Fig. 2e-f: each image, then its Grad-CAM at every block (jet overlay)."""
    rows, cols = images.shape[0], 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.8 * rows), squeeze=False)
    for i in range(rows):
        img = show_image(images[i])
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 0].set_title(row_titles[i] if i < len(row_titles) else "", fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(img, cmap="gray" if img.ndim == 2 else None)
            axes[i, j].imshow(m[i].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def class_maps_figure(mean_maps: np.ndarray, counts: Sequence[int], class_names: Sequence[str],
                      path: Path, title: str = "") -> Path:
    """Paper 002 Figs. 6-11 style: the mean map of each class (true label), one panel each."""
    k = len(mean_maps)
    fig, axes = plt.subplots(1, k, figsize=(1.8 * k, 2.0), squeeze=False)
    for i in range(k):
        ax = axes[0, i]
        ax.imshow(mean_maps[i], cmap="jet", vmin=0, vmax=1)
        ax.set_title(f"{class_names[i]} (n={counts[i]})", fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def backtrack_compare_figure(images: torch.Tensor, maps_a: torch.Tensor, maps_b: torch.Tensor,
                             kept_a: torch.Tensor, kept_b: torch.Tensor, names: Sequence[str], path: Path) -> Path:
    """Paper 003 Fig. 7: each image, then for each of two networks the feature maps feeding its
    first dense layer (mean over channels) with the backtracked positions (kept in any
    channel) blanked, as the paper shows its "missing pixels"."""
    rows = images.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(5.4, 1.8 * rows), squeeze=False)
    for i in range(rows):
        img = show_image(images[i])
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        for j, (m, k, name) in enumerate(((maps_a, kept_a, names[0]), (maps_b, kept_b, names[1])), start=1):
            a = m[i].float().mean(0).numpy()
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
            hole = k[i].any(0).numpy()
            shown = np.where(hole, np.nan, a)
            axes[i, j].imshow(shown, cmap="gray")
            if i == 0:
                axes[i, j].set_title(f"{name}: {int(k[i].sum())} kept", fontsize=7)
            else:
                axes[i, j].set_title(f"{int(k[i].sum())} kept", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")
