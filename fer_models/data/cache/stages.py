"""The two preprocessing stages, each working on a batch of rows (DESIGN.md step 2).

1. :func:`landmark_stage`: load each image (``images.load_image``), run the landmark
   backend once on the whole batch, crop to the shipped face box when there is one, and
   resize to the stored size ``image_size`` (square) once, so that training never decodes
   a JPEG again. Landmarks are moved into the stored image's pixel coordinates.
2. :func:`au_stage`: the codebook map of each row (``au.expression_au_maps``, paper 002
   Sec. 3.2) and, where ``Sample.aus`` is known (synthetic data), the map of the AUs truly
   active (``au.render_au_maps`` weighted by the AU intensities, as au.py intends for
   ground-truth maps: a faint AU is drawn faint), both rendered over the whole stored image
   at ``map_size``.

The same two functions run in the serial executor and in the Ray Data actor pool
(``orchestrator.preprocess``), so both write identical shards.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fer_models.data import au
from fer_models.data.cache.layout import NO_FACE, OK, UNREADABLE
from fer_models.data.cache.rows import samples_from_batch


def _crop_resize(img: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    """Crop to ``box`` (x, y, w, h; NaN = whole image), resize to ``size``², one PIL call.

    The region is resized as-is (no aspect-preserving padding): RAF-DB's aligned faces
    and face boxes are square or nearly so, which is what FER pipelines commonly assume.
    """
    from PIL import Image

    h, w = img.shape[:2]
    if np.isnan(box).any():
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    else:
        x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x1, y1 = min(float(w), float(box[0] + box[2])), min(float(h), float(box[1] + box[3]))
        if x1 - x0 < 2 or y1 - y0 < 2:  # a degenerate box: fall back to the whole image
            x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    pil = Image.fromarray(img).resize((size, size), Image.BILINEAR, box=(x0, y0, x1, y1))
    return np.asarray(pil, np.uint8), (x0, y0, x1, y1)


def _to_stored(lm: np.ndarray, region: tuple, size: int) -> np.ndarray:
    """Image-pixel landmarks -> stored-image pixels (pixel centres at integers, as PIL)."""
    x0, y0, x1, y1 = region
    out = np.empty_like(lm, dtype=np.float32)
    out[:, 0] = (lm[:, 0] + 0.5 - x0) * size / (x1 - x0) - 0.5
    out[:, 1] = (lm[:, 1] + 0.5 - y0) * size / (y1 - y0) - 0.5
    return out


def landmark_stage(batch: dict[str, np.ndarray], backend: Any, image_size: int) -> dict[str, np.ndarray]:
    """Load, detect landmarks, crop/resize: adds ``image`` (B,S,S,3) uint8, ``landmarks``
    (B,68,2) float32 in stored-image pixels (NaN on failure), ``status`` ("ok",
    "unreadable", "no-face"), ``t_landmarks`` (seconds per row, for meta.json timings)."""
    from fer_models.data.images import UnreadableImage, load_image

    t0 = time.perf_counter()
    n = len(batch["row"])
    samples = samples_from_batch(batch)
    images: list[np.ndarray | None] = []
    for s in samples:
        try:
            images.append(load_image(s.path))
        except UnreadableImage:
            images.append(None)
    ok = [j for j in range(n) if images[j] is not None]
    found = backend.detect([images[j] for j in ok], [samples[j] for j in ok]) if ok else []
    if len(found) != len(ok):
        raise RuntimeError(f"landmark backend {getattr(backend, 'name', backend)} returned "
                           f"{len(found)} results for {len(ok)} images")
    out_img = np.zeros((n, image_size, image_size, 3), np.uint8)
    out_lm = np.full((n, 68, 2), np.nan, np.float32)
    status = np.array([UNREADABLE] * n, dtype=object)
    for j, lm in zip(ok, found):
        out_img[j], region = _crop_resize(images[j], batch["box"][j], image_size)
        if lm is None or np.asarray(lm).shape != (68, 2) or not np.isfinite(lm).all():
            status[j] = NO_FACE
        else:
            status[j] = OK
            out_lm[j] = _to_stored(np.asarray(lm, np.float32), region, image_size)
    out = dict(batch)
    out.update(image=out_img, landmarks=out_lm, status=status.astype(str))
    out["t_landmarks"] = np.full(n, (time.perf_counter() - t0) / max(n, 1), np.float64)
    return out


def au_stage(batch: dict[str, np.ndarray], codebook: Any, map_size: int) -> dict[str, np.ndarray]:
    """Adds ``au_map``/``au_valid`` (codebook) and ``gt_au_map``/``gt_valid`` (active AUs).

    ``gt_valid`` needs known AU intensities, landmarks, and at least one active AU (a
    neutral face with no active AU has no map to align to, like the codebook's neutral).
    """
    t0 = time.perf_counter()
    lm = batch["landmarks"].astype(np.float32)
    size = int(batch["image"].shape[1])
    hw = (size, size)
    maps, valid = au.expression_au_maps(lm, batch["label"].astype(np.int64), codebook, hw, map_size)
    maps = np.asarray(maps, np.float32)
    valid = np.asarray(valid, bool) & np.isfinite(lm).all(axis=(1, 2))
    maps[~valid] = 0.0
    aus = batch["aus"].astype(np.float32)
    known = ~np.isnan(aus).any(axis=1)
    weights = np.where(known[:, None], np.clip(np.nan_to_num(aus), 0, None), 0.0).astype(np.float32)
    gt_valid = known & (weights.sum(1) > 0) & np.isfinite(lm).all(axis=(1, 2))
    gt = np.zeros((len(lm), map_size, map_size), np.float32)
    if gt_valid.any():
        gt[gt_valid] = au.render_au_maps(lm[gt_valid], weights[gt_valid], hw, map_size)
    out = dict(batch)
    out.update(au_map=maps, au_valid=valid, gt_au_map=gt, gt_valid=gt_valid)
    out["t_au"] = np.full(len(lm), (time.perf_counter() - t0) / max(len(lm), 1), np.float64)
    return out
