"""Radboud Faces Database (RaFD, Langner et al., 2010): the dataset of paper 003.

Layout: image files anywhere under ``<root>`` named
``Rafd090_01_Caucasian_female_angry_frontal.jpg``: camera angle (000/045/090/135/180; 090 is
frontal), model id, ethnicity, gender, emotion (angry, contemptuous, disgusted, fearful,
happy, neutral, sad, surprised) and gaze (frontal, left, right). Identity = model id.
``angles`` (default ``"090"``; a comma list or ``"all"``) and ``gazes`` (default ``"all"``)
select images. Contemptuous is label 7 with ``classes=8``, else a counted skip (paper 003
uses the 8 RaFD expressions; the project's default is the basic 7, so pass ``classes=8``
to reproduce it). Split: subject-wise ``n_folds`` folds, test = ``fold``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader, check_fold, subject_folds
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


def _select(spec: Any, name: str) -> set[str] | None:
    """None = all; else the set named by a comma list."""
    if isinstance(spec, str):
        if spec.lower() == "all":
            return None
        spec = spec.split(",")
    out = {str(v).strip().lower() for v in spec}
    if not out:
        raise ConfigError(f"rafd: option {name} is empty; pass 'all' or a comma list")
    return out


@DATASETS.register("rafd", classes=7)
class RaFD(DatasetReader):
    """RaFD: 67 models x 8 expressions x 3 gazes x 5 angles (frontal angle by default), subject-wise split."""

    name = "rafd"
    title = "RaFD"
    folder = "RaFD"
    download_hint = "request RaFD (https://rafd.socsci.ru.nl) and pass --root"
    options = {"classes": 7, "angles": "090", "gazes": "all", "fold": 0, "n_folds": 5}

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        self.choice(opts, "classes", (7, 8))
        check_fold(self.name, opts["fold"], opts["n_folds"])
        _select(opts["angles"], "angles"), _select(opts["gazes"], "gazes")
        if next(root.rglob("Rafd*.*"), None) is None:
            self.require(root, "Rafd090_01_Caucasian_female_angry_frontal.jpg",
                         what="image files named like Rafd090_01_Caucasian_female_angry_frontal.jpg")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        manifest.num_classes = int(opts["classes"])
        angles, gazes = _select(opts["angles"], "angles"), _select(opts["gazes"], "gazes")
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
        folds = subject_folds((s.identity for s in rows), int(opts["n_folds"]))
        for s in rows:
            s.split = "test" if folds[s.identity] == int(opts["fold"]) else "train"
        manifest.samples.extend(rows)
