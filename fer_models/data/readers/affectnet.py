"""AffectNet (Mollahosseini et al., 2017): the second dataset of paper 002.

Two layouts are read (``layout="auto"`` picks whichever is present):

official::

    <root>/Manually_Annotated_file_lists/training.csv     train (validation carved from it)
    <root>/Manually_Annotated_file_lists/validation.csv   the TEST set (AffectNet has no public test)
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

  columns ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
  expression,valence,arousal``, with or without a header row (detected);
  ``facial_landmarks`` is 136 floats ``x1;y1;x2;y2;...`` -> ``Sample.landmarks`` (68, 2);
  the face box -> ``Sample.box``.

npy (the widely shared 224 px re-release)::

    <root>/train_set|val_set/images/<id>.jpg
    <root>/train_set|val_set/annotations/<id>_exp.npy, <id>_val.npy, <id>_aro.npy, <id>_lnd.npy

AffectNet ids: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
7 Contempt, 8 None, 9 Uncertain, 10 Non-face. 8-10 are counted skips; ``classes=7``
(default, paper 002) also skips Contempt, ``classes=8`` keeps it as label 7. Valence and
arousal of -2 mean "not annotated" -> NaN.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader
from fer_models.data.readers._base import require_inside
from fer_models.errors import DatasetError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS

AFFECTNET_TO_PROJECT = {
    0: INDEX["neutral"],
    1: INDEX["happiness"],
    2: INDEX["sadness"],
    3: INDEX["surprise"],
    4: INDEX["fear"],
    5: INDEX["disgust"],
    6: INDEX["anger"],
    7: INDEX["contempt"],
}
NON_EXPRESSION = {8: "none", 9: "uncertain", 10: "non-face"}
COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
LISTS = "Manually_Annotated_file_lists"
IMAGES = "Manually_Annotated_Images"


def _va(value: Any) -> float:
    v = float(value)
    return math.nan if v == -2 else v


def parse_landmarks(text: str) -> tuple[np.ndarray | None, str | None]:
    """``"x1;y1;x2;y2;..."`` (136 finite numbers) -> ``((68, 2) float32, None)``, else
    ``(None, reason)``: "landmarks not numeric" or "N landmark values, not 136"."""
    try:
        vals = np.array(list(map(float, text.strip().strip(";").split(";"))), dtype=np.float32)
    except ValueError:
        return None, "landmarks not numeric"
    if not np.isfinite(vals).all():
        return None, "landmarks not numeric"
    return _landmark_shape(vals)


def _landmark_shape(vals: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    if vals.size != 136:
        return None, f"{vals.size} landmark values, not 136"
    return vals.reshape(68, 2).astype(np.float32), None


@DATASETS.register("affectnet", classes=7)
class AffectNet(DatasetReader):
    """AffectNet: 7 (or 8) classes; validation.csv is the test set, validation carved from training."""

    name = "affectnet"
    title = "AffectNet"
    folder = "AffectNet"
    download_hint = "request AffectNet from http://mohammadmahoor.com/affectnet/ and pass --root"
    options = {"classes": 7, "layout": "auto"}
    choices = {"classes": (7, 8), "layout": ("auto", "official", "npy")}

    def _layout(self, root: Path, opts: dict[str, Any]) -> str:
        layout = opts["layout"]
        if layout != "auto":
            return layout
        if (root / LISTS).is_dir():
            return "official"
        if (root / "train_set").is_dir():
            return "npy"
        raise DatasetError(
            f"AffectNet: expected {LISTS}/training.csv (official layout) or train_set/images "
            f"(npy layout) under {root}; {self.download_hint}"
        )

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        if self._layout(root, opts) == "official":
            self.require(root, f"{LISTS}/training.csv")
            self.require(root, f"{LISTS}/validation.csv")
            self.require(root, IMAGES)
        else:
            self.require(root, "train_set/images")
            self.require(root, "train_set/annotations")
            self.require(root, "val_set/images")
            self.require(root, "val_set/annotations")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        manifest.num_classes = int(opts["classes"])
        if self._layout(root, opts) == "official":
            for fname, split in (("training.csv", "train"), ("validation.csv", "test")):
                self._read_csv(root, root / LISTS / fname, split, manifest)
        else:
            for folder, split in (("train_set", "train"), ("val_set", "test")):
                self._read_npy(root / folder, split, manifest)

    def _keep(self, manifest: Manifest, expression: int, item: str) -> int | None:
        """Project label of an AffectNet id, or None after counting the skip."""
        if expression in NON_EXPRESSION:
            manifest.skip(f"expression {expression} ({NON_EXPRESSION[expression]})", item)
            return None
        if expression == 7 and manifest.num_classes < 8:
            manifest.skip("contempt (7-class mode)", item)
            return None
        if expression not in AFFECTNET_TO_PROJECT:
            manifest.skip("unknown expression id", item)
            return None
        return AFFECTNET_TO_PROJECT[expression]

    def _read_csv(self, root: Path, path: Path, split: str, manifest: Manifest) -> None:
        with open(path, newline="") as f:
            rows = csv.reader(f)
            first = next(rows, None)
            if first is None:
                raise DatasetError(f"AffectNet: {path} is empty; restore the official file list")
            header = [c.strip() for c in first]
            if header and header[0] == COLUMNS[0]:
                missing = [c for c in COLUMNS if c not in header]
                if missing:
                    raise DatasetError(
                        f"AffectNet: {path} lacks the column(s) {', '.join(missing)}; "
                        "restore the official file list"
                    )
                col = {c: header.index(c) for c in COLUMNS}
                data = rows
            else:  # no header: the official column order
                if len(first) < len(COLUMNS):
                    raise DatasetError(
                        f"AffectNet: the first row of {path} has {len(first)} fields, not the "
                        f"{len(COLUMNS)} of {','.join(COLUMNS)}; restore the official file list"
                    )
                col = {c: i for i, c in enumerate(COLUMNS)}
                data = itertools.chain([first], rows)
            width = max(col.values()) + 1
            image_dir = str(root / IMAGES)
            bar = tqdm(data, desc=f"AffectNet {path.name}", unit="row", leave=False, delay=1.0)
            for row in bar:
                if not row or not any(c.strip() for c in row):
                    continue
                item = row[0]
                try:
                    if len(row) < width:
                        raise ValueError("too few fields")
                    expression = int(float(row[col["expression"]]))
                    box = tuple(float(row[col[c]]) for c in ("face_x", "face_y", "face_width", "face_height"))
                    valence, arousal = _va(row[col["valence"]]), _va(row[col["arousal"]])
                except (ValueError, OverflowError):  # "1e400" is a float, not an id
                    manifest.skip("malformed row", ",".join(row)[:120])
                    continue
                label = self._keep(manifest, expression, item)
                if label is None:
                    continue
                image = os.path.join(image_dir, row[col["subDirectory_filePath"]].strip())
                require_inside(manifest, image)
                if not os.path.isfile(image):
                    manifest.skip("missing image", image)
                    continue
                landmarks, error = parse_landmarks(row[col["facial_landmarks"]])
                sample = Sample(path=image, split=split, label=label, landmarks=landmarks,
                                box=box, valence=valence, arousal=arousal)  # type: ignore[arg-type]
                if error:
                    manifest.bad_landmarks(sample, error)
                manifest.samples.append(sample)

    def _read_npy(self, folder: Path, split: str, manifest: Manifest) -> None:
        ann = folder / "annotations"
        images = sorted((folder / "images").iterdir())
        bar = tqdm(images, desc=f"AffectNet {folder.name}", unit="img", leave=False, delay=1.0)
        for img in bar:
            if img.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            stem = img.stem
            try:
                expression = int(np.load(ann / f"{stem}_exp.npy").item())
            except (OSError, ValueError):
                manifest.skip("missing or malformed annotation", str(ann / f"{stem}_exp.npy"))
                continue
            label = self._keep(manifest, expression, str(img))
            if label is None:
                continue
            sample = Sample(path=str(img), split=split, label=label)
            for attr, suffix in (("valence", "val"), ("arousal", "aro")):
                try:
                    setattr(sample, attr, _va(np.load(ann / f"{stem}_{suffix}.npy").item()))
                except (OSError, ValueError):
                    pass  # stays NaN (unknown)
            lnd_file = ann / f"{stem}_lnd.npy"
            if lnd_file.exists():
                try:
                    vals = np.asarray(np.load(lnd_file), dtype=np.float32).reshape(-1)
                except (OSError, ValueError):
                    vals, error = None, "landmarks not numeric"
                else:
                    vals, error = _landmark_shape(vals) if np.isfinite(vals).all() else (None, "landmarks not numeric")
                sample.landmarks = vals
                if error:
                    manifest.bad_landmarks(sample, error)
            manifest.samples.append(sample)

