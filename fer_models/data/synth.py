"""Synthetic expressive faces: the offline default dataset and the test data.

Each *identity* is a parametric 68-landmark face (iBUG 300-W order) — face and jaw shape,
eye spacing and size, brows, nose, mouth and lips, skin tone, hair colour and style, iris,
clothing and background. Each *image* picks an identity and an expression, activates the
expression's AUs from the ``paper002`` codebook with random intensities (each codebook AU
is present with probability 0.8, at least two are, plus sparse off-codebook "AU noise"), and
then

- moves the landmarks: a linear blend-shape model, one displacement field per AU
  (:data:`AU_SHAPES`, face units) scaled by the AU's intensity;
- draws the AU's appearance cues: lips parted with teeth (AU25/26/27, AU10), brow furrow
  (AU4), nose wrinkles (AU9), raised cheeks and crow's feet (AU6), forehead wrinkles
  (AU1/AU2), nasolabial folds (AU12), chin wrinkles (AU17) — eye widening (AU5), lid
  tightening (AU7) and lip-corner motion (AU12/15/20) are geometric;
- applies pose jitter (in-plane rotation, scale, translation), a lighting gradient, a
  global brightness change and Gaussian pixel noise.

Ground truth per image: expression (project order), identity, intensities over
``au.AU_IDS``, the 68 landmarks in pixels, and valence/arousal from the circumplex model
(Russell 1980): a per-expression prototype (:data:`VA_PROTOTYPES`) scaled by the
expression intensity, plus Gaussian noise (sd 0.08), clipped to [-1, 1].

Everything is deterministic by seed: identity ``k`` depends on ``(seed, k)`` only and image
``i`` on ``(seed, i)`` only, so ``generate(n)`` is a prefix of ``generate(n + m)``.
Rendering uses PIL at 2x supersampling (then a 2x2 box reduction) and numpy for
lighting/noise. The face is a cartoon, not a photograph: it is meant to make a FER task
whose cues are the AUs, with identity and nuisance variation, that is learnable but not
trivial at 48-64 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fer_models.data.au import AU_IDS, AU_INDEX, get_codebook
from fer_models.errors import ConfigError
from fer_models.labels import NUM_CLASSES

SS = 2  # supersampling factor

# (valence, arousal) at full intensity, project order (Russell's circumplex; neutral at 0).
VA_PROTOTYPES = np.array(
    [
        [-0.60, 0.70],  # anger
        [-0.65, 0.35],  # disgust
        [-0.55, 0.75],  # fear
        [0.80, 0.40],  # happiness
        [-0.70, -0.45],  # sadness
        [0.25, 0.80],  # surprise
        [0.00, 0.00],  # neutral
    ],
    np.float64,
)

P_CODEBOOK_AU = 0.8  # probability that each codebook AU of the expression is present
P_NOISE_AU = 0.04  # probability that any other AU shows faintly
# Cue strength (generator version 4): at the CPU preset's 32 px a face unit is ~14 px, so the
# version-3 cues (brow/lid moves of 0.05 units, 0.7 px wrinkle lines) were below what a small
# CNN trained for 3 epochs picks up (CAM w/o AU stayed at chance, 11-16%). AU landmark moves
# are scaled by CUE_GAIN (brows, lids, nose) and MOUTH_GAIN (lips; the jaw keeps its moves),
# AU wrinkle/fold lines widened by CUE_WIDTH, the AU6 cheek tint and the brows made stronger and
# the face a little larger. Measured: see the commit introducing version 4.
CUE_GAIN = 2.5
MOUTH_GAIN = 1.5
CUE_WIDTH = 3.0


# --------------------------------------------------------------------------- the face model
def _identity_params(rng: np.random.Generator) -> dict:
    u = rng.uniform
    tone = u(0, 1)
    skin = np.array([238, 203, 178]) * (1 - tone) + np.array([96, 62, 42]) * tone
    skin = np.clip(skin + rng.normal(0, 8, 3), 0, 255)
    hair_palette = np.array(
        [[25, 20, 18], [60, 40, 25], [110, 75, 45], [200, 170, 110], [150, 150, 150], [140, 62, 30]]
    )
    iris_palette = np.array([[70, 45, 25], [60, 100, 160], [70, 110, 70], [35, 25, 20]])
    p = dict(
        face_w=u(0.86, 1.0),
        jaw_h=u(1.05, 1.3),
        jaw_n=u(2.0, 3.2),
        jaw_top=u(-0.32, -0.2),
        forehead=u(0.75, 0.95),
        eye_x=u(0.31, 0.40),
        eye_y=u(-0.26, -0.18),
        eye_w=u(0.11, 0.155),
        eye_h=u(0.05, 0.075),
        brow_gap=u(0.15, 0.23),
        brow_thick=u(0.05, 0.09),
        brow_arch=u(0.02, 0.08),
        brow_tilt=u(-0.03, 0.03),
        nose_tip=u(0.04, 0.14),
        nose_w=u(0.09, 0.15),
        mouth_y=u(0.36, 0.46),
        mouth_w=u(0.19, 0.27),
        lip_up=u(0.03, 0.055),
        lip_lo=u(0.04, 0.075),
        corner_rest=u(-0.02, 0.02),
        skin=skin,
        lip=np.clip(skin * np.array([0.78, 0.52, 0.52]) + np.array([25, 0, 5]), 0, 255),
        hair=np.clip(hair_palette[rng.integers(len(hair_palette))] + rng.normal(0, 10, 3), 0, 255),
        hair_style=int(rng.integers(4)),  # 0 short, 1 long, 2 bald, 3 fringe
        iris=iris_palette[rng.integers(len(iris_palette))],
        cloth=rng.uniform(30, 220, 3),
        bg=rng.uniform(40, 230, 3),
    )
    for k in ("skin", "lip", "hair", "iris", "cloth", "bg"):  # plain tuples: fast to blend
        p[k] = tuple(float(x) for x in p[k])
    return p


def _template(p: dict) -> np.ndarray:
    """The identity's neutral 68 landmarks in face units (x right, y to the chin, eyes ~-0.2)."""
    lm = np.zeros((68, 2))
    # jaw 0..16: superellipse from the left ear down to the chin and up to the right ear
    th = np.linspace(-np.pi / 2, np.pi / 2, 17)
    e = 2.0 / p["jaw_n"]
    s, c = np.sin(th), np.cos(th)
    lm[0:17, 0] = p["face_w"] * np.sign(s) * np.abs(s) ** e
    lm[0:17, 1] = p["jaw_top"] + (p["jaw_h"]) * np.abs(c) ** e
    # brows 17..21 (image left, outer -> inner), 22..26 (inner -> outer)
    ex, ey, ew, eh = p["eye_x"], p["eye_y"], p["eye_w"], p["eye_h"]
    t = np.linspace(0, 1, 5)
    bx = -(ex + ew + 0.06) + t * (ex + ew + 0.06 - 0.09)
    by = ey - p["brow_gap"] - p["brow_arch"] * np.sin(np.pi * (0.2 + 0.7 * t)) + p["brow_tilt"] * t
    lm[17:22] = np.stack([bx, by], 1)
    lm[22:27] = np.stack([-bx[::-1], by[::-1]], 1)
    # nose bridge 27..30, nostrils 31..35
    lm[27:31, 0] = 0
    lm[27:31, 1] = np.linspace(ey, p["nose_tip"], 4)
    nw = p["nose_w"]
    lm[31:36, 0] = [-nw, -nw / 2, 0, nw / 2, nw]
    lm[31:36, 1] = p["nose_tip"] + np.array([0.05, 0.07, 0.08, 0.07, 0.05])
    # eyes 36..41 (image left: outer corner, upper x2, inner corner, lower x2), 42..47
    ang = np.deg2rad([180, 120, 60, 0, -60, -120])
    for base, cx in ((36, -ex), (42, ex)):
        lm[base : base + 6, 0] = cx + ew * np.cos(ang)
        lm[base : base + 6, 1] = ey - eh * np.sin(ang)
    # mouth: outer 48..59, inner 60..67
    my, mw, lu, ll = p["mouth_y"], p["mouth_w"], p["lip_up"], p["lip_lo"]
    cr = p["corner_rest"]
    lm[48] = [-mw, my + cr]
    lm[49] = [-0.66 * mw, my - 0.75 * lu]
    lm[50] = [-0.3 * mw, my - 1.05 * lu]
    lm[51] = [0, my - 0.85 * lu]
    lm[52] = [0.3 * mw, my - 1.05 * lu]
    lm[53] = [0.66 * mw, my - 0.75 * lu]
    lm[54] = [mw, my + cr]
    lm[55] = [0.62 * mw, my + 0.8 * ll]
    lm[56] = [0.3 * mw, my + ll]
    lm[57] = [0, my + 1.05 * ll]
    lm[58] = [-0.3 * mw, my + ll]
    lm[59] = [-0.62 * mw, my + 0.8 * ll]
    lm[60] = [-0.86 * mw, my + cr * 0.8]
    lm[61] = [-0.35 * mw, my]
    lm[62] = [0, my]
    lm[63] = [0.35 * mw, my]
    lm[64] = [0.86 * mw, my + cr * 0.8]
    lm[65] = [0.35 * mw, my]
    lm[66] = [0, my]
    lm[67] = [-0.35 * mw, my]
    return lm


