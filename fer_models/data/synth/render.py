"""Drawing a synthetic face with PIL: skin, hair, eyes, brows, nose, mouth and AU cues.

The appearance cues of the AUs are drawn here: lips parted with teeth (AU25/26/27, AU10),
brow furrow (AU4), nose wrinkles (AU9), raised cheeks and crow's feet (AU6), forehead
wrinkles (AU1/AU2), nasolabial folds (AU12), chin wrinkles (AU17); the other AUs are
geometric (their landmark moves, :mod:`fer_models.data.synth.face`). Faces are drawn at 2x
(:data:`SS`) and reduced with a 2x2 box filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fer_models.data.au import AU_INDEX

SS = 2  # supersampling factor
CUE_WIDTH = 3.0  # AU wrinkle/fold line width gain (generator version 4, see synth.face.CUE_GAIN)


def _mix(a, b, t):
    """Colour ``a`` blended towards ``b`` (a colour or a grey level) by ``t``, as an int tuple."""
    if not hasattr(b, "__len__"):
        b = (b, b, b)
    return tuple(int(min(255.0, max(0.0, x * (1 - t) + y * t)) + 0.5) for x, y in zip(a, b))


@dataclass
class _Pen:
    """What every drawing phase of :func:`render_face` shares: the supersampled canvas, the map
    from face units to its pixels (``A``, ``T``), and the face's AU intensities and colours."""

    d: ImageDraw.ImageDraw
    A: np.ndarray
    T: np.ndarray
    aus: np.ndarray
    skin: tuple
    hair: tuple

    def __post_init__(self) -> None:
        self.unit = float(np.hypot(*self.A[:, 0]))  # one face unit in canvas pixels
        self.dark = tuple(0.45 * x for x in self.skin)

    def P(self, pts) -> list:
        """Face units -> flat [x0, y0, x1, ...] at the supersampled scale."""
        return (np.reshape(pts, (-1, 2)) @ self.A.T + self.T).ravel().tolist()

    def w(self, f: float) -> int:
        """A line width of ``f`` face units, at least one pixel."""
        return max(1, int(round(f * self.unit)))

    def I(self, au: int) -> float:  # noqa: E743
        """The intensity of ``au``."""
        return float(self.aus[AU_INDEX[au]])


def render_face(p: dict, lm_f: np.ndarray, aus: np.ndarray, a: np.ndarray, t: np.ndarray,
                size: int, bg) -> Image.Image:
    """Draw one face, ``size`` px square; ``lm_f`` in face units, ``a, t`` map them to pixels.

    Drawn at :data:`SS` x ``size`` and box-reduced, which anti-aliases the thin lines. Back to
    front: head and hair, the AUs' skin cues, eyes, brows and nose, then the mouth."""
    big = size * SS
    im = Image.new("RGB", (big, big), _mix(bg, bg, 0))
    pen = _Pen(ImageDraw.Draw(im), a * SS, t * SS + (SS - 1) / 2, aus, p["skin"], p["hair"])
    _head(pen, p, lm_f)
    _au_cues(pen, lm_f)
    _eyes_brows_nose(pen, p, lm_f)
    _mouth(pen, p, lm_f)
    return im.reduce(SS)


