"""Synthetic expressive faces: the offline default dataset and the test data.

Each *identity* is a parametric 68-landmark face (iBUG 300-W order) — face and jaw shape,
eye spacing and size, brows, nose, mouth and lips, skin tone, hair colour and style, iris,
clothing and background. Each *image* picks an identity and an expression, activates the
expression's AUs from the ``paper002`` codebook with random intensities (each codebook AU
is present with probability 0.8, at least two are, plus sparse off-codebook "AU noise"), and
then

- moves the landmarks: a linear blend-shape model, one displacement field per AU
  (``synth.face.AU_SHAPES``, face units) scaled by the AU's intensity;
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
The face is a cartoon, not a photograph: it is meant to make a FER task whose cues are the
AUs, with identity and nuisance variation, that is learnable but not trivial at 48-64 px.

The package: the face model (identities, landmarks, AU blend shapes) is
:mod:`fer_models.data.synth.face`, the PIL drawing :mod:`fer_models.data.synth.render`;
this module samples expressions, AUs, valence/arousal, pose, lighting and noise, and streams
the images (:func:`generate`). The official layouts the real readers read are written by
:mod:`~fer_models.data.synth.io` (RAF-DB, AffectNet; the side file of ground truth),
:mod:`~fer_models.data.synth.frames` (CK+, DISFA: whole frames),
:mod:`~fer_models.data.synth.portraits` (RaFD, KDEF: camera angles) and
:mod:`~fer_models.data.synth.packed` (TFD, FER2013: pixels in one file);
:mod:`~fer_models.data.synth.shortcut` plants a shortcut cue in a written dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fer_models.data.au import AU_IDS, AU_INDEX, get_codebook
from fer_models.data.synth.face import face_landmarks, identity_params, neutral_landmarks
from fer_models.data.synth.render import render_face
from fer_models.errors import ConfigError
from fer_models.labels import NUM_CLASSES

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


def _pose(rng: np.random.Generator, size: int):
    """Face units -> supersampled pixels: (A 2x2, t 2), and the unit length in pixels."""
    ang = math.radians(rng.uniform(-12, 12))
    unit = size * rng.uniform(0.40, 0.47)
    cx = size / 2 + rng.normal(0, 0.03 * size)
    cy = size * 0.485 + rng.normal(0, 0.03 * size)
    a = unit * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    return a, np.array([cx, cy]), unit


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
    return [identity_params(np.random.default_rng([seed, 1, k])) for k in range(n_identities)]


def generate(
    n: int,
    image_size: int = 64,
    seed: int = 0,
    n_identities: int = 40,
    *,
    start: int = 0,
    labels: np.ndarray | None = None,
    identities_of: np.ndarray | None = None,
    progress: bool = False,
) -> SynthBatch:
    """Generate images ``start .. start+n-1`` of the stream defined by ``seed``.

    Expressions are uniform over the 7 classes unless ``labels`` fixes them; identities are
    uniform over ``n_identities`` unless ``identities_of`` fixes them (the sequences of one
    subject in the CK+-like stand-in). Fixing either leaves every other draw unchanged.
    """
    if n < 0 or not 16 <= image_size <= 1024 or n_identities < 1:
        raise ConfigError(
            f"synthetic faces need n >= 0, 16 <= image_size <= 1024 and n_identities >= 1, "
            f"got n={n}, image_size={image_size}, n_identities={n_identities}"
        )
    ids = identities(n_identities, seed)
    templates = [neutral_landmarks(p) for p in ids]
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
        if identities_of is not None:
            ident = int(identities_of[j])
        p = ids[ident]
        aus, inten = sample_aus(rng, label)
        val, aro = valence_arousal(rng, label, inten)
        a, t, _ = _pose(rng, s)
        lm_f = face_landmarks(p, aus, templates[ident])
        bg = tuple(np.clip(np.array(p["bg"]) + rng.normal(0, 12, 3), 0, 255).tolist())
        im = render_face(p, lm_f, aus, a, t, s, bg)
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
