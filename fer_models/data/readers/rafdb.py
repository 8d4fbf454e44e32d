"""RAF-DB basic (Li et al., CVPR 2017): the main dataset of paper 002.

Layout::

    <root>/EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line (the official
                                                 misspelling; list_partition_label.txt also read)
    <root>/Image/aligned/train_00001_aligned.jpg 100x100 aligned faces (images="aligned", default)
    <root>/Image/original/train_00001.jpg        the original photos (images="original")
    <root>/Annotation/manual/train_00001_manu_attri.txt  optional: 5 points "x<TAB>y" on the
                                                 first 5 lines (eyes, nose, mouth corners)

The real set has 12,271 train / 3,068 test rows. The 5 manual points are in the
*original* photo's pixels; they go to ``meta["points5"]`` as a 5x2 list (with
``meta["points5_space"] = "original"``) and are not transformed to the aligned crop, whose
similarity transform is not shipped. The aligned faces are used as they are; the original
photos (``images="original"``) are whole pictures, cropped by preprocessing around the
detected landmarks. A detector that finds no face in an aligned crop is retried with the
whole crop as the face box (:mod:`fer_models.data.cache.stages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader, add_if_exists
from fer_models.data.readers._base import read_label_text
from fer_models.errors import DatasetError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS

# RAF-DB basic ids -> project order
RAF_TO_PROJECT = {
    1: INDEX["surprise"],
    2: INDEX["fear"],
    3: INDEX["disgust"],
    4: INDEX["happiness"],
    5: INDEX["sadness"],
    6: INDEX["anger"],
    7: INDEX["neutral"],
}
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")


def read_points5(path: Path) -> np.ndarray | None:
    """The first 5 ``x<TAB>y`` lines of a ``*_manu_attri.txt`` file as (5, 2) float32."""
    try:
        lines = path.read_text().split("\n")[:5]
        pts = np.array([[float(v) for v in ln.split()[:2]] for ln in lines], dtype=np.float32)
    except (OSError, ValueError):
        return None
    return pts if pts.shape == (5, 2) else None


@DATASETS.register("rafdb", classes=7)
class RafDB(DatasetReader):
    """RAF-DB basic: 7 classes, official train/test, validation carved from train."""

    name = "rafdb"
    title = "RAF-DB"
    folder = "RAF-DB"
    download_hint = "download RAF-DB basic (http://www.whdeng.cn/raf/model1.html) and pass --root"
    options = {"images": "aligned", "points": True}
    choices = {"images": ("aligned", "original")}

    def frames(self, opts: dict[str, Any]) -> str:
        return "whole" if opts["images"] == "original" else "face"

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        self.require(root, *LABEL_FILES)
        self.require(root, f"Image/{opts['images']}")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        label_file = self.require(root, *LABEL_FILES)
        image_dir = root / "Image" / opts["images"]
        manual = root / "Annotation" / "manual"
        use_points = bool(opts["points"]) and manual.is_dir()
        # a label file saved on Windows starts with a byte-order mark (UTF-8 or UTF-16), not a name
        for lineno, line in enumerate(read_label_text(label_file, self.title).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAF_TO_PROJECT:
                raise DatasetError(
                    f"RAF-DB: line {lineno} of {label_file} is {line!r}, not '<name>.jpg <1-7>'; "
                    "restore the original label file"
                )
            name, raf_id = parts[0], int(parts[1])
            stem = Path(name).stem
            if stem.startswith("train_"):
                split = "train"
            elif stem.startswith("test_"):
                split = "test"
            else:
                raise DatasetError(
                    f"RAF-DB: image name {name!r} on line {lineno} of {label_file} starts with neither "
                    "'train_' nor 'test_'; restore the original label file"
                )
            path = image_dir / (f"{stem}_aligned.jpg" if opts["images"] == "aligned" else name)
            sample = Sample(path=str(path), split=split, label=RAF_TO_PROJECT[raf_id])
            sample.meta["name"] = name
            if use_points:
                pts = read_points5(manual / f"{stem}_manu_attri.txt")
                if pts is not None:
                    sample.meta["points5"] = pts.tolist()  # JSON-able, like all of meta
                    sample.meta["points5_space"] = "original"
            add_if_exists(manifest, sample)
