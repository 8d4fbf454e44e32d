"""Where each AU shows on the face: the location rules of the AU maps (paper 002, Sec. 3.2), and FACS names.

Each AU has a *location rule* (:data:`AU_RULES`): one or two centres, each a weighted mean
of the 68 iBUG 300-W landmarks (0-based indices) plus an offset, and an elliptic Gaussian
footprint. Offsets and the footprint's standard deviations are in units of the
inter-ocular distance (IOD, between the two eye centres) and expressed in the face's own
frame (x along the eye line, y perpendicular to it, pointing to the chin), so a map follows
the face's size and in-plane rotation, never fixed pixels. Paper 002 gives one rule only
(the cheek from "landmark 47 and 11", 1-based, i.e. lower outer eye point 46 and jaw point
10, 0-based); the others are ours, placed where FACS describes each AU's appearance change
(the released code's exact radii are not in the paper, so we choose a footprint of about a
fifth of the IOD, the size of a facial feature).

:data:`AU_NAMES` holds the FACS names (Ekman & Friesen) of the codebooks' AUs and of those
CK+ codes beside them (AU11, 14, 18, 22, 28, 43, ...), for tables and figures.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# Landmark groups (iBUG 300-W, 0-based).
R_EYE = tuple(range(36, 42))  # subject's right eye = image left
L_EYE = tuple(range(42, 48))


def _c(idx: Mapping[int, float] | Sequence[int], off: tuple[float, float] = (0.0, 0.0)):
    """One centre: landmark index -> weight (a sequence = plain mean), offset in IOD units."""
    if not isinstance(idx, Mapping):
        idx = {int(i): 1.0 / len(idx) for i in idx}
    return dict(idx), off


# AU -> (name, centres, (sigma_x, sigma_y) in IOD units along the face's x / y axes).
AU_RULES: dict[int, tuple[str, list, tuple[float, float]]] = {
    1: ("inner brow raiser", [_c([20, 21], (0, -0.10)), _c([22, 23], (0, -0.10))], (0.16, 0.14)),
    2: ("outer brow raiser", [_c([17, 18], (0, -0.10)), _c([25, 26], (0, -0.10))], (0.16, 0.14)),
    4: ("brow lowerer", [_c([21, 22], (0, -0.02))], (0.28, 0.14)),
    5: ("upper lid raiser", [_c([37, 38]), _c([43, 44])], (0.18, 0.09)),
    6: ("cheek raiser", [_c({41: 0.5, 6: 0.5}), _c({46: 0.5, 10: 0.5})], (0.20, 0.18)),
    7: ("lid tightener", [_c([40, 41]), _c([46, 47])], (0.18, 0.09)),
    9: ("nose wrinkler", [_c({28: 0.6, 31: 0.4}), _c({28: 0.6, 35: 0.4})], (0.10, 0.16)),
    10: ("upper lip raiser", [_c({50: 0.8, 31: 0.2}), _c({52: 0.8, 35: 0.2})], (0.14, 0.10)),
    12: ("lip corner puller", [_c([48], (-0.04, -0.04)), _c([54], (0.04, -0.04))], (0.15, 0.15)),
    15: ("lip corner depressor", [_c([48], (0, 0.14)), _c([54], (0, 0.14))], (0.13, 0.15)),
    16: ("lower lip depressor", [_c([56, 57, 58], (0, 0.06))], (0.22, 0.10)),
    17: ("chin raiser", [_c({57: 0.4, 8: 0.6})], (0.22, 0.13)),
    20: ("lip stretcher", [_c([48], (-0.14, 0)), _c([54], (0.14, 0))], (0.12, 0.15)),
    23: ("lip tightener", [_c([50, 51, 52]), _c([56, 57, 58])], (0.24, 0.08)),
    24: ("lip pressor", [_c([62, 66])], (0.28, 0.10)),
    25: ("lips part", [_c(range(60, 68))], (0.22, 0.10)),
    26: ("jaw drop", [_c({57: 0.7, 8: 0.3}, (0, 0.04))], (0.26, 0.16)),
    27: ("mouth stretch", [_c([62, 66])], (0.18, 0.26)),
}

#: FACS names (Ekman & Friesen): the codebooks' AUs and others CK+ codes
AU_NAMES = {
    1: "Inner Brow Raiser", 2: "Outer Brow Raiser", 4: "Brow Lowerer", 5: "Upper Lid Raiser",
    6: "Cheek Raiser", 7: "Lid Tightener", 9: "Nose Wrinkler", 10: "Upper Lip Raiser",
    11: "Nasolabial Deepener", 12: "Lip Corner Puller", 14: "Dimpler", 15: "Lip Corner Depressor",
    16: "Lower Lip Depressor", 17: "Chin Raiser", 18: "Lip Pucker", 20: "Lip Stretcher",
    22: "Lip Funneler", 23: "Lip Tightener", 24: "Lip Pressor", 25: "Lips Part",
    26: "Jaw Drop", 27: "Mouth Stretch", 28: "Lip Suck", 43: "Eyes Closed", 45: "Blink",
    13: "Sharp Lip Puller", 21: "Neck Tightener", 29: "Jaw Thrust", 31: "Jaw Clencher", 34: "Cheek Puff",
    38: "Nostril Dilator", 39: "Nostril Compressor", 44: "Squint",
}


def _compile_rules(au_ids: Sequence[int]):
    """Rules as arrays: W (n_au, k, 68) landmark weights, OFF (n_au, k, 2), SIG (n_au, 2).

    AUs with fewer than ``k`` centres repeat their last centre (harmless under ``max``).
    """
    k = max(len(AU_RULES[a][1]) for a in au_ids)
    w = np.zeros((len(au_ids), k, 68), np.float64)
    off = np.zeros((len(au_ids), k, 2), np.float64)
    sig = np.zeros((len(au_ids), 2), np.float64)
    for i, au in enumerate(au_ids):
        _, centres, s = AU_RULES[au]
        for j in range(k):
            idx, o = centres[min(j, len(centres) - 1)]
            for lm, wt in idx.items():
                w[i, j, lm] = wt
            off[i, j] = o
        sig[i] = s
    return w, off, sig


def face_frame(landmarks: np.ndarray):
    """IOD (B,), unit eye-line vector ``ex`` (B, 2) and its perpendicular ``ey`` (to the chin)."""
    lm = np.asarray(landmarks, np.float64)
    right = lm[:, R_EYE].mean(1)
    left = lm[:, L_EYE].mean(1)
    d = left - right
    iod = np.linalg.norm(d, axis=-1)
    ex = d / np.maximum(iod, 1e-9)[:, None]
    ey = np.stack([-ex[:, 1], ex[:, 0]], -1)  # rotate +90 deg in image coords (y down)
    return iod, ex, ey