def _shape(moves: dict) -> np.ndarray:
    d = np.zeros((68, 2))
    for idx, (dx, dy) in moves.items():
        for i in idx if isinstance(idx, tuple) else (idx,):
            d[i] += (dx, dy)
    return d


_SYM = {i: 16 - i for i in range(17)}
_SYM.update({17 + i: 26 - i for i in range(10)})
_SYM.update({31 + i: 35 - i for i in range(5)})
_SYM.update({36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46})
_SYM.update({48: 54, 49: 53, 50: 52, 59: 55, 58: 56, 60: 64, 61: 63, 67: 65})
_SYM.update({v: k for k, v in list(_SYM.items())})


def _mirror(moves: dict) -> dict:
    """Add the mirrored (x -> -x) move of every off-midline point (iBUG left/right symmetry)."""
    out: dict = {}
    for idx, (dx, dy) in moves.items():
        for i in idx if isinstance(idx, tuple) else (idx,):
            for j, sx in ((i, 1), (_SYM.get(i, i), -1)):
                if sx == -1 and j == i:
                    continue
                ox, oy = out.get((j,), (0.0, 0.0))
                out[(j,)] = (ox + sx * dx, oy + dy)
    return out


UPPER_LID, LOWER_LID = (37, 38), (40, 41)

