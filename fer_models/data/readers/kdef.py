"""KDEF (Lundqvist et al., 1998): the test set of paper 004's probing studies.

Layout: ``<root>/KDEF/AF01/AF01ANS.JPG`` (the ``KDEF`` level is optional). The name is
session (A/B), sex (F/M), id (2 digits), expression (AF afraid, AN angry, DI disgusted,
HA happy, NE neutral, SA sad, SU surprised), angle (FL full left, HL half left, S straight,
HR half right, FR full right), e.g. ``AF01ANS`` = session A, female 01, angry, straight.
Identity = sex + id (``F01``), so both sessions of a person share it. ``angles`` selects
the poses (default ``"S"``, the 980 frontal images of paper 004); a comma list or ``"all"``.
Split: subject-wise ``n_folds`` folds, test = ``fold``; validation carved subject-wise.
Images are whole 562x762 frames (face, hair, shoulders): preprocessing crops the face by its
landmarks (``whole_frames``). Options: ``angles``, ``fold``, ``n_folds`` (5).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader, subject_folds
from fer_models.errors import ConfigError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS

KDEF_TO_PROJECT = {
    "AF": INDEX["fear"],
    "AN": INDEX["anger"],
    "DI": INDEX["disgust"],
    "HA": INDEX["happiness"],
    "NE": INDEX["neutral"],
    "SA": INDEX["sadness"],
    "SU": INDEX["surprise"],
}
ANGLES = ("FL", "HL", "S", "HR", "FR")
NAME = re.compile(r"^([AB])([FM])(\d{2})([A-Z]{2})(FL|HL|HR|FR|S)$", re.IGNORECASE)


@DATASETS.register("kdef", classes=7)
class KDEF(DatasetReader):
    """KDEF: 70 identities x 7 expressions x 5 angles (frontal only by default), subject-wise split."""

    name = "kdef"
    title = "KDEF"
    folder = "KDEF"
    download_hint = "download KDEF (https://kdef.se) and pass --root"
    options = {"angles": "S", "fold": 0, "n_folds": 5}
    whole_frames = True

    def _angles(self, opts: dict[str, Any]) -> set[str]:
        spec = opts["angles"]
        if isinstance(spec, str):
            spec = ANGLES if spec.lower() == "all" else [a.strip() for a in spec.split(",")]
        angles = {str(a).upper() for a in spec}
        if not angles or not angles <= set(ANGLES):
            raise ConfigError(
                f"kdef: option angles={opts['angles']!r} must be 'all' or a comma list of {', '.join(ANGLES)}; "
                f"valid options: {self.describe_options()}"
            )
        return angles

    def _dir(self, root: Path) -> Path:
        return root / "KDEF" if (root / "KDEF").is_dir() else root

    def validate(self, opts: dict[str, Any]) -> None:
        super().validate(opts)
        self._angles(opts)

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        if not any(p.is_dir() for p in self._dir(root).glob("[AB][FM][0-9][0-9]")):
            self.require(root, "KDEF/AF01", what="KDEF/<session><sex><id>/ folders such as KDEF/AF01")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        angles = self._angles(opts)
        rows: list[Sample] = []
        for img in sorted(self._dir(root).glob("[AB][FM][0-9][0-9]/*")):
            if img.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            m = NAME.match(img.stem)
            if not m:
                manifest.skip("unparsable file name", str(img))
                continue
            session, sex, ident, expr, angle = (g.upper() for g in m.groups())
            if expr not in KDEF_TO_PROJECT:
                manifest.skip("unknown expression code", str(img))
                continue
            if angle not in angles:
                continue  # a deliberate selection, not a failure
            s = Sample(path=str(img), split="train", label=KDEF_TO_PROJECT[expr], identity=sex + ident)
            s.meta.update(session=session, angle=angle)
            rows.append(s)
        folds = subject_folds((s.identity for s in rows), int(opts["n_folds"]))
        for s in rows:
            s.split = "test" if folds[s.identity] == int(opts["fold"]) else "train"
        manifest.samples.extend(rows)