def _head(pen: _Pen, p: dict, lm_f: np.ndarray) -> None:
    """Hair behind the head (long style), shoulders, neck, ears, the head (jaw + forehead arc), hair on top."""
    d, P, unit, skin, hair = pen.d, pen.P, pen.unit, pen.skin, pen.hair
    fw, top = p["face_w"], p["jaw_top"]
    head_top = top - p["forehead"]
    if p["hair_style"] == 1:
        d.polygon(P([[-fw - 0.15, head_top + 0.3], [fw + 0.15, head_top + 0.3],
                     [fw + 0.25, 1.3], [-fw - 0.25, 1.3]]), fill=_mix(hair, hair, 0))
    d.polygon(P([[-1.6, 2.2], [-1.3, 1.25], [1.3, 1.25], [1.6, 2.2]]), fill=_mix(p["cloth"], 0, 0))
    d.polygon(P([[-0.38, 0.5], [0.38, 0.5], [0.42, 1.35], [-0.42, 1.35]]), fill=_mix(skin, 0, 0.15))
    for sx in (-1, 1):
        d.ellipse(_box(P([sx * fw, top + 0.05]), 0.12 * unit, 0.2 * unit), fill=_mix(skin, 0, 0.08))
    th = np.linspace(0, np.pi, 15)
    arc = np.stack([fw * np.cos(th), top - p["forehead"] * np.sin(th)], 1)
    d.polygon(P(np.concatenate([lm_f[0:17], arc[1:-1]])), fill=_mix(skin, 0, 0))
    if p["hair_style"] != 2:
        line = -0.62 if p["hair_style"] == 3 else -0.8
        outer = np.stack([1.06 * fw * np.cos(th), top + 0.05 - 1.08 * p["forehead"] * np.sin(th)], 1)
        back = th[::-1]  # hairline: from the left temple over the forehead to the right one
        inner = np.stack([fw * np.cos(back), np.minimum(top, line + 0.25 * np.cos(back) ** 2)], 1)
        d.polygon(P(np.concatenate([outer, inner])), fill=_mix(hair, hair, 0))


def _au_cues(pen: _Pen, lm_f: np.ndarray) -> None:
    """The AUs' skin cues: AU6 cheeks and crow's feet, AU12 (and resting) nasolabial folds,
    AU1/AU2 forehead wrinkles, AU4 furrow, AU9 nose wrinkles, AU17 chin."""
    d, P, w, I, unit, skin, dark = pen.d, pen.P, pen.w, pen.I, pen.unit, pen.skin, pen.dark
    a6 = I(6)
    for lo, jaw, corner, sx in ((41, 6, 36, -1), (46, 10, 45, 1)):
        c = 0.5 * (lm_f[lo] + lm_f[jaw])
        c = c + np.array([0, -0.06 * a6])
        d.ellipse(_box(P(c), 0.16 * unit, 0.11 * unit), fill=_mix(skin, (215, 95, 95), 0.1 + 0.8 * a6))
        if a6 > 0.05:
            col = _mix(skin, dark, 0.5 * a6)
            for dy in (-0.04, 0.0, 0.04):
                e0 = lm_f[corner] + [sx * 0.03, 0]
                d.line(P([e0, e0 + [sx * 0.09, dy * 1.5]]), fill=col, width=w(CUE_WIDTH * 0.018))
    fold = _mix(skin, dark, 0.12 + 0.7 * I(12))
    for nose, corner, sx in ((31, 48, -1), (35, 54, 1)):
        n0 = lm_f[nose] + [sx * 0.06, -0.03]
        c0 = lm_f[corner] + [sx * 0.06, 0.05]
        mid = 0.5 * (n0 + c0) + [sx * 0.05, 0]
        d.line(P([n0, mid, c0]), fill=fold, width=w(CUE_WIDTH * 0.02))
    by = min(lm_f[19, 1], lm_f[24, 1])
    for k in range(2):
        y = by - 0.12 - 0.07 * k
        if I(1) > 0.05:
            d.line(P([[-0.18, y + 0.01], [0, y - 0.01], [0.18, y + 0.01]]),
                   fill=_mix(skin, dark, 0.55 * I(1)), width=w(CUE_WIDTH * 0.017))
        if I(2) > 0.05:
            for sx in (-1, 1):
                d.line(P([[sx * 0.26, y], [sx * 0.5, y + 0.03]]), fill=_mix(skin, dark, 0.55 * I(2)),
                       width=w(CUE_WIDTH * 0.017))
    if I(4) > 0.05:
        col = _mix(skin, dark, 0.75 * I(4))
        yb = 0.5 * (lm_f[21, 1] + lm_f[22, 1])
        for sx in (-1, 1):
            d.line(P([[sx * 0.035, yb - 0.04], [sx * 0.05, yb + 0.09]]), fill=col, width=w(CUE_WIDTH * 0.022))
    if I(9) > 0.05:
        col = _mix(skin, dark, 0.7 * I(9))
        for k, f in enumerate((0.35, 0.6, 0.85)):
            y = lm_f[27, 1] * (1 - f) + lm_f[30, 1] * f
            hw = 0.05 + 0.02 * k
            d.line(P([[-hw, y + 0.01], [0, y - 0.01], [hw, y + 0.01]]), fill=col, width=w(CUE_WIDTH * 0.02))
    if I(17) > 0.05:
        c = 0.45 * lm_f[57] + 0.55 * lm_f[8]
        d.ellipse(_box(P(c), 0.12 * unit, 0.06 * unit), outline=_mix(skin, dark, 0.6 * I(17)),
                  width=w(CUE_WIDTH * 0.02))


