"""The row codec: manifest samples <-> the plain rows and numpy batches the stages stream.

A row holds numpy values and strings only, so Ray Data can carry it and a batch of rows
stacks into fixed-shape arrays (the layout ``map_batches`` hands over in "numpy" format).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fer_models.data import au
from fer_models.data.manifest import Manifest, Sample


def sequence_names(manifest: Manifest) -> list[str]:
    """The sorted ``meta["sequence"]`` names (CK+'s ``S005/001``); a row's ``sequence``
    column is its index here (-1: none), and the cache's meta.json lists them."""
    return sorted({str(s.meta["sequence"]) for s in manifest.samples if s.meta.get("sequence") is not None})


def au_columns(manifest: Manifest) -> tuple[int, ...]:
    """The AU numbers of the cache's ``aus`` columns (meta.json ``inputs.au_ids``, part of the
    key): every AU the dataset labels (:meth:`Manifest.labelled_aus`), so CK+'s AU11, 14, 43,
    ... reach the filter-AU analysis; a dataset without AU labels keeps the codebooks'
    ``au.AU_IDS`` as columns (all NaN), the columns every cache had before, so its key did not change."""
    return manifest.labelled_aus() or au.AU_IDS


def manifest_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One plain dict per sample (numpy + str only), the unit both pipelines stream.

    Absent values are NaN (landmarks, box, valence, arousal, AU intensities), so every
    row has the same columns and a batch stacks into fixed-shape arrays. ``whole_frame``
    tells the landmark stage to crop the face (``manifest.frames == "whole"``);
    ``sequence`` indexes :func:`sequence_names` (-1 when the dataset has no sequences);
    ``aus`` has one column per AU of :func:`au_columns`.
    """
    au_ids = au_columns(manifest)
    seq_index = {name: k for k, name in enumerate(sequence_names(manifest))}
    whole = manifest.frames == "whole"
    rows = []
    for i, s in enumerate(manifest.samples):
        lm = np.full((68, 2), np.nan, np.float32)
        if s.landmarks is not None:
            lm[:] = np.asarray(s.landmarks, np.float32).reshape(68, 2)
        box = np.full(4, np.nan, np.float32) if s.box is None else np.asarray(s.box, np.float32)
        aus = au.aus_to_vector(s.aus, au_ids)  # NaN everywhere when unknown
        rows.append(
            {
                "row": np.int64(i),
                "path": str(s.path),
                "split": s.split,
                "label": np.int64(s.label),
                "identity": "" if s.identity is None else str(s.identity),
                "has_landmarks": s.landmarks is not None,
                "shipped_landmarks": lm,
                "box": box,
                "valence": np.float32(s.valence),
                "arousal": np.float32(s.arousal),
                "aus": aus,
                "meta": json.dumps(s.meta, default=str, sort_keys=True),
                "whole_frame": whole,
                "sequence": np.int64(seq_index.get(str(s.meta.get("sequence")), -1)),
            }
        )
    return rows


def batch_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """List of row dicts -> dict of stacked arrays (what Ray Data's numpy format gives)."""
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def samples_from_batch(batch: dict[str, np.ndarray], au_ids: Any = None) -> list[Sample]:
    """A batch back to the :class:`Sample` objects a landmark backend's ``detect`` takes.

    ``au_ids``: the AU numbers of the batch's ``aus`` columns (:func:`au_columns`); without
    them the samples carry no AU labels (the landmark stage: no backend reads them)."""
    out = []
    for j in range(len(batch["row"])):
        box = batch["box"][j]
        aus = batch["aus"][j]
        out.append(
            Sample(
                path=str(batch["path"][j]),
                split=str(batch["split"][j]),
                label=int(batch["label"][j]),
                identity=str(batch["identity"][j]) or None,
                landmarks=batch["shipped_landmarks"][j].copy() if batch["has_landmarks"][j] else None,
                box=None if np.isnan(box).any() else tuple(float(v) for v in box),
                valence=float(batch["valence"][j]),
                arousal=float(batch["arousal"][j]),
                aus=None if au_ids is None or np.isnan(aus).any() else dict(zip(map(int, au_ids), map(float, aus))),
                meta=json.loads(str(batch["meta"][j])),
            )
        )
    return out
