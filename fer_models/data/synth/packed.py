"""Synthetic faces in TFD's and FER2013's official layouts: every pixel in one file.

TFD and FER2013 ship aligned grey face crops packed in a single file (a MATLAB matrix, a
CSV of pixel strings), not image files, so these writers pack the synthetic faces of
:func:`fer_models.data.synth.generate` the same way and the real ``tfd`` / ``fer2013``
readers read them (and unpack them into their PNG folders, as they do the real files). The
ground truth goes to the side file (:func:`fer_models.data.synth.io.write_side`), keyed by
the row the reader names its sample after: ``TFD_96x96.mat#index=12`` (the reader's
``meta["index"]``), ``fer2013.csv#row=5`` (``meta["row"]``, 1-based as the reader counts).

TFD (:func:`write_tfd`): ``TFD_96x96.mat`` (paper 001's 96 px faces) and ``TFD_48x48.mat``
(the same faces resized), MATLAB v5 files with ``images`` (N, S, S) uint8, ``labs_ex``
(N, 1: 1 anger ... 7 neutral, -1 for the unlabelled tenth, as TFD holds unlabelled faces),
``labs_id`` (N, 1, from 1) and ``folds`` (N, 5): the subjects are dealt round-robin into 5
groups; fold k tests group k, validates on group k + 1 and trains on the rest (1 train,
2 valid, 3 test; 0 for the unlabelled rows), so no subject straddles a fold's splits.

FER2013 (:func:`write_fer2013`): ``fer2013.csv`` with ``emotion,pixels,Usage`` (FER ids =
the project's order; 2,304 space-separated grey values per 48x48 face; ``Training`` /
``PublicTest`` / ``PrivateTest`` rows in that order).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from fer_models.data import synth
from fer_models.data.synth import io as synth_io
from fer_models.data.readers import fer2013
from fer_models.errors import ConfigError

TFD_SIZES = (96, 48)
TFD_FOLDS = 5
P_TFD_UNLABELLED = 0.1
FER_USAGE = (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest"))
PROJECT_TO_FER = {p: f for f, p in fer2013.FER_TO_PROJECT.items()}


def _gray(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L"))


def _tfd_folds(identities: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """(N, 5) TFD fold codes: subject group k is fold k's test, group k + 1 its validation."""
    group = np.searchsorted(np.unique(identities), identities) % TFD_FOLDS
    folds = np.ones((len(identities), TFD_FOLDS), np.int32)
    for k in range(TFD_FOLDS):
        folds[group == k, k] = 3
        folds[group == (k + 1) % TFD_FOLDS, k] = 2
    folds[~labelled] = 0
    return folds


def write_tfd(out: str | Path, n_faces: int = 420, n_identities: int = 30, seed: int = 0, *,
              overwrite: bool = False, progress: bool = False) -> Path:
    """TFD's two .mat files (module docstring); returns ``out``."""
    from scipy.io import savemat

    if n_identities < TFD_FOLDS or n_faces < 2 * n_identities:
        raise ConfigError(f"synthetic TFD needs at least {TFD_FOLDS} identities (one fold group each) and two "
                          f"faces per identity, got n_identities={n_identities}, n_faces={n_faces}")
    out = synth_io.make_root(out, overwrite)
    b = synth.generate(n_faces, TFD_SIZES[0], seed, n_identities, progress=progress)
    labelled = np.random.default_rng([seed, 12]).random(n_faces) >= P_TFD_UNLABELLED
    labs = np.where(labelled, b.labels + 1, -1)
    folds = _tfd_folds(b.identities, labelled)
    big = np.stack([_gray(im) for im in b.images])
    side = []
    for size in TFD_SIZES:
        scale = size / TFD_SIZES[0]
        images = big if scale == 1 else np.stack(
            [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in big])
        name = f"TFD_{size}x{size}.mat"
        savemat(out / name, {"images": images, "labs_ex": labs[:, None].astype(np.int32),
                             "labs_id": (b.identities[:, None] + 1).astype(np.int32), "folds": folds})
        for j in range(n_faces):
            lm = (b.landmarks[j] + 0.5) * scale - 0.5  # pixel centres at integers
            side.append(synth_io.side_row(f"{name}#index={j}", "train", b, j, lm))
    synth_io.write_side(out, side)
    synth_io.write_info(out, layout="tfd", n_faces=n_faces, n_identities=n_identities, seed=seed)
    return out


def write_fer2013(out: str | Path, n_train: int = 350, n_val: int = 70, n_test: int = 70, n_identities: int = 30,
                  seed: int = 0, *, overwrite: bool = False, progress: bool = False) -> Path:
    """FER2013's csv (module docstring); returns ``out``."""
    if min(n_train, n_val, n_test) < 1:
        raise ConfigError(f"synthetic FER2013 needs a face in each split, got n_train={n_train}, n_val={n_val}, "
                          f"n_test={n_test}")
    out = synth_io.make_root(out, overwrite)
    counts = (n_train, n_val, n_test)
    b = synth.generate(sum(counts), fer2013.SIDE, seed, n_identities, progress=progress)
    splits = np.repeat(np.arange(3), counts)
    side = []
    with (out / "fer2013.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for j in range(len(b)):
            split, usage = FER_USAGE[splits[j]]
            w.writerow([PROJECT_TO_FER[int(b.labels[j])], " ".join(map(str, _gray(b.images[j]).ravel())), usage])
            side.append(synth_io.side_row(f"fer2013.csv#row={j + 1}", split, b, j))
    synth_io.write_side(out, side)
    synth_io.write_info(out, layout="fer2013", n_train=n_train, n_val=n_val, n_test=n_test,
                        n_identities=n_identities, seed=seed)
    return out


WRITERS = {"tfd": write_tfd, "fer2013": write_fer2013}
