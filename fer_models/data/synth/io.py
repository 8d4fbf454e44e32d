"""Write synthetic faces in the *official* on-disk layout of RAF-DB or AffectNet.

The real readers (``rafdb``, ``affectnet``) are what reads them back, so the synthetic
default exercises the same code as the real datasets. Ground truth the layout has no place
for goes in a side file at the dataset root, ``fer_orch_synth.csv`` (one row per image,
keyed by the image's path relative to the root), read back by :func:`load_truth`; the
generation parameters go in ``fer_orch_synth.json`` (:func:`read_info`).

RAF-DB basic::

    EmoLabel/list_patition_label.txt      "train_00001.jpg 5"  (1 Surprise, 2 Fear, 3 Disgust,
                                           4 Happiness, 5 Sadness, 6 Anger, 7 Neutral)
    Image/aligned/train_00001_aligned.jpg, Image/aligned/test_0001_aligned.jpg

AffectNet (official)::

    Manually_Annotated_Images/<subdir>/<hex name>.jpg
    Manually_Annotated_file_lists/training.csv, validation.csv (= our test split), header
    subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,
    valence,arousal   (0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger)
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from fer_models.data import synth
from fer_models.data.au import AU_IDS
from fer_models.data.readers import affectnet, rafdb
from fer_models.errors import ConfigError, DatasetError

SIDE_FILE = "fer_orch_synth.csv"
INFO_FILE = "fer_orch_synth.json"
SYNTH_VERSION = "5"  # bump when the generator's output changes
LAYOUTS = ("rafdb", "affectnet")  # face crops; the whole-frame layouts: synth.frames

# The label ids and columns the files are written with are the real readers' own, inverted,
# so the writer and the reader cannot disagree.
PROJECT_TO_RAF = {p: r for r, p in rafdb.RAF_TO_PROJECT.items()}
PROJECT_TO_AFFECTNET = {p: a for a, p in affectnet.AFFECTNET_TO_PROJECT.items()}
AFFECTNET_COLUMNS = affectnet.COLUMNS
SIDE_COLUMNS = ("path", "split", "label", "identity", "intensity", "valence", "arousal",
                *(f"AU{a}" for a in AU_IDS), "landmarks")


@dataclass
class Truth:
    """Ground truth of one synthetic image (from the side file)."""

    split: str
    label: int
    identity: int
    intensity: float
    valence: float
    arousal: float
    aus: dict[int, float]
    landmarks: np.ndarray  # (68, 2) float32, pixels


#: the most images a synthetic dataset may hold (RAF-DB basic has 15,339)
MAX_SYNTH_ROWS = 1_000_000

def _names(layout: str, split: str, i: int, n: int, seed: int) -> tuple[str, str]:
    """(relative image path, the name as the label file / csv lists it)."""
    if layout == "rafdb":
        width = 5 if split == "train" else max(4, len(str(n)))
        name = f"{split}_{i + 1:0{width}d}.jpg"
        return f"Image/aligned/{name[:-4]}_aligned.jpg", name
    digest = hashlib.sha1(f"{seed}/{split}/{i}".encode()).hexdigest()
    sub = f"{split}{1 + i // 500}" if split == "test" else f"{1 + i // 500}"
    rel = f"{sub}/{digest}.jpg"
    return f"{affectnet.IMAGES}/{rel}", rel


def read_info(root: str | Path) -> dict | None:
    p = Path(root) / INFO_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def write_dataset(
    out: str | Path,
    layout: str = "rafdb",
    n_train: int = 1400,
    n_test: int = 350,
    image_size: int = 64,
    seed: int = 0,
    n_identities: int = 40,
    *,
    overwrite: bool = False,
    quality: int = 95,
    progress: bool = True,
    chunk: int = 250,
) -> Path:
    """Generate ``n_train + n_test`` faces and write them in ``layout``'s official layout.

    Train and test share identities (as RAF-DB and AffectNet do; they have no identity
    split). ``out`` must be empty or absent; ``overwrite=True`` replaces a previous
    synthetic dataset there (recognised by its ``fer_orch_synth.json``), never other files.
    The images are written as they are generated (``chunk`` at a time), then the layout's
    label files, the side file, and last the info file that marks the dataset complete.
    """
    _check_counts(layout, n_train, n_test)
    out = make_root(out, overwrite)
    listed = _write_images(out, layout, n_train, n_test, image_size, seed, n_identities, quality, progress, chunk)
    _write_labels(out, layout, listed)
    write_side(out, [row for *_, row in listed])
    write_info(out, layout=layout, n_train=n_train, n_test=n_test, image_size=image_size, seed=seed,
               n_identities=n_identities)
    return out


def _check_counts(layout: str, n_train: int, n_test: int) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown synthetic layout '{layout}'; use one of {', '.join(LAYOUTS)}")
    if n_train < 1 or n_test < 0:
        raise ConfigError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if n_train + n_test > MAX_SYNTH_ROWS:  # a typo's extra zeros would write for days
        raise ConfigError(f"a synthetic dataset holds at most {MAX_SYNTH_ROWS:,} images, got n_train {n_train} + "
                          f"n_test {n_test}")


def _write_images(out: Path, layout: str, n_train: int, n_test: int, image_size: int, seed: int,
                  n_identities: int, quality: int, progress: bool, chunk: int) -> list[tuple]:
    """Generate and save every face; one ``(split, label-file entry, side row)`` per image, in order."""
    listed: list[tuple] = []
    n_total = n_train + n_test
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_total, desc=f"writing synthetic {layout}", unit="img")
    made_dirs: set[Path] = set()
    for start in range(0, n_total, chunk):
        b = synth.generate(min(chunk, n_total - start), image_size, seed, n_identities, start=start)
        for j in range(len(b)):
            g = start + j
            split, i = ("train", g) if g < n_train else ("test", g - n_train)
            rel, name = _names(layout, split, i, n_test, seed)
            path = out / rel
            if path.parent not in made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(path.parent)
            Image.fromarray(b.images[j]).save(path, quality=quality)
            entry = _label_entry(layout, name, b, j)
            listed.append((split, entry, side_row(rel, split, b, j)))
        if bar is not None:
            bar.update(len(b))
    if bar is not None:
        bar.close()
    return listed


def _label_entry(layout: str, name: str, b: "synth.SynthBatch", j: int):
    """What ``layout``'s label files list for image ``j`` of ``b``, named ``name`` there: RAF-DB's
    ``"train_00001.jpg 5"`` line, or AffectNet's csv row (face box, landmarks, label, valence, arousal)."""
    lab, lm = int(b.labels[j]), b.landmarks[j]
    if layout == "rafdb":
        return f"{name} {PROJECT_TO_RAF[lab]}"
    # face box: the landmarks' bounding box grown upwards to take in the forehead
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    y0 = max(0.0, y0 - 0.3 * (y1 - y0))
    x0, y0, x1, y1 = int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))
    return [name, int(x0), int(y0), int(x1 - x0), int(y1 - y0), ";".join(f"{v:.2f}" for v in lm.ravel()),
            PROJECT_TO_AFFECTNET[lab], f"{b.valence[j]:.6f}", f"{b.arousal[j]:.6f}"]


