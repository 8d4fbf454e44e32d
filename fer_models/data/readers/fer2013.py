"""FER2013 (Goodfellow et al., 2013): the training set of paper 004.

Layout: ``<root>/fer2013.csv`` with columns ``emotion,pixels,Usage`` (names are stripped of
whitespace; the Kaggle file has a trailing space in some copies). ``pixels`` is 2,304
space-separated grey values (48x48). Usage Training/PublicTest/PrivateTest -> train/val/test
(the customary protocol: PublicTest is the validation set, so nothing is carved).

The pixels live in the CSV, so on first read the images are written once as PNG files to
``fer_models.paths.cache_dir()/fer2013-images/<fingerprint>/row_000123.png`` (the fingerprint
hashes the CSV's path, size and mtime), and ``Sample.path`` points at real files: everything
downstream (``load_image``, preprocessing) treats FER2013 like any image dataset. Later reads
reuse the folder. FER ids: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral
(already the project's order).

Option ``classes``: ``all`` or a comma list of the project's class names, e.g.
``happiness,sadness,neutral`` (paper 004's NN1). The other rows are left out (a selection,
not a skip), and the network has one output per class kept, in the project's order (NN1's
3 outputs: happiness, sadness, neutral; ``fer_models.labels.output_classes``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fer_models import paths
from fer_models.data.images import png_cache_complete, source_fingerprint, write_png_cache
from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader
from fer_models.errors import DatasetError
from fer_models.errors import ConfigError
from fer_models.labels import EXPRESSIONS, INDEX, NUM_CLASSES
from fer_models.registry import DATASETS

FER_TO_PROJECT = {
    0: INDEX["anger"],
    1: INDEX["disgust"],
    2: INDEX["fear"],
    3: INDEX["happiness"],
    4: INDEX["sadness"],
    5: INDEX["surprise"],
    6: INDEX["neutral"],
}
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
SIDE = 48


#: the skip reason of a row whose pixels are not 48x48 integers in 0..255 (e.g. a value 300)
BAD_PIXELS = "pixels not integers in 0..255"


def png_name(row: int) -> str:
    return f"row_{row:06d}.png"


def decode_pixels(text: str) -> np.ndarray | None:
    """A row's space-separated pixels as a (48, 48) uint8 image; None when a value is not an
    integer in 0..255 (numpy refuses 300 as uint8 with an OverflowError, and a cast after an
    int parse would wrap it silently to 44)."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


@DATASETS.register("fer2013", classes=7)
class FER2013(DatasetReader):
    """FER2013: 48x48 grey faces from a CSV; Training/PublicTest/PrivateTest splits."""

    name = "fer2013"
    title = "FER2013"
    folder = "FER2013"
    download_hint = "download fer2013.csv (Kaggle 'challenges-in-representation-learning') and pass --root"
    options = {"csv": "fer2013.csv", "classes": "all"}
    has_val_split = True

    def _classes(self, opts: dict[str, Any]) -> set[int]:
        spec = str(opts["classes"]).strip().lower()
        if spec == "all":
            return set(range(NUM_CLASSES))
        names = [c.strip() for c in spec.split(",") if c.strip()]
        if not names or not set(names) <= set(EXPRESSIONS[:NUM_CLASSES]):
            raise ConfigError(f"fer2013: option classes={opts['classes']!r} must be 'all' or a comma list of "
                              f"{', '.join(EXPRESSIONS[:NUM_CLASSES])}; valid options: {self.describe_options()}")
        return {INDEX[n] for n in names}

    def validate(self, opts: dict[str, Any]) -> None:
        self._classes(opts)

    def _csv(self, root: Path, opts: dict[str, Any]) -> Path:
        return self.require(root, str(opts["csv"]))

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        path = self._csv(root, opts)
        with open(path, newline="") as f:
            header = [c.strip().lower() for c in next(csv.reader(f), [])]
        missing = [c for c in ("emotion", "pixels", "usage") if c not in header]
        if missing:
            raise DatasetError(
                f"FER2013: {path} lacks the column(s) {', '.join(missing)} (expected emotion,pixels,Usage); "
                "restore the original CSV"
            )

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        path = self._csv(root, opts)
        keep = self._classes(opts)
        if len(keep) < NUM_CLASSES:
            manifest.classes = tuple(sorted(keep))
        folder = paths.cache_dir() / "fer2013-images" / source_fingerprint(path)
        cached = png_cache_complete(folder)
        rows: list[tuple[int, int, str]] = []  # (csv row, label, split)
        pixels: list[np.ndarray] = []  # decoded only while the PNG folder is not complete
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [c.strip().lower() for c in next(reader)]
            ie, ip, iu = header.index("emotion"), header.index("pixels"), header.index("usage")
            for i, row in enumerate(reader, start=1):
                item = f"{path.name}#row={i}"
                try:
                    fer_id = int(row[ie])
                    split = USAGE[row[iu].strip().lower()]
                    n_pix = row[ip].count(" ") + 1
                except (ValueError, IndexError, KeyError):
                    manifest.skip("malformed row", item)
                    continue
                if fer_id not in FER_TO_PROJECT:
                    manifest.skip("unknown emotion id", item)
                    continue
                if n_pix != SIDE * SIDE:
                    manifest.skip("pixels not 48x48", item)
                    continue
                if cached:  # the rows whose pixels were refused when the folder was written have no PNG
                    if not (folder / png_name(i)).exists():
                        manifest.skip(BAD_PIXELS, item)
                        continue
                else:
                    values = decode_pixels(row[ip])
                    if values is None:
                        manifest.skip(BAD_PIXELS, item)
                        continue
                    pixels.append(values)
                rows.append((i, FER_TO_PROJECT[fer_id], split))
        files = write_png_cache(
            folder, [png_name(i) for i, *_ in rows], pixels.__getitem__, desc="FER2013 -> PNG"
        )
        for (i, label, split), file in zip(rows, files):
            if label not in keep:
                continue  # a class selection, not a failure
            s = Sample(path=str(file), split=split, label=label)
            s.meta["row"] = i
            manifest.samples.append(s)