def _eyes_brows_nose(pen: _Pen, p: dict, lm_f: np.ndarray) -> None:
    """Eyes (sclera, iris clipped by the lids, lid lines and crease), brows, nose and nostrils."""
    d, P, w, unit, skin, dark = pen.d, pen.P, pen.w, pen.unit, pen.skin, pen.dark
    lid_col = _mix(dark, 0, 0.4)
    for base in (36, 42):
        eye = lm_f[base : base + 6]
        d.polygon(P(eye), fill=(240, 238, 232))
        c = 0.5 * (eye[0] + eye[3]) + [0, 0.005]
        r = 0.055
        d.ellipse(_box(P(c), r * unit, r * unit), fill=_mix(p["iris"], 0, 0))
        d.ellipse(_box(P(c), 0.45 * r * unit, 0.45 * r * unit), fill=(10, 10, 10))
        up, lo = eye[[0, 1, 2, 3]], eye[[3, 4, 5, 0]]
        d.polygon(P(np.concatenate([up, up[::-1] + [0, -0.09]])), fill=_mix(skin, 0, 0.05))
        d.polygon(P(np.concatenate([lo, lo[::-1] + [0, 0.09]])), fill=_mix(skin, 0, 0))
        d.line(P(up), fill=lid_col, width=w(0.022))
        d.line(P(lo), fill=_mix(skin, dark, 0.5), width=w(0.012))
        d.line(P(up + [0, -0.035]), fill=_mix(skin, dark, 0.35), width=w(0.012))  # crease
    bcol = _mix(pen.hair, 0, 0.25)
    for lo, hi in ((17, 22), (22, 27)):
        d.line(P(lm_f[lo:hi]), fill=bcol, width=w(p["brow_thick"]), joint="curve")
    d.line(P(lm_f[31:36]), fill=_mix(skin, dark, 0.55), width=w(0.018))
    d.line(P(lm_f[[28, 30]] + [0.035, 0]), fill=_mix(skin, dark, 0.25), width=w(0.015))
    for i in (32, 34):
        d.ellipse(_box(P(lm_f[i] + [0, -0.01]), 0.025 * unit, 0.014 * unit), fill=_mix(dark, 0, 0.3))


def _mouth(pen: _Pen, p: dict, lm_f: np.ndarray) -> None:
    """Lips, the dark interior and teeth when the lips part (AU25/26/27, AU10), the lip line (AU24)."""
    d, P, w = pen.d, pen.P, pen.w
    d.polygon(P(lm_f[48:60]), fill=_mix(p["lip"], 0, 0))
    inner = lm_f[60:68]
    gap = float(np.mean(inner[[7, 6, 5], 1] - inner[[1, 2, 3], 1]))
    if gap > 0.012:
        d.polygon(P(inner), fill=(45, 15, 18))
        tooth = min(gap * 0.55, 0.05)
        up = inner[[0, 1, 2, 3, 4]]
        d.polygon(P(np.concatenate([up, up[::-1] + [0, tooth]])), fill=(236, 232, 220))
        if gap > 0.09:
            lo = inner[[4, 5, 6, 7, 0]]
            d.polygon(P(np.concatenate([lo, lo[::-1] + [0, -0.025]])), fill=(220, 216, 205))
    d.line(P(inner[[0, 1, 2, 3, 4]]), fill=_mix(p["lip"], 0, 0.5 + 0.3 * pen.I(24)), width=w(0.012))


def _box(c, rx, ry):
    return [c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry]