def _write_labels(out: Path, layout: str, listed: list[tuple]) -> None:
    """RAF-DB's label file, or AffectNet's training.csv / validation.csv (= our test split)."""
    if layout == "rafdb":
        label_file = out / rafdb.LABEL_FILES[0]  # the official (misspelt) name
        label_file.parent.mkdir(exist_ok=True)
        label_file.write_text("\n".join(entry for _, entry, _ in listed) + "\n")
        return
    lists = out / affectnet.LISTS
    lists.mkdir(exist_ok=True)
    for split, fname in (("train", "training.csv"), ("test", "validation.csv")):
        with (lists / fname).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(AFFECTNET_COLUMNS)
            w.writerows(entry for s, entry, _ in listed if s == split)


def make_root(out: str | Path, overwrite: bool) -> Path:
    """Create the dataset root ``out``: empty or absent, or (``overwrite``) holding a previous
    synthetic dataset, which is removed; never anything else."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(
                f"{out} already exists and is not empty; choose another --out or pass --overwrite"
            )
        if read_info(out) is None:
            raise DatasetError(
                f"{out} is not a fer-orch synthetic dataset (no {INFO_FILE}); refusing to overwrite it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def side_row(rel: str, split: str, b: "synth.SynthBatch", j: int, landmarks: np.ndarray | None = None,
             extra_aus: Sequence[float] = ()) -> list:
    """One row of the side file: image ``j`` of ``b`` stored at ``rel`` (``landmarks``: its
    landmarks in the stored image when they moved, e.g. pasted into a whole frame;
    ``extra_aus``: the intensities of labelled AUs beyond ``AU_IDS``, see :func:`write_side`)."""
    lm = b.landmarks[j] if landmarks is None else landmarks
    return [
        rel, split, int(b.labels[j]), int(b.identities[j]), f"{b.intensity[j]:.4f}",
        f"{b.valence[j]:.6f}", f"{b.arousal[j]:.6f}",
        *(f"{v:.4f}" for v in (*b.aus[j], *extra_aus)), ";".join(f"{v:.3f}" for v in np.ravel(lm)),
    ]


def write_side(out: Path, rows: list[list], extra_au_ids: Sequence[int] = ()) -> None:
    """The side file (ground truth the layout has no place for), one row per image;
    ``extra_au_ids``: AUs labelled beyond ``AU_IDS`` (the CK+ stand-in's AU11, 14, ...), one
    column each after the ``AU_IDS`` columns, in the order of the rows' ``extra_aus``."""
    columns = SIDE_COLUMNS[:-1] + tuple(f"AU{a}" for a in extra_au_ids) + SIDE_COLUMNS[-1:]
    with (out / SIDE_FILE).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)


def write_info(out: Path, au_ids: Sequence[int] = AU_IDS, **params) -> None:
    """The generation parameters and the labelled AUs; written last, it marks the dataset complete."""
    info = dict(generator="fer-orch synthetic faces", version=SYNTH_VERSION, **params, au_ids=list(au_ids))
    (out / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")


def load_truth(root: str | Path) -> dict[str, Truth]:
    """The side file as ``{relative image path (posix): Truth}``."""
    p = Path(root) / SIDE_FILE
    if not p.is_file():
        raise DatasetError(
            f"{p} is missing, so {root} is not a fer-orch synthetic dataset; "
            f"regenerate it with `fer-orch data synth --out {root} --overwrite`"
        )
    out: dict[str, Truth] = {}
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        au_cols = [c for c in reader.fieldnames or () if c.startswith("AU")]
        for row in reader:
            lm = np.array([float(v) for v in row["landmarks"].split(";")], np.float32)
            out[row["path"]] = Truth(
                split=row["split"],
                label=int(row["label"]),
                identity=int(row["identity"]),
                intensity=float(row["intensity"]),
                valence=float(row["valence"]),
                arousal=float(row["arousal"]),
                aus={int(c[2:]): float(row[c]) for c in au_cols},
                landmarks=lm.reshape(68, 2) if lm.size == 136 else np.full((68, 2), math.nan, np.float32),
            )
    return out