# AU -> landmark displacement at intensity 1 (face units), given for the image-left half
# (points on the midline are listed once and not mirrored).
AU_SHAPES: dict[int, np.ndarray] = {
    au: _shape(m)
    for au, m in {
        1: _mirror({(20,): (0, -0.09), (21,): (0, -0.12), (19,): (0, -0.05)}),
        2: _mirror({(17,): (0, -0.12), (18,): (0, -0.11), (19,): (0, -0.07)}),
        4: _mirror({(21,): (0.045, 0.09), (20,): (0.025, 0.075), (19,): (0, 0.05), (18,): (0, 0.035),
                    (17,): (0, 0.02), UPPER_LID: (0, 0.012)}),
        5: _mirror({UPPER_LID: (0, -0.06), (36,): (0, -0.01), (39,): (0, -0.01)}),
        6: _mirror({LOWER_LID: (0, -0.028), (48,): (0, -0.01)}),
        7: _mirror({LOWER_LID: (0, -0.032), UPPER_LID: (0, 0.016)}),
        9: {**_mirror({(31, 32): (0, -0.035), (21,): (0.01, 0.02), (49, 50): (0, -0.02),
                       (61,): (0, -0.015)}),
            (27,): (0, 0.01), (28, 29, 30): (0, -0.02), (33,): (0, -0.035),
            (51,): (0, -0.02), (62,): (0, -0.015)},
        10: {**_mirror({(49, 50): (0, -0.05), (61,): (0, -0.05), (48,): (0, -0.01),
                        (31, 32): (0, -0.012)}),
             (51,): (0, -0.05), (62,): (0, -0.05), (33,): (0, -0.012)},
        12: _mirror({(48,): (-0.09, -0.14), (60,): (-0.08, -0.13), (49,): (-0.045, -0.06),
                     (59,): (-0.04, -0.07), (58,): (-0.01, -0.025), (41,): (0, -0.01)}),
        15: _mirror({(48,): (0, 0.12), (60,): (0, 0.11), (59,): (0, 0.05), (49,): (0, 0.04)}),
        16: {**_mirror({(58, 59): (0, 0.045), (67,): (0, 0.045)}), (57,): (0, 0.055),
             (66,): (0, 0.05)},
        17: {**_mirror({(58, 59): (0, -0.03), (67,): (0, -0.02), (48,): (0, 0.015),
                        (7,): (0, -0.03)}),
             (57,): (0, -0.03), (66,): (0, -0.02), (8,): (0, -0.035)},
        20: _mirror({(48,): (-0.10, 0.02), (60,): (-0.09, 0.016), (49,): (-0.03, 0.005),
                     (59,): (-0.03, 0.005)}),
        23: {**_mirror({(49, 50): (0, 0.018), (58, 59): (0, -0.02), (48,): (0.02, 0),
                        (60,): (0.02, 0)}),
             (51,): (0, 0.018), (57,): (0, -0.022)},
        24: {**_mirror({(49, 50): (0, 0.015), (58, 59): (0, -0.02), (48,): (0.015, 0),
                        (60,): (0.015, 0), (61,): (0, 0.006), (67,): (0, -0.006)}),
             (51,): (0, 0.015), (57,): (0, -0.02), (62,): (0, 0.006), (66,): (0, -0.006)},
        25: {**_mirror({(61,): (0, -0.015), (67,): (0, 0.06), (58, 59): (0, 0.055)}),
             (62,): (0, -0.015), (66,): (0, 0.065), (57,): (0, 0.06)},
        26: {**_mirror({(67,): (0, 0.10), (58,): (0, 0.10), (59,): (0, 0.08), (48,): (0, 0.025),
                        (60,): (0, 0.025), (7,): (0, 0.085), (6,): (0, 0.055), (5,): (0, 0.025)}),
             (66,): (0, 0.11), (57,): (0, 0.11), (8,): (0, 0.095)},
        27: {**_mirror({(67,): (0, 0.16), (58,): (0, 0.16), (59,): (0.03, 0.13), (48,): (0.04, 0.05),
                        (60,): (0.04, 0.05), (49, 50): (0, -0.02), (61,): (0, -0.02),
                        (7,): (0, 0.14), (6,): (0, 0.09), (5,): (0, 0.04)}),
             (66,): (0, 0.17), (57,): (0, 0.17), (8,): (0, 0.15), (51,): (0, -0.02),
             (62,): (0, -0.02)},
    }.items()
}
_SHAPE_STACK = np.stack([AU_SHAPES[a] for a in AU_IDS])  # (n_au, 68, 2)
_SHAPE_STACK[:, 17:48] *= CUE_GAIN  # brows, eyes, nose; the jaw keeps its moves (stays in frame)
_SHAPE_STACK[:, 48:] *= MOUTH_GAIN  # lips: more would open the mouth past the chin


