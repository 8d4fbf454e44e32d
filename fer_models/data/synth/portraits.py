"""Synthetic faces in RaFD's and KDEF's official layouts (stand-ins for papers 003 and 004).

Both datasets photograph every subject and expression from several cameras at once and ship
whole portraits named by their metadata. These writers generate one face per (subject,
expression, gaze / session) with :func:`fer_models.data.synth.generate` and *render it at
every camera angle*: the synthetic face is flat, so a turned camera is approximated by
squeezing the face horizontally (by ``SQUEEZE``) and sliding it towards the side it turns
to; the landmarks follow. The face is pasted off-centre into a frame of the dataset's
aspect ratio at a quarter of its size (:func:`fer_models.data.synth.frames._paste`), so the
real ``rafd`` / ``kdef`` readers and the crop-by-landmarks preprocessing run unchanged.

RaFD (:func:`write_rafd`): ``Rafd{angle}_{id:02d}_{ethnicity}_{gender}_{emotion}_{gaze}.jpg``
for the 5 angles (000, 045, 090, 135, 180), the 8 expressions and the 3 gazes; frames
170x256 (681x1024 / 4). The generator has no contempt: a ``contemptuous`` image is drawn
as the subject's neutral face (it keeps the contempt label from its file name), so
contempt and neutral are confusable on the stand-in. The gaze changes nothing but the
face's random draw (a new photograph).

KDEF (:func:`write_kdef`): ``KDEF/{session}{sex}{id:02d}/{session}{sex}{id:02d}{expr}{angle}.JPG``
for sessions A and B, the 7 expressions and the 5 angles (FL, HL, S, HR, FR); frames
140x190 (562x762 / 4); identities alternate F01, M01, F02, M02, ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fer_models.data import synth
from fer_models.data.synth import io as synth_io
from fer_models.data.synth.frames import _frame_size, _offset, _paste
from fer_models.labels import INDEX, NEUTRAL

#: horizontal squeeze of the face per camera (1 = frontal), and the side it slides to
SQUEEZE = {"000": (0.55, -1), "045": (0.8, -1), "090": (1.0, 0), "135": (0.8, 1), "180": (0.55, 1),
           "FL": (0.55, -1), "HL": (0.8, -1), "S": (1.0, 0), "HR": (0.8, 1), "FR": (0.55, 1)}
RAFD_EMOTIONS = ("angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
RAFD_LABELS = {"angry": INDEX["anger"], "contemptuous": NEUTRAL, "disgusted": INDEX["disgust"],
               "fearful": INDEX["fear"], "happy": INDEX["happiness"], "neutral": NEUTRAL,
               "sad": INDEX["sadness"], "surprised": INDEX["surprise"]}
RAFD_ANGLES = ("000", "045", "090", "135", "180")
RAFD_GAZES = ("frontal", "left", "right")
KDEF_EXPRESSIONS = {"AF": INDEX["fear"], "AN": INDEX["anger"], "DI": INDEX["disgust"], "HA": INDEX["happiness"],
                    "NE": NEUTRAL, "SA": INDEX["sadness"], "SU": INDEX["surprise"]}
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")


def _turn(face: np.ndarray, landmarks: np.ndarray, angle: str) -> tuple[np.ndarray, np.ndarray]:
    """The face as a camera at ``angle`` sees it (module docstring): squeezed horizontally
    and slid sideways inside its square, over its own border colour; landmarks follow."""
    squeeze, side = SQUEEZE[angle]
    if squeeze == 1.0:
        return face, landmarks
    s = face.shape[0]
    w = max(8, int(round(s * squeeze)))
    narrow = np.asarray(Image.fromarray(face).resize((w, s), Image.BILINEAR))
    x0 = (s - w) // 2 + side * (s - w) // 4
    border = np.concatenate([face[:, 0], face[:, -1]]).mean(0)
    out = np.broadcast_to(border, face.shape).astype(np.uint8).copy()
    out[:, x0: x0 + w] = narrow
    lm = landmarks.copy()
    lm[:, 0] = x0 + lm[:, 0] * (w / s)
    return out, lm


def _write_views(out: Path, rel_of, views: list[tuple], b: "synth.SynthBatch", frame: tuple[int, int],
                 rng: np.random.Generator, fmt: str) -> list[list]:
    """Each generated face ``j`` at each of its angles: ``views`` holds (j, angle, name
    fields); ``rel_of(fields, angle)`` is the image's path under ``out``."""
    side, places = [], {}
    for j, angle, fields in views:
        place = places.setdefault(j, _offset(rng, frame, b.images.shape[1]))  # one sitting, every camera
        face, lm = _turn(b.images[j], b.landmarks[j], angle)
        img, lm = _paste(face, lm, frame, place, rng, gray=False)
        rel = rel_of(fields, angle)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / rel, format=fmt, quality=92)
        side.append(synth_io.side_row(rel, "train", b, j, lm))
    return side


