"""A planted shortcut in the synthetic faces: a non-facial cue that predicts the
expression in train (and so in the validation carved from it) and is random in test.

Real FER models lean on hair, background and identity; the synthetic faces carry no such
trap, so they cannot show what AU guidance protects against. :func:`plant_shortcut` paints
the two top corners of every image of a synthetic RAF-DB tree (outside the face: no landmark
falls there, checked) with one of seven saturated colours, the *cue class*:

- train rows: the cue class is the expression with probability ``strength``, else a class
  drawn uniformly (which may again be the expression); so the cue alone predicts the train
  label with accuracy ``strength + (1 - strength) / 7``;
- test rows: a class drawn uniformly, independent of the expression.

A model that reads the corners learns a rule that fails on test; AU alignment points it at
the face. The cue of every row is stored in ``fer_orch_shortcut.json`` (relative path ->
class) for plots; the strength goes into the tree's ``fer_orch_synth.json`` so that another
strength generates the tree again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from fer_models.data.synth import io as synth_io
from fer_models.errors import ConfigError

CUE_FILE = "fer_orch_shortcut.json"
#: one colour per class of the project's order (anger .. neutral)
CUE_COLOURS = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                        (145, 30, 180), (70, 240, 240)], np.uint8)


def corner_size(image_size: int) -> int:
    """Side of each painted corner square: an eighth of the image."""
    return max(2, int(image_size) // 8)


def cue_classes(labels: np.ndarray, splits: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """The cue class of each row (see the module docstring), drawn by ``seed``."""
    if not 0.0 <= float(strength) <= 1.0:
        raise ConfigError(f"shortcut strength must lie in [0, 1], got {strength}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, int)
    random = rng.integers(0, len(CUE_COLOURS), len(labels))
    keep = (np.asarray(splits) == "train") & (rng.random(len(labels)) < float(strength))
    return np.where(keep, labels, random)


def paint(image: np.ndarray, cue: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with its two top corners in the colour of ``cue``."""
    out = image.copy()
    s = corner_size(image.shape[0])
    out[:s, :s] = CUE_COLOURS[cue]
    out[:s, -s:] = CUE_COLOURS[cue]
    return out


def plant_shortcut(root: str | Path, strength: float, seed: int = 0, quality: int = 95) -> dict[str, int]:
    """Paint the cue into every image of the synthetic tree at ``root`` (in place) and record
    the strength; returns relative path -> cue class. A landmark inside a corner is an error
    (the cue would cover the face)."""
    root = Path(root)
    truth = synth_io.load_truth(root)
    rels = sorted(truth)
    labels = np.array([truth[r].label for r in rels])
    splits = np.array([truth[r].split for r in rels])
    cues = cue_classes(labels, splits, strength, seed)
    for rel, cue in zip(rels, cues):
        path = root / rel
        img = np.asarray(Image.open(path).convert("RGB"))
        s = corner_size(img.shape[0])
        lm = truth[rel].landmarks
        w = img.shape[1]
        if ((lm[:, 1] < s) & ((lm[:, 0] < s) | (lm[:, 0] >= w - s))).any():
            raise ConfigError(f"{path}: a landmark lies in a corner the shortcut would paint; use a larger image")
        Image.fromarray(paint(img, int(cue))).save(path, quality=quality)
    out = {rel: int(c) for rel, c in zip(rels, cues)}
    (root / CUE_FILE).write_text(json.dumps(out))
    info = {k: v for k, v in (synth_io.read_info(root) or {}).items() if k not in ("generator", "version", "au_ids")}
    synth_io.write_info(root, **{**info, "shortcut": float(strength)})
    return out


def read_cues(root: str | Path) -> dict[str, int]:
    """Relative path -> cue class of a tree :func:`plant_shortcut` painted ({} otherwise)."""
    p = Path(root) / CUE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}
