"""The AU maps as paper 002's released code draws them (``dlib/face_landmarks/action_units.py``,
``build_all_action_units``, read for its settings; written here from that reading).

Per AU of the expression's codebook entry, on a canvas of the image's size (value 1e-4): one
or two *filled ellipses* (value 255) placed by the integer landmarks, sized partly by the
image (the brows: w/8 x h/10; the cheeks: w/10 x h/10, h/6 below the lower lids), partly by
landmark spans (the brow furrow, the eyes, the mouth, the chin), partly in fixed pixels
(20 px around the lip corners, 25 x 10 px on the lips), so the map depends on the image's
resolution; resized to 28 x 28 (OpenCV bilinear), blurred by a 3 x 3 box, resized back to
the image's size. The AUs are combined by their maximum and the result is min-max
normalised. An AU whose ellipses fall outside the image is dropped; with none left, or on
missing landmarks, or for an expression without AUs (neutral), the map is undefined.

fer-orch's own maps (:func:`fer_models.data.au.render_au_maps`) are elliptic Gaussians
sized by the inter-ocular distance; the codebook ``paper002-released`` draws these instead
(:data:`RELEASED_DRAWING`), for the training target (the cache's map, at ``map_size``) and
the ``metric_def: released`` reference alike. On 259 synthetic expressive faces the two drawings of the
same AUs have a mean cosine of 0.80 (0.68-0.91 per face) at 28 px and at 224 px
(``benchmarks/bench_au_drawings.py``). OpenCV draws the
ellipses, as the released code does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: codebooks whose maps are drawn the released way
RELEASED_DRAWING = ("paper002-released",)
_BASE, _FILL, _GRID = 1e-4, 255.0, 28

Ellipse = tuple[tuple[int, int], tuple[int, int]]  # (centre x, y), (half-axis x, y)


def _mid(a: int, b: int) -> int:
    return int((a + b) / 2)


def _half(a: int, b: int, fallback: int | None) -> int:
    """Half of the span a -> b (0 if negative), ``fallback`` when that is 0 (None: keep 0)."""
    v = max(int((b - a) / 2), 0)
    return fallback if v == 0 and fallback is not None else v


def _eyes(lm, extra: int, fallback: int | None) -> list[Ellipse]:
    """Both eyes: x from the corners (36/39, 42/45), y from the lids (38/41, 44/47); the lid
    AUs widen the vertical half-axis by ``extra`` px."""
    out = []
    for c0, top, c1, bottom in ((36, 38, 39, 41), (42, 44, 45, 47)):
        x0, y0, x1, y1 = lm[c0][0], lm[top][1], lm[c1][0], lm[bottom][1]
        minor = max(int((y1 + extra - y0 + extra) / 2), 0)
        minor = fallback if minor == 0 and fallback is not None else minor
        out.append(((_mid(x0, x1), _mid(y0, y1)), (_half(x0, x1, fallback), minor)))
    return out


def _mouth(lm) -> list[Ellipse]:
    """The mouth box: x from the corners 48/54, y from the lip midpoints 51/57."""
    return [((_mid(lm[48][0], lm[54][0]), _mid(lm[51][1], lm[57][1])),
             (_half(lm[48][0], lm[54][0], 5), _half(lm[51][1], lm[57][1], 5)))]


def _rules(lm, h: int, w: int) -> dict[int, Callable[[], list[Ellipse]]]:
    brow = (round(w / 8), round(h / 10))
    cheek = (round(w / 10), round(h / 10))
    r20 = (20, 20)
    return {
        1: lambda: [(lm[20], brow), (lm[23], brow)],
        2: lambda: [(lm[18], brow), (lm[25], brow)],
        4: lambda: [((_mid(lm[19][0], lm[24][0]), _mid(lm[19][1], lm[24][1])),
                     (_half(lm[19][0], lm[24][0], 10), _half(lm[19][1], lm[24][1], 10)))],
        5: lambda: _eyes(lm, 0, 5),
        6: lambda: [((lm[41][0], lm[41][1] + round(h / 6)), cheek), ((lm[46][0], lm[46][1] + round(h / 6)), cheek)],
        7: lambda: _eyes(lm, 10, 5),
        9: lambda: [((lm[31][0], lm[29][1]), r20), ((lm[35][0], lm[29][1]), r20)],
        10: lambda: [((lm[48][0], lm[50][1]), r20), ((lm[52][0], lm[54][1]), r20)],
        12: lambda: [(lm[48], r20), (lm[54], r20)],
        14: lambda: [((max(lm[48][0] - 20, 0), lm[48][1]), r20), ((min(lm[54][0] + 20, w), lm[54][1]), r20)],
        15: lambda: [(lm[48], r20), (lm[54], r20)],
        16: lambda: [(lm[59], r20), (lm[55], r20)],
        17: lambda: [((_mid(lm[59][0], lm[8][0]), _mid(lm[59][1], lm[8][1])),
                      (_half(lm[59][0], lm[8][0], 5), _half(lm[59][1], lm[8][1], 5)))],
        20: lambda: [((_mid(lm[48][0], lm[6][0]), _mid(lm[48][1], lm[6][1])), r20),
                     ((_mid(lm[50][0], lm[10][0]), _mid(lm[50][1], lm[10][1])), r20)],
        23: lambda: _mouth(lm), 24: lambda: _mouth(lm), 26: lambda: _mouth(lm), 27: lambda: _mouth(lm),
        25: lambda: [(lm[51], (25, 10)), (lm[57], (25, 10))],
        43: lambda: _eyes(lm, 10, None),
    }


RELEASED_AUS = tuple(sorted(_rules([(0, 0)] * 68, 1, 1)))


def released_au_map(landmarks: np.ndarray, aus: Sequence[int], image_hw: tuple[int, int]) -> np.ndarray | None:
    """One image's released map at ``image_hw`` (min-max normalised), or None where undefined."""
    import cv2

    h, w = int(image_hw[0]), int(image_hw[1])
    if not len(aus) or not np.isfinite(landmarks).all():
        return None
    lm = [(int(x), int(y)) for x, y in np.asarray(landmarks, np.float64)]
    rules = _rules(lm, h, w)
    best = None
    for au in aus:
        canvas = np.full((h, w), _BASE)
        for centre, axes in rules[int(au)]():
            cv2.ellipse(canvas, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])), 0, 0, 360, _FILL,
                        cv2.FILLED)
        if (canvas - _BASE).sum() <= 0:  # drawn outside the image: this AU is dropped
            continue
        small = cv2.blur(cv2.resize(canvas, (_GRID, _GRID)), (3, 3))
        full = cv2.resize(small, (w, h))
        best = full if best is None else np.maximum(best, full)
    if best is None:
        return None
    lo, hi = best.min(), best.max()
    return ((best - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def released_au_maps(landmarks: np.ndarray, aus_of: Sequence[Sequence[int]], image_hw: tuple[int, int],
                     out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Released maps of a batch, ``(maps (B, S, S) float32, valid (B,) bool)``: each image's
    map (:func:`released_au_map`) resized to ``out_size`` (OpenCV bilinear), zeros where undefined."""
    import cv2

    lm = np.asarray(landmarks, np.float64)
    maps = np.zeros((len(lm), out_size, out_size), np.float32)
    valid = np.zeros(len(lm), bool)
    for b in range(len(lm)):
        m = released_au_map(lm[b], aus_of[b], image_hw)
        if m is None:
            continue
        maps[b] = m if m.shape == (out_size, out_size) else cv2.resize(m, (out_size, out_size))
        valid[b] = True
    return maps, valid
