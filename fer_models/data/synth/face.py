"""The parametric face of the synthetic data: identities, landmarks, AU blend shapes.

An *identity* (:func:`identity_params`) is a dict of shape and colour parameters; its
neutral 68 landmarks (:func:`neutral_landmarks`, iBUG 300-W order) are in *face units*
(x to the right, y towards the chin, eyes near y = -0.2). An expression moves them by a
linear blend-shape model, one displacement field per AU (:data:`AU_SHAPES`) scaled by the
AU's intensity (:func:`face_landmarks`). Pixels are :mod:`fer_models.data.synth.render`'s
job, sampling and the dataset stream :mod:`fer_models.data.synth`'s.
"""

from __future__ import annotations

import numpy as np

from fer_models.data.au import AU_IDS

# Cue strength (generator version 4): at the CPU preset's 32 px a face unit is ~14 px, so the
# version-3 cues (brow/lid moves of 0.05 units, 0.7 px wrinkle lines) were below what a small
# CNN trained for 3 epochs picks up (CAM w/o AU stayed at chance, 11-16%). AU landmark moves
# are scaled by CUE_GAIN (brows, lids, nose) and MOUTH_GAIN (lips; the jaw keeps its moves),
# AU wrinkle/fold lines widened by synth.render.CUE_WIDTH, the AU6 cheek tint and the brows
# made stronger and the face a little larger. Measured: see the commit introducing version 4.
CUE_GAIN = 2.5
MOUTH_GAIN = 1.5


def identity_params(rng: np.random.Generator) -> dict:
    """One identity's shape and colour parameters (colours as float tuples)."""
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


def neutral_landmarks(p: dict) -> np.ndarray:
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
    template = neutral_landmarks(p) if template is None else template
    lm = template + np.tensordot(aus, _SHAPE_STACK, 1)
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        if lm[lo, 1] < lm[up, 1]:
            lm[up, 1] = lm[lo, 1] = 0.5 * (lm[up, 1] + lm[lo, 1])
    return lm
