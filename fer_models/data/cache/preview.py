"""A PNG of stored faces with their maps, to check by eye that the maps sit on the face."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_models.data.cache.reader import load_split
from fer_models.errors import DatasetError


def write_preview(
    cache_dir: str | Path, split: str = "train", n: int = 8, out: str | Path | None = None
) -> Path:
    """PNG of ``n`` stored faces with their landmarks, codebook map and ground-truth map,
    so a person can check that the maps sit on the face (default ``<cache>/preview.png``)."""
    from fer_models.data.overlay import overlay_grid
    from fer_models.labels import EXPRESSIONS

    d = load_split(cache_dir, split)
    if not d:
        raise DatasetError(f"cache {cache_dir} has no '{split}' rows to preview; pick another split")
    # one face per label first, so every expression's map shows up
    firsts = [int(np.flatnonzero(d["label"] == k)[0]) for k in np.unique(d["label"])]
    order = firsts + [i for i in range(len(d["row"])) if i not in firsts]
    idx = order[:n]
    lms = [lm if np.isfinite(lm).all() else None for lm in d["landmarks"][idx]]
    return overlay_grid(
        d["image"][idx],
        {"codebook AU map": [m if v else None for m, v in zip(d["au_map"][idx], d["au_valid"][idx])],
         "active-AU map": [m if v else None for m, v in zip(d["gt_au_map"][idx], d["gt_valid"][idx])]},
        [EXPRESSIONS[int(k)] for k in d["label"][idx]],
        out or Path(cache_dir) / "preview.png",
        landmarks=lms,
        ncols=2,
    )