def face_landmarks(p: dict, aus: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """Identity template + AU blend shapes (face units); inner lips never cross."""
    template = _template(p) if template is None else template
    lm = template + np.tensordot(aus, _SHAPE_STACK, 1)
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        if lm[lo, 1] < lm[up, 1]:
            lm[up, 1] = lm[lo, 1] = 0.5 * (lm[up, 1] + lm[lo, 1])
    return lm


# --------------------------------------------------------------------------- sampling
def sample_aus(rng: np.random.Generator, label: int, codebook="paper002"):
    """AU intensities (len(AU_IDS),) and the expression intensity for ``label``."""
    aus = np.zeros(len(AU_IDS))
    cb = get_codebook(codebook).aus(label)
    intensity = rng.uniform(0.5, 1.0) if cb else 0.0
    if cb:
        on = rng.random(len(cb)) < P_CODEBOOK_AU
        need = min(2, len(cb)) - on.sum()
        if need > 0:
            on[rng.choice(np.flatnonzero(~on), need, replace=False)] = True
        for au, o in zip(cb, on):
            if o:
                aus[AU_INDEX[au]] = intensity * rng.uniform(0.6, 1.0)
    noise = (rng.random(len(AU_IDS)) < P_NOISE_AU) & (aus == 0)
    aus[noise] = rng.uniform(0.1, 0.4, noise.sum())
    return aus, intensity


def valence_arousal(rng: np.random.Generator, label: int, intensity: float) -> tuple[float, float]:
    va = VA_PROTOTYPES[label] * (intensity if label != 6 else 1.0) + rng.normal(0, 0.08, 2)
    return tuple(np.clip(va, -1, 1))


# --------------------------------------------------------------------------- rendering
def _mix(a, b, t):
    """Colour ``a`` blended towards ``b`` (a colour or a grey level) by ``t``, as an int tuple."""
    if not hasattr(b, "__len__"):
        b = (b, b, b)
    return tuple(int(min(255.0, max(0.0, x * (1 - t) + y * t)) + 0.5) for x, y in zip(a, b))


def _pose(rng: np.random.Generator, size: int):
    """Face units -> supersampled pixels: (A 2x2, t 2), and the unit length in pixels."""
    ang = math.radians(rng.uniform(-12, 12))
    unit = size * rng.uniform(0.40, 0.47)
    cx = size / 2 + rng.normal(0, 0.03 * size)
    cy = size * 0.485 + rng.normal(0, 0.03 * size)
    a = unit * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    return a, np.array([cx, cy]), unit


def _render(p: dict, lm_f: np.ndarray, aus: np.ndarray, a: np.ndarray, t: np.ndarray,
            size: int, bg) -> Image.Image:
    """Draw one face at SS x ``size``; ``lm_f`` in face units, ``a, t`` map them to pixels."""
    big = size * SS
    A, T = a * SS, t * SS + (SS - 1) / 2

    def P(pts):  # face units -> flat [x0, y0, x1, ...] at the supersampled scale
        return (np.reshape(pts, (-1, 2)) @ A.T + T).ravel().tolist()

    unit = float(np.hypot(*A[:, 0]))
    w = lambda f: max(1, int(round(f * unit)))  # noqa: E731  line width from face units
    I = lambda au: float(aus[AU_INDEX[au]])  # noqa: E731
    skin, hair = p["skin"], p["hair"]
    dark = tuple(0.45 * x for x in skin)

    im = Image.new("RGB", (big, big), _mix(bg, bg, 0))
    d = ImageDraw.Draw(im)
    # hair behind the head (long style), shoulders, neck, ears
    fw, top = p["face_w"], p["jaw_top"]
    head_top = top - p["forehead"]
    if p["hair_style"] == 1:
        d.polygon(P([[-fw - 0.15, head_top + 0.3], [fw + 0.15, head_top + 0.3],
                     [fw + 0.25, 1.3], [-fw - 0.25, 1.3]]), fill=_mix(hair, hair, 0))
    d.polygon(P([[-1.6, 2.2], [-1.3, 1.25], [1.3, 1.25], [1.6, 2.2]]), fill=_mix(p["cloth"], 0, 0))
    d.polygon(P([[-0.38, 0.5], [0.38, 0.5], [0.42, 1.35], [-0.42, 1.35]]), fill=_mix(skin, 0, 0.15))
    for sx in (-1, 1):
        d.ellipse(_box(P([sx * fw, top + 0.05]), 0.12 * unit, 0.2 * unit), fill=_mix(skin, 0, 0.08))
    # head: jaw + forehead arc
    th = np.linspace(0, np.pi, 15)
    arc = np.stack([fw * np.cos(th), top - p["forehead"] * np.sin(th)], 1)
    d.polygon(P(np.concatenate([lm_f[0:17], arc[1:-1]])), fill=_mix(skin, 0, 0))
    # hair on top
    if p["hair_style"] != 2:
        line = -0.62 if p["hair_style"] == 3 else -0.8
        outer = np.stack([1.06 * fw * np.cos(th), top + 0.05 - 1.08 * p["forehead"] * np.sin(th)], 1)
        back = th[::-1]  # hairline: from the left temple over the forehead to the right one
        inner = np.stack([fw * np.cos(back), np.minimum(top, line + 0.25 * np.cos(back) ** 2)], 1)
        d.polygon(P(np.concatenate([outer, inner])), fill=_mix(hair, hair, 0))
    # AU6: raised cheeks (rosy bulge) and crow's feet
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
    # AU12 (and resting) nasolabial folds
    fold = _mix(skin, dark, 0.12 + 0.7 * I(12))
    for nose, corner, sx in ((31, 48, -1), (35, 54, 1)):
        n0 = lm_f[nose] + [sx * 0.06, -0.03]
        c0 = lm_f[corner] + [sx * 0.06, 0.05]
        mid = 0.5 * (n0 + c0) + [sx * 0.05, 0]
        d.line(P([n0, mid, c0]), fill=fold, width=w(CUE_WIDTH * 0.02))
    # AU1/AU2 forehead wrinkles, AU4 furrow, AU9 nose wrinkles, AU17 chin
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
    # eyes: sclera, iris clipped by lids, lid lines
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
    # brows
    bcol = _mix(hair, 0, 0.25)
    for lo, hi in ((17, 22), (22, 27)):
        br = lm_f[lo:hi]
        d.line(P(br), fill=bcol, width=w(p["brow_thick"]), joint="curve")
    # nose
    ncol = _mix(skin, dark, 0.55)
    d.line(P(lm_f[31:36]), fill=ncol, width=w(0.018))
    d.line(P(lm_f[[28, 30]] + [0.035, 0]), fill=_mix(skin, dark, 0.25), width=w(0.015))
    for i in (32, 34):
        d.ellipse(_box(P(lm_f[i] + [0, -0.01]), 0.025 * unit, 0.014 * unit), fill=_mix(dark, 0, 0.3))
    # mouth: lips, dark interior, teeth
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
    d.line(P(inner[[0, 1, 2, 3, 4]]), fill=_mix(p["lip"], 0, 0.5 + 0.3 * I(24)), width=w(0.012))
    return im


def _box(c, rx, ry):
    return [c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry]


# --------------------------------------------------------------------------- public API
@dataclass
class SynthBatch:
    """Synthetic faces and their ground truth (numpy arrays, aligned on the first axis)."""

    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    labels: np.ndarray  # (N,) int64, project order
    identities: np.ndarray  # (N,) int64
    aus: np.ndarray  # (N, len(AU_IDS)) float32 intensities in [0, 1] over au.AU_IDS
    landmarks: np.ndarray  # (N, 68, 2) float32, pixels (pixel i has its centre at i)
    valence: np.ndarray  # (N,) float32 in [-1, 1]
    arousal: np.ndarray  # (N,) float32 in [-1, 1]
    intensity: np.ndarray  # (N,) float32 expression intensity (0 for neutral)
    au_ids: tuple[int, ...] = AU_IDS

    def __len__(self) -> int:
        return len(self.labels)


def identities(n_identities: int, seed: int) -> list[dict]:
    return [_identity_params(np.random.default_rng([seed, 1, k])) for k in range(n_identities)]


def generate(
    n: int,
    image_size: int = 64,
    seed: int = 0,
    n_identities: int = 40,
    *,
    start: int = 0,
    labels: np.ndarray | None = None,
    progress: bool = False,
) -> SynthBatch:
    """Generate images ``start .. start+n-1`` of the stream defined by ``seed``.

    Expressions are uniform over the 7 classes unless ``labels`` fixes them; identities are
    uniform over ``n_identities``.
    """
    if n < 0 or image_size < 16 or n_identities < 1:
        raise ConfigError(
            f"synthetic faces need n >= 0, image_size >= 16 and n_identities >= 1, "
            f"got n={n}, image_size={image_size}, n_identities={n_identities}"
        )
    ids = identities(n_identities, seed)
    templates = [_template(p) for p in ids]
    s = image_size
    out = SynthBatch(
        images=np.zeros((n, s, s, 3), np.uint8),
        labels=np.zeros(n, np.int64),
        identities=np.zeros(n, np.int64),
        aus=np.zeros((n, len(AU_IDS)), np.float32),
        landmarks=np.zeros((n, 68, 2), np.float32),
        valence=np.zeros(n, np.float32),
        arousal=np.zeros(n, np.float32),
        intensity=np.zeros(n, np.float32),
    )
    yy, xx = (np.mgrid[0:s, 0:s] / (s - 1) * 2 - 1).astype(np.float32)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="synthetic faces", unit="img", leave=False)
    for j in it:
        rng = np.random.default_rng([seed, 2, start + j])
        label = int(rng.integers(NUM_CLASSES)) if labels is None else int(labels[j])
        ident = int(rng.integers(n_identities))
        p = ids[ident]
        aus, inten = sample_aus(rng, label)
        val, aro = valence_arousal(rng, label, inten)
        a, t, _ = _pose(rng, s)
        lm_f = face_landmarks(p, aus, templates[ident])
        bg = tuple(np.clip(np.array(p["bg"]) + rng.normal(0, 12, 3), 0, 255).tolist())
        im = _render(p, lm_f, aus, a, t, s, bg).reduce(SS)
        img = np.asarray(im, np.float32)
        phi = rng.uniform(0, 2 * np.pi)
        light = rng.uniform(0.8, 1.15) * (1 + rng.uniform(0, 0.35) * (xx * np.cos(phi) + yy * np.sin(phi)))
        sigma = rng.uniform(2, 7)
        img = img * light[..., None] + sigma * rng.standard_normal(img.shape, dtype=np.float32)
        out.images[j] = np.clip(img, 0, 255).astype(np.uint8)
        out.labels[j], out.identities[j] = label, ident
        out.aus[j] = aus
        out.landmarks[j] = lm_f @ a.T + t
        out.valence[j], out.arousal[j], out.intensity[j] = val, aro, inten
    return out


def to_pil(images: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(x) for x in images]
