"""Toronto Face Database (TFD, Susskind et al., 2010): the second dataset of paper 001.

Layout: ``<root>/TFD_48x48.mat`` (option ``resolution``: 48 or 96 reads ``TFD_96x96.mat``,
paper 001's 96 px faces; option ``mat`` names any other file),
a MATLAB v5 file read with :func:`scipy.io.loadmat`, holding

- ``images`` (N, 48, 48) uint8 grey faces (already aligned, paper 001 Sec. 4),
- ``labs_ex`` (N, 1): 1 anger, 2 disgust, 3 fear, 4 happy, 5 sad, 6 surprise, 7 neutral,
  -1 unlabelled (counted as "unlabelled" skips),
- ``labs_id`` (N, 1): identity (-1 unknown),
- ``folds`` (N, 5): per fold, 1 train, 2 valid, 3 test, 0 unused by that fold.

``fold`` (0-4) picks the column; TFD's own valid rows become "val" (nothing is carved).
Images are written once as PNG files to ``cache_dir()/tfd-images/<fingerprint>/`` (the same
mechanism as FER2013) so ``Sample.path`` is a real file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_models import paths
from fer_models.data.images import source_fingerprint, write_png_cache
from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader
from fer_models.errors import DatasetError
from fer_models.registry import DATASETS

FOLD_SPLIT = {1: "train", 2: "val", 3: "test"}
FIELDS = ("images", "labs_ex", "labs_id", "folds")


@DATASETS.register("tfd", classes=7)
class TFD(DatasetReader):
    """TFD: 48x48 aligned grey faces from a .mat file; 5 official folds (train/valid/test)."""

    name = "tfd"
    title = "TFD"
    folder = "TFD"
    download_hint = "obtain TFD_48x48.mat from the Toronto Face Database authors and pass --root"
    options = {"resolution": 48, "mat": "", "fold": 0}
    choices = {"resolution": (48, 96)}
    has_val_split = True
    fixed_folds = 5

    @staticmethod
    def _mat(opts: dict[str, Any]) -> str:
        return str(opts["mat"]) or f"TFD_{opts['resolution']}x{opts['resolution']}.mat"

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        self.require(root, self._mat(opts))

    def _load(self, path: Path) -> dict[str, np.ndarray]:
        from scipy.io import loadmat

        try:
            mat = loadmat(path, variable_names=FIELDS)
        except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
            raise DatasetError(
                f"TFD: {path} is a MATLAB v7.3 file; re-save it in v5 format (save -v7) so scipy can read it"
            ) from e
        except (ValueError, OSError) as e:
            raise DatasetError(f"TFD: {path} is not a readable .mat file ({e}); restore the original") from e
        missing = [k for k in FIELDS if k not in mat]
        if missing:
            raise DatasetError(
                f"TFD: {path} lacks the variable(s) {', '.join(missing)} (expected {', '.join(FIELDS)}); "
                "restore the original .mat file"
            )
        return mat

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        path = root / self._mat(opts)
        mat = self._load(path)
        images = np.asarray(mat["images"])
        n = images.shape[0]
        labs = np.asarray(mat["labs_ex"]).reshape(-1).astype(int)
        ids = np.asarray(mat["labs_id"]).reshape(-1).astype(int)
        folds = np.asarray(mat["folds"]).reshape(n, -1).astype(int)
        if images.ndim != 3 or len(labs) != n or len(ids) != n or folds.shape[1] <= int(opts["fold"]):
            raise DatasetError(
                f"TFD: {path} has images {images.shape}, labs_ex {labs.shape}, labs_id {ids.shape}, "
                f"folds {folds.shape}; expected (N,H,W), (N,1), (N,1), (N,5)"
            )
        labelled = [i for i in range(n) if 1 <= labs[i] <= 7]
        for i in range(n):
            if not 1 <= labs[i] <= 7:
                manifest.skip("unlabelled", f"{path.name}#index={i}")
        folder = paths.cache_dir() / "tfd-images" / source_fingerprint(path)
        files = write_png_cache(
            folder,
            [f"img_{i:06d}.png" for i in labelled],
            lambda k: images[labelled[k]],
            desc="TFD -> PNG",
        )
        column = folds[:, int(opts["fold"])]
        for i, file in zip(labelled, files):
            split = FOLD_SPLIT.get(int(column[i]))
            if split is None:
                continue  # unused by this fold (the official protocol), not a failure
            s = Sample(
                path=str(file),
                split=split,
                label=int(labs[i]) - 1,  # TFD 1..7 is the project order shifted by one
                identity=None if ids[i] < 0 else str(int(ids[i])),
            )
            s.meta["index"] = i
            manifest.samples.append(s)
