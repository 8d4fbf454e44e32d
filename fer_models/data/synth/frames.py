"""Synthetic faces in *whole frames*: CK+'s and DISFA's official layouts (stand-ins).

The faces of :mod:`fer_models.data.synth` fill their image; CK+, KDEF, RaFD and DISFA ship
whole frames where the face is a small, off-centre part. These writers paste a synthetic
face (``image_size`` px) at an off-centre place of a larger grey frame, so that a dataset
read by the real ``ckplus`` / ``disfa`` readers goes through the same crop-by-landmarks
preprocessing as the real data. The ground truth (identity, landmarks *in frame pixels*,
AUs, valence/arousal, expression) goes to the same side file as the other synthetic sets
(:func:`fer_models.data.synth.io.write_side`).

CK+ (:func:`write_ckplus`): ``n_identities`` subjects ``S001..`` with ``n_sequences``
sequences each; a sequence is one expression: an onset frame with the neutral face, one
intermediate frame and three peak frames (the reader keeps the first and the last three),
with ``Emotion/`` (CK+ ids) and ``FACS/`` files (the AUs active in the last frame, with
CK+'s A-E intensity scale 1-5), which also label AUs the codebooks do not use
(:data:`CKPLUS_EXTRA_AUS`, as real CK+ codes AU11, 14, 22, 43, ...). The face keeps its place within a sequence (a subject
sitting still) and moves between sequences. Frames are 8-bit grey PNGs, as CK+'s mostly are.

DISFA (:func:`write_disfa`): ``n_identities`` subjects ``SN001..`` with ``n_frames``
extracted frames each (``Frames_LeftCamera/SN001/00001.png``) and one label file per AU
(``ActionUnit_Labels/SN001/SN001_au1.txt``, ``frame,intensity`` on DISFA's 0-5 scale, for
DISFA's 12 AUs). Expressions are drawn at random (a video of spontaneous expressions);
DISFA ships none, the side file keeps the one drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fer_models.data import synth
from fer_models.data.synth import io as synth_io
from fer_models.data.au import AU_IDS, AU_INDEX
from fer_models.data.readers import ckplus
from fer_models.errors import ConfigError
from fer_models.labels import INDEX, NEUTRAL, NUM_CLASSES

PROJECT_TO_CK = {p: c for c, p in ckplus.CK_TO_PROJECT.items()}
DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
SEQUENCE = ("onset", "mid", "peak", "peak", "peak")  # the frames of one CK+ sequence
LAYOUTS = ("ckplus", "disfa")
#: AUs beyond the codebooks' that the CK+ stand-in labels, each with the expression it is
#: paired with: present in 70 % of that expression's sequences and 10 % of the others, at
#: full intensity on the peak frames, half on the intermediate one, 0 on the onset. They are
#: labels only (the face renderer draws the codebooks' AUs): a network can tell them only
#: through the expression they come with. AU11 with sadness and AU22 with anger follow EMFACS'
#: variants; AU14 with happiness and AU43 with disgust are arbitrary pairings.
CKPLUS_EXTRA_AUS = {11: INDEX["sadness"], 14: INDEX["happiness"], 22: INDEX["anger"], 43: INDEX["disgust"]}
P_EXTRA_AU, P_EXTRA_AU_OTHER = 0.7, 0.1


def _paste(face: np.ndarray, landmarks: np.ndarray, frame: tuple[int, int], at: tuple[int, int],
           rng: np.random.Generator, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """``face`` pasted with its top-left corner at ``at`` into a ``frame`` (W, H) filled with
    the face image's border colour under a soft vertical light gradient (a studio backdrop;
    smooth, so the PNG files stay small); returns (frame image, landmarks in frame pixels)."""
    w, h = frame
    s = face.shape[0]
    border = np.concatenate([face[0], face[-1], face[:, 0], face[:, -1]]).astype(np.float32)
    shade = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None, None] * rng.uniform(4, 12)
    canvas = np.broadcast_to(border.mean(0) + shade, (h, w, 3)).copy()
    canvas[at[1]: at[1] + s, at[0]: at[0] + s] = face
    img = np.clip(canvas, 0, 255).astype(np.uint8)
    if gray:
        img = np.asarray(Image.fromarray(img).convert("L"))
    return img, landmarks + np.asarray(at, np.float32)


def _offset(rng: np.random.Generator, frame: tuple[int, int], s: int) -> tuple[int, int]:
    """An off-centre place for an ``s`` px face in a ``frame`` (W, H): anywhere it fits,
    but at least a fifth of the free width away from the centre."""
    w, h = frame
    if s >= min(w, h):
        raise ConfigError(f"a {s} px synthetic face does not fit a {w}x{h} frame; choose a smaller image_size")
    free_x, free_y = w - s, h - s
    side = rng.choice([-1, 1])
    x = int(free_x / 2 + side * rng.uniform(0.2, 0.5) * free_x)
    return int(np.clip(x, 0, free_x)), int(rng.integers(0, free_y + 1))


def _frame_size(frame: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(frame).lower().split("x"))
    except ValueError:
        raise ConfigError(f"frame must look like 640x490 (width x height), got '{frame}'") from None
    return w, h


def write_ckplus(out: str | Path, n_identities: int = 12, n_sequences: int = 3, image_size: int = 64,
                 frame: str = "320x245", seed: int = 0, *, overwrite: bool = False,
                 progress: bool = False) -> Path:
    """CK+'s layout with whole frames (module docstring); returns ``out``."""
    size = _frame_size(frame)
    out = synth_io.make_root(out, overwrite)
    rng = np.random.default_rng([seed, 7])
    n_seq = n_identities * n_sequences
    seq_labels = np.array([k % (NUM_CLASSES - 1) for k in range(n_seq)])  # the six non-neutral classes
    seq_labels = seq_labels[rng.permutation(n_seq)]
    per = len(SEQUENCE)
    labels = np.array([NEUTRAL if role == "onset" else lab for lab in seq_labels for role in SEQUENCE])
    idents = np.repeat(np.arange(n_seq) // n_sequences, per)
    b = synth.generate(len(labels), image_size, seed, n_identities, labels=labels, identities_of=idents,
                       progress=progress)
    extra = _extra_aus(np.random.default_rng([seed, 11]), seq_labels)  # (n_seq, n_extra) peak intensities
    side = []
    for k in range(n_seq):
        subject, seq = f"S{k // n_sequences + 1:03d}", f"{k % n_sequences + 1:03d}"
        at = _offset(rng, size, image_size)
        folder = out / ckplus.IMAGES / subject / seq
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(per):
            j = k * per + f
            img, lm = _paste(b.images[j], b.landmarks[j], size, at, rng, gray=True)
            name = f"{subject}_{seq}_{f + 1:08d}"
            Image.fromarray(img).save(folder / f"{name}.png", compress_level=1)
            scale = {"onset": 0.0, "mid": 0.5}.get(SEQUENCE[f], 1.0)
            side.append(synth_io.side_row(f"{ckplus.IMAGES}/{subject}/{seq}/{name}.png", "train", b, j, lm,
                                          extra_aus=extra[k] * scale))
        last = k * per + per - 1
        coded = [(au, b.aus[last][i]) for au, i in AU_INDEX.items()] + list(zip(CKPLUS_EXTRA_AUS, extra[k]))
        for sub, suffix, text in (
            (ckplus.EMOTION, "emotion", f"   {PROJECT_TO_CK[int(seq_labels[k])]:.7e}\n"),
            (ckplus.FACS, "facs", "".join(
                f"   {au:.7e}   {min(5, max(1, round(5 * float(v)))):.7e}\n"
                for au, v in sorted(coded) if v > 0)),
        ):
            d = out / sub / subject / seq
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{subject}_{seq}_{per:08d}_{suffix}.txt").write_text(text)
    synth_io.write_side(out, side, extra_au_ids=tuple(CKPLUS_EXTRA_AUS))
    synth_io.write_info(out, AU_IDS + tuple(CKPLUS_EXTRA_AUS), layout="ckplus", n_identities=n_identities,
                        n_sequences=n_sequences, image_size=image_size, frame=frame, seed=seed)
    return out


def _extra_aus(rng: np.random.Generator, seq_labels: np.ndarray) -> np.ndarray:
    """Peak intensities (n_seq, len(CKPLUS_EXTRA_AUS)) of the non-codebook AUs of each sequence."""
    paired = np.array(list(CKPLUS_EXTRA_AUS.values()))[None, :] == np.asarray(seq_labels)[:, None]
    present = rng.random(paired.shape) < np.where(paired, P_EXTRA_AU, P_EXTRA_AU_OTHER)
    return np.where(present, rng.uniform(0.3, 1.0, paired.shape), 0.0).astype(np.float32)


def write_disfa(out: str | Path, n_identities: int = 6, n_frames: int = 40, image_size: int = 64,
                frame: str = "256x192", seed: int = 0, *, overwrite: bool = False,
                progress: bool = False) -> Path:
    """DISFA's layout with whole frames (module docstring); returns ``out``."""
    from fer_models.data.readers import disfa

    size = _frame_size(frame)
    out = synth_io.make_root(out, overwrite)
    rng = np.random.default_rng([seed, 8])
    idents = np.repeat(np.arange(n_identities), n_frames)
    b = synth.generate(len(idents), image_size, seed, n_identities, identities_of=idents, progress=progress)
    side = []
    for subj in range(n_identities):
        name = f"SN{subj + 1:03d}"
        at = _offset(rng, size, image_size)  # a subject facing a fixed camera
        folder = out / "Frames_LeftCamera" / name
        folder.mkdir(parents=True, exist_ok=True)
        lines: dict[int, list[str]] = {au: [] for au in DISFA_AUS}
        for f in range(n_frames):
            j = subj * n_frames + f
            img, lm = _paste(b.images[j], b.landmarks[j], size, at, rng, gray=False)
            Image.fromarray(img).save(folder / f"{f + 1:05d}.png", compress_level=1)
            side.append(synth_io.side_row(f"Frames_LeftCamera/{name}/{f + 1:05d}.png", "test", b, j, lm))
            for au in DISFA_AUS:
                lines[au].append(f"{f + 1},{int(round(5 * float(b.aus[j][AU_INDEX[au]])))}")
        labels = out / disfa.LABELS / name
        labels.mkdir(parents=True, exist_ok=True)
        for au, rows in lines.items():
            (labels / f"{name}_au{au}.txt").write_text("\n".join(rows) + "\n")
    synth_io.write_side(out, side)
    synth_io.write_info(out, layout="disfa", n_identities=n_identities, n_frames=n_frames,
                        image_size=image_size, frame=frame, seed=seed)
    return out


WRITERS = {"ckplus": write_ckplus, "disfa": write_disfa}
