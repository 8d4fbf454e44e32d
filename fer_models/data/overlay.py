"""PNG grids of faces with their AU maps overlaid, to check by eye that maps sit right."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fer_models.figures import save_figure


def overlay_grid(
    images: Sequence[np.ndarray] | np.ndarray,
    panels: dict[str, Sequence[np.ndarray | None]],
    titles: Sequence[str],
    out: str | Path,
    *,
    landmarks: Sequence[np.ndarray | None] | None = None,
    ncols: int = 4,
    alpha: float = 0.5,
    dpi: int = 110,
) -> Path:
    """Write a grid: per face, the image, then one panel per entry of ``panels`` (a map
    (h, w) in [0, 1] shown as a jet overlay stretched over the image, or None = "undefined").

    ``titles`` label each face (e.g. its expression); ``landmarks`` (68, 2) pixel arrays, when
    given, are dotted on the plain image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    names = list(panels)
    per = 1 + len(names)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(
        nrows, ncols * per, figsize=(1.45 * ncols * per, 1.6 * nrows), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c0 = divmod(i, ncols)
        img = np.asarray(images[i])
        h, w = img.shape[:2]
        ax = axes[r, c0 * per]
        ax.imshow(img, interpolation="bilinear")
        if landmarks is not None and landmarks[i] is not None and np.isfinite(landmarks[i]).all():
            ax.scatter(landmarks[i][:, 0], landmarks[i][:, 1], s=0.6, c="lime", linewidths=0)
        ax.set_title(titles[i], fontsize=7, pad=2)
        for j, name in enumerate(names):
            ax = axes[r, c0 * per + 1 + j]
            ax.imshow(img, interpolation="bilinear")
            m = panels[name][i]
            if m is None:
                ax.text(w / 2, h / 2, "undefined", ha="center", va="center", fontsize=6,
                        color="white", bbox=dict(facecolor="black", alpha=0.6, lw=0))
            else:
                ax.imshow(np.asarray(m), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
            ax.set_title(name, fontsize=6, pad=2)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, out, dpi=dpi)
