"""The two preprocessing stages, each working on a batch of rows (docs/architecture.md, step 2).

1. :func:`landmark_stage`: load each image (``images.load_image``), run the landmark
   backend once on the whole batch, crop, and resize to the stored size ``image_size``
   (square) once, so that training never decodes a JPEG again. Landmarks are moved into the
   stored image's pixel coordinates. The crop:

   - a shipped face box (AffectNet) is cropped as it is;
   - a *whole frame* (CK+, KDEF, RaFD, DISFA, RAF-DB's original photos: the reader's
     ``whole_frames``) is cropped to a square around its landmarks, :func:`face_box`, so the
     face fills the stored image as in the papers ("we simply detect the face ... and resize
     it to 96x96", paper 001; "only faces are extracted", paper 003); a frame whose face was
     not found is stored whole (counted as "no-face");
   - a face crop (FER2013, TFD, RAF-DB aligned, the synthetic faces) is used whole.

   Pre-aligned face crops defeat face *detectors* now and then (RAF-DB's 100 px aligned
   faces: the face fills the image, with no margin for the detector's window), so a
   face-crop row the backend found no face in is tried again with the whole image as its
   face box before it is declared "no-face" (``fallback_box``); backends that take the
   sample's box (dlib, face-alignment) then fit the landmarks in it.
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


#: side of the square face box over the larger side of the landmarks' bounding box. The
#: papers crop with a face detector's box (paper 001's released code: OpenCV's Haar
#: frontal-face cascade; paper 003 does not say), which spans about the landmarks' extent
#: plus a band of forehead; 1.25 (12.5 % margin on each side) reproduces that framing. The
#: box is centred on the landmarks' bounding box, so the face is centred as well.
FACE_BOX_SCALE = 1.25


def face_box(landmarks: np.ndarray, scale: float = FACE_BOX_SCALE) -> np.ndarray:
    """Square ``(x, y, w, h)`` of side ``scale`` x the larger side of the landmarks'
    bounding box, centred on it (may reach outside the image: the crop pads)."""
    lo, hi = np.nanmin(landmarks, 0), np.nanmax(landmarks, 0)
    side = float(np.max(hi - lo)) * scale
    cx, cy = (lo + hi) / 2.0
    return np.array([cx - side / 2, cy - side / 2, side, side], np.float32)


def _crop_resize(img: np.ndarray, box: np.ndarray, size: int, pad: bool = False) -> tuple[np.ndarray, tuple]:
    """Crop to ``box`` (x, y, w, h; NaN = whole image), resize to ``size``², one PIL call.

    A shipped box is clipped to the image and the region resized as-is (no aspect-preserving
    padding): RAF-DB's aligned faces and AffectNet's face boxes are square or nearly so,
    which is what FER pipelines commonly assume. ``pad=True`` (the square landmark box of a
    whole frame) keeps the box square where it leaves the image by padding with black.
    """
    from PIL import Image

    h, w = img.shape[:2]
    if np.isnan(box).any():
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    elif pad:
        x0, y0 = float(box[0]), float(box[1])
        x1, y1 = x0 + float(box[2]), y0 + float(box[3])
        left, top = max(0, int(np.ceil(-x0))), max(0, int(np.ceil(-y0)))
        right, bottom = max(0, int(np.ceil(x1 - w))), max(0, int(np.ceil(y1 - h)))
        if left or top or right or bottom:
            img = np.pad(img, ((top, bottom), (left, right), (0, 0)))
        pil = Image.fromarray(img).resize((size, size), Image.BILINEAR,
                                          box=(x0 + left, y0 + top, x1 + left, y1 + top))
        return np.asarray(pil, np.uint8), (x0, y0, x1, y1)
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


def _found(lm: Any) -> bool:
    return lm is not None and np.asarray(lm).shape == (68, 2) and bool(np.isfinite(lm).all())


def landmark_stage(batch: dict[str, np.ndarray], backend: Any, image_size: int) -> dict[str, np.ndarray]:
    """Load, detect landmarks, crop/resize: adds ``image`` (B,S,S,3) uint8, ``landmarks``
    (B,68,2) float32 in stored-image pixels (NaN on failure), ``status`` ("ok",
    "unreadable", "no-face"), ``fallback_box`` (landmarks found only with the whole image as
    the face box), ``t_landmarks`` (seconds per row, for meta.json timings)."""
    from fer_models.data.images import UnreadableImage, load_image

    t0 = time.perf_counter()
    n = len(batch["row"])
    samples = samples_from_batch(batch)
    whole = np.asarray(batch.get("whole_frame", np.zeros(n, bool)), bool)
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
    found = dict(zip(ok, found))
    fallback = np.zeros(n, bool)
    retry = [j for j in ok if not _found(found[j]) and not whole[j] and samples[j].box is None]
    if retry:  # a face crop: the whole image is the face box
        for j in retry:
            h, w = images[j].shape[:2]
            samples[j].box = (0.0, 0.0, float(w), float(h))
        again = backend.detect([images[j] for j in retry], [samples[j] for j in retry])
        for j, lm in zip(retry, again):
            if _found(lm):
                found[j], fallback[j] = lm, True
    out_img = np.zeros((n, image_size, image_size, 3), np.uint8)
    out_lm = np.full((n, 68, 2), np.nan, np.float32)
    status = np.array([UNREADABLE] * n, dtype=object)
    for j in ok:
        lm = np.asarray(found[j], np.float32) if _found(found[j]) else None
        if whole[j] and lm is not None and np.isnan(batch["box"][j]).any():
            out_img[j], region = _crop_resize(images[j], face_box(lm), image_size, pad=True)
        else:
            out_img[j], region = _crop_resize(images[j], batch["box"][j], image_size)
        if lm is None:
            status[j] = NO_FACE
        else:
            status[j] = OK
            out_lm[j] = _to_stored(lm, region, image_size)
    out = dict(batch)
    out.update(image=out_img, landmarks=out_lm, status=status.astype(str), fallback_box=fallback)
    out["t_landmarks"] = np.full(n, (time.perf_counter() - t0) / max(n, 1), np.float64)
    return out


def au_stage(batch: dict[str, np.ndarray], codebook: Any, map_size: int,
             au_source: str = "codebook", au_ids: Any = None) -> dict[str, np.ndarray]:
    """Adds ``au_map``/``au_valid`` (codebook) and ``gt_au_map``/``gt_valid`` (active AUs), and
    with an ``au_source`` other than the codebook ``src_au_map``/``src_valid``/``src_origin``.

    ``gt_valid`` needs known AU intensities, landmarks, and at least one active AU (a
    neutral face with no active AU has no map to align to, like the codebook's neutral).
    The source's map (:func:`fer_models.data.au.source_au_maps`: the image's labelled AUs,
    the codebook's AUs among them, or a detector's, drawn by the same renderer) is the
    alignment target of the training split (``FaceDataset(..., source_maps=True)``);
    ``au_map`` stays the codebook map, the reference of CAM-COS / ATT-COS (paper 002).
    ``src_origin`` says where each row's map came from (``au.SRC_ORIGINS``: the source, the
    codebook for an image without AU labels, none). ``au_ids`` names the ``aus`` columns (the
    cache's, :func:`~fer_models.data.cache.rows.au_columns`; default ``au.AU_IDS``): the maps
    draw the AUs with a location rule among them (:func:`fer_models.data.au.drawable_aus`).
    """
    t0 = time.perf_counter()
    lm = batch["landmarks"].astype(np.float32)
    size = int(batch["image"].shape[1])
    hw = (size, size)
    labels = batch["label"].astype(np.int64)
    maps, valid = au.expression_au_maps(lm, labels, codebook, hw, map_size)
    maps = np.asarray(maps, np.float32)
    valid = np.asarray(valid, bool) & np.isfinite(lm).all(axis=(1, 2))
    maps[~valid] = 0.0
    aus = au.drawable_aus(batch["aus"], au.AU_IDS if au_ids is None else au_ids)
    known = ~np.isnan(aus).any(axis=1)
    weights = np.where(known[:, None], np.clip(np.nan_to_num(aus), 0, None), 0.0).astype(np.float32)
    gt_valid = known & (weights.sum(1) > 0) & np.isfinite(lm).all(axis=(1, 2))
    gt = np.zeros((len(lm), map_size, map_size), np.float32)
    if gt_valid.any():
        gt[gt_valid] = au.render_au_maps(lm[gt_valid], weights[gt_valid], hw, map_size)
    out = dict(batch)
    out.update(au_map=maps, au_valid=valid, gt_au_map=gt, gt_valid=gt_valid)
    source = au.parse_au_source(au_source)
    if source != au.CODEBOOK:
        detector = au.detector_name(source)
        if detector is not None:  # the detector's active AUs stand in for the labels
            from fer_models.data.au_detectors import predict_aus

            aus = predict_aus(detector, np.asarray(batch["image"]), lm)
        src, src_valid, origin = au.source_au_maps(lm, labels, aus, codebook, source, hw, map_size)
        out.update(src_au_map=src.astype(np.float32), src_valid=src_valid, src_origin=origin)
    out["t_au"] = np.full(len(lm), (time.perf_counter() - t0) / max(len(lm), 1), np.float64)
    return out
