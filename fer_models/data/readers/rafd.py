"""Radboud Faces Database (RaFD, Langner et al., 2010): the dataset of paper 003.

Layout: image files anywhere under ``<root>`` named
``Rafd090_01_Caucasian_female_angry_frontal.jpg``: camera angle (000/045/090/135/180; 090 is
frontal), model id, ethnicity, gender, emotion (angry, contemptuous, disgusted, fearful,
happy, neutral, sad, surprised) and gaze (frontal, left, right). Identity = model id.
``angles`` (default ``"090"``; a comma list or ``"all"``) and ``gazes`` (default ``"all"``)
select images. Contemptuous is label 7 with ``classes=8``, else a counted skip (paper 003
uses the 8 RaFD expressions; the project's default is the basic 7, so pass ``classes=8``
to reproduce it).

Splits (option ``split``):

- ``subjects`` (default): subject-wise ``n_folds`` folds, test = ``fold``; validation carved
  subject-wise from the others;
- ``per-class``: paper 003's expression split: within each (angle, expression) group the
  images are shuffled (``seed``; 22345 is the released code's) and ``test_per_group`` of
  them go to test (default 101: 2,424 test / 2,400 train on the 45/90/135-degree angles and
  8 classes, Table 2); validation is carved stratified by expression;
- ``per-identity``: paper 003's face-recognition split: the same within each (angle,
  subject) group, ``test_per_group`` default 12 (2,412 / 2,412 over 67 subjects), so every
  subject is in train and test (what ``target: identity`` needs); validation is stratified
  by subject.

The images are whole 681x1024 portraits (face, hair, torso): preprocessing crops the face by
its landmarks (``whole_frames``), as paper 003 extracts the faces before resizing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fer_models.data.manifest import Manifest, Sample
import numpy as np

from fer_models.data.readers import DatasetReader, subject_folds
from fer_models.errors import ConfigError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS

RAFD_TO_PROJECT = {
    "angry": INDEX["anger"],
    "contemptuous": INDEX["contempt"],
    "disgusted": INDEX["disgust"],
    "fearful": INDEX["fear"],
    "happy": INDEX["happiness"],
    "neutral": INDEX["neutral"],
    "sad": INDEX["sadness"],
    "surprised": INDEX["surprise"],
}
NAME = re.compile(r"^Rafd(\d{3})_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)$", re.IGNORECASE)


SPLITS = ("subjects", "per-class", "per-identity")
ANGLES = ("000", "045", "090", "135", "180")
GAZES = ("frontal", "left", "right")
#: paper 003, Table 2: test images per (angle, expression) and per (angle, subject)
PAPER_TEST_PER_GROUP = {"per-class": 101, "per-identity": 12}


def _select(spec: Any, name: str, allowed: tuple[str, ...]) -> set[str] | None:
    """None = all; else the set named by a comma list (angles zero-padded: 45 -> 045)."""
    if isinstance(spec, str):
        if spec.lower() == "all":
            return None
        spec = spec.split(",")
    out = {str(v).strip().lower() for v in spec if str(v).strip()}
    if name == "angles":
        out = {v.zfill(3) for v in out}
    if not out or not out <= set(allowed):
        raise ConfigError(f"rafd: option {name}={spec!r} must be 'all' or a comma list of {', '.join(allowed)}")
    return out


@DATASETS.register("rafd", classes=7)
class RaFD(DatasetReader):
    """RaFD: 67 models x 8 expressions x 3 gazes x 5 angles (frontal angle by default), subject-wise split."""

    name = "rafd"
    title = "RaFD"
    folder = "RaFD"
    download_hint = "request RaFD (https://rafd.socsci.ru.nl) and pass --root"
    options = {"classes": 7, "angles": "090", "gazes": "all", "fold": 0, "n_folds": 5,
               "split": "subjects", "test_per_group": 0, "seed": 22345}
    choices = {"classes": (7, 8), "split": SPLITS}
    whole_frames = True

    def validate(self, opts: dict[str, Any]) -> None:
        super().validate(opts)
        _select(opts["angles"], "angles", ANGLES), _select(opts["gazes"], "gazes", GAZES)
        if int(opts["test_per_group"]) < 0:
            self.bad_option("test_per_group", opts["test_per_group"])

    def val_by(self, opts: dict[str, Any]) -> str:
        return {"subjects": "subject", "per-class": "label", "per-identity": "identity"}[opts["split"]]

    def fold_count(self, opts: dict[str, Any]) -> int | None:
        return int(opts["n_folds"]) if opts["split"] == "subjects" else None

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        if next(root.rglob("Rafd*.*"), None) is None:
            self.require(root, "Rafd090_01_Caucasian_female_angry_frontal.jpg",
                         what="image files named like Rafd090_01_Caucasian_female_angry_frontal.jpg")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        manifest.num_classes = int(opts["classes"])
        angles, gazes = _select(opts["angles"], "angles", ANGLES), _select(opts["gazes"], "gazes", GAZES)
        rows: list[Sample] = []
        for img in sorted(root.rglob("Rafd*.*")):
            if img.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            m = NAME.match(img.stem)
            if not m:
                manifest.skip("unparsable file name", str(img))
                continue
            angle, ident, ethnicity, gender, emotion, gaze = m.groups()
            emotion, gaze = emotion.lower(), gaze.lower()
            if emotion not in RAFD_TO_PROJECT:
                manifest.skip("unknown emotion", str(img))
                continue
            if (angles is not None and angle not in angles) or (gazes is not None and gaze not in gazes):
                continue  # a deliberate selection, not a failure
            label = RAFD_TO_PROJECT[emotion]
            if label >= manifest.num_classes:
                manifest.skip("contempt (7-class mode)", str(img))
                continue
            s = Sample(path=str(img), split="train", label=label, identity=f"{int(ident):02d}")
            s.meta.update(angle=angle, gaze=gaze, ethnicity=ethnicity.lower(), gender=gender.lower())
            rows.append(s)
        if opts["split"] == "subjects":
            folds = subject_folds((s.identity for s in rows), int(opts["n_folds"]))
            for s in rows:
                s.split = "test" if folds[s.identity] == int(opts["fold"]) else "train"
        else:
            _random_split(rows, opts)
        manifest.samples.extend(rows)


def _random_split(rows: list[Sample], opts: dict[str, Any]) -> None:
    """Paper 003's splits: within each (angle, expression) or (angle, subject) group, a
    seeded shuffle puts ``test_per_group`` images in test and the rest in train."""
    per = int(opts["test_per_group"]) or PAPER_TEST_PER_GROUP[opts["split"]]
    key = (lambda s: (s.meta["angle"], s.label)) if opts["split"] == "per-class" else (
        lambda s: (s.meta["angle"], s.identity))
    groups: dict[tuple, list[Sample]] = {}
    for s in rows:  # rows are sorted by file name, so the shuffle is reproducible
        groups.setdefault(key(s), []).append(s)
    rng = np.random.default_rng(int(opts["seed"]))
    for k in sorted(groups, key=str):
        members = groups[k]
        for rank, i in enumerate(rng.permutation(len(members))):
            members[i].split = "test" if rank < per else "train"