def write_rafd(out: str | Path, n_identities: int = 8, image_size: int = 64, frame: str = "170x256",
               seed: int = 0, *, overwrite: bool = False, progress: bool = False) -> Path:
    """RaFD's layout with whole portraits (module docstring); returns ``out``."""
    size = _frame_size(frame)
    out = synth_io.make_root(out, overwrite)
    faces = [(k, e, g) for k in range(n_identities) for e in RAFD_EMOTIONS for g in RAFD_GAZES]
    b = synth.generate(len(faces), image_size, seed, n_identities,
                       labels=np.array([RAFD_LABELS[e] for _, e, _ in faces]),
                       identities_of=np.array([k for k, _, _ in faces]), progress=progress)
    people = [("Caucasian", "Moroccan")[(k // 2) % 2] for k in range(n_identities)]
    views = [(j, a, (k, e, g)) for j, (k, e, g) in enumerate(faces) for a in RAFD_ANGLES]

    def rel(fields, angle):
        k, e, g = fields
        return f"Rafd{angle}_{k + 1:02d}_{people[k]}_{('female', 'male')[k % 2]}_{e}_{g}.jpg"

    side = _write_views(out, rel, views, b, size, np.random.default_rng([seed, 9]), "JPEG")
    synth_io.write_side(out, side)
    synth_io.write_info(out, layout="rafd", n_identities=n_identities, image_size=image_size, frame=frame,
                        seed=seed)
    return out


def write_kdef(out: str | Path, n_identities: int = 10, image_size: int = 64, frame: str = "140x190",
               seed: int = 0, *, overwrite: bool = False, progress: bool = False) -> Path:
    """KDEF's layout with whole portraits (module docstring); returns ``out``."""
    size = _frame_size(frame)
    out = synth_io.make_root(out, overwrite)
    faces = [(k, sess, e) for k in range(n_identities) for sess in "AB" for e in KDEF_EXPRESSIONS]
    b = synth.generate(len(faces), image_size, seed, n_identities,
                       labels=np.array([KDEF_EXPRESSIONS[e] for _, _, e in faces]),
                       identities_of=np.array([k for k, _, _ in faces]), progress=progress)
    views = [(j, a, (k, sess, e)) for j, (k, sess, e) in enumerate(faces) for a in KDEF_ANGLES]

    def rel(fields, angle):
        k, sess, e = fields
        who = f"{sess}{'FM'[k % 2]}{k // 2 + 1:02d}"
        return f"KDEF/{who}/{who}{e}{angle}.JPG"

    side = _write_views(out, rel, views, b, size, np.random.default_rng([seed, 10]), "JPEG")
    synth_io.write_side(out, side)
    synth_io.write_info(out, layout="kdef", n_identities=n_identities, image_size=image_size, frame=frame,
                        seed=seed)
    return out


WRITERS = {"rafd": write_rafd, "kdef": write_kdef}
