"""The manifest: one row per image, the common currency between readers and preprocessing.

A reader turns a dataset's official on-disk layout into a :class:`Manifest`. Labels are
already in the project's order (:mod:`fer_models.labels`); anything the reader could not
use is counted in ``skipped`` by reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fer_models.errors import DatasetError

SPLITS = ("train", "val", "test")  # the splits a row is stored in
#: every row, whatever its split: what analysis-only datasets are read as (DISFA, KDEF for
#: paper 004's probing); ``Manifest.split(ALL)`` and the cache's ``load_split(dir, ALL)``
ALL = "all"
READ_SPLITS = SPLITS + (ALL,)


@dataclass
class Sample:
    path: str  # absolute path of the image file
    split: str  # "train" | "val" | "test"
    label: int  # project order, fer_models.labels
    identity: str | None = None
    landmarks: np.ndarray | None = None  # (68, 2) float32, image pixels, when the dataset ships them
    box: tuple[float, float, float, float] | None = None  # face box x, y, w, h in pixels
    valence: float = math.nan
    arousal: float = math.nan
    aus: dict[int, float] | None = None  # AU number -> intensity (0 = absent), when labelled
    meta: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        """JSON-able content used for the cache hash."""
        return {
            "path": self.path,
            "split": self.split,
            "label": int(self.label),
            "identity": self.identity,
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 3).tolist(),
            "box": None if self.box is None else [round(float(v), 3) for v in self.box],
        }


@dataclass
class Manifest:
    dataset: str
    root: Path
    samples: list[Sample]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few items
    num_classes: int = 7  # labels lie in 0..num_classes-1 (project order)
    # a class subset: the project labels kept, each an output of the network
    # (fer_models.labels.output_classes); None: the first ``num_classes``
    classes: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # reader options that differ from the defaults
    frames: str = "face"  # "face": each image is a face crop; "whole": a whole frame (crop by landmarks)
    val_by: str = "label"  # how the reader carved validation (carve_validation's ``by``)
    # rows kept whose shipped landmarks were unusable, by reason (AffectNet's non-numeric or
    # 135-value landmark rows): they count as landmark failures, the rest keep theirs
    landmark_errors: Counter = field(default_factory=Counter)

    def output_classes(self) -> tuple[int, ...]:
        """The project labels of the network's outputs, in output order (``fer_models.labels.output_classes``)."""
        from fer_models.labels import output_classes

        return output_classes(self.num_classes, self.classes)

    def skip(self, reason: str, item: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(item)

    def bad_landmarks(self, sample: Sample, reason: str) -> None:
        """Keep ``sample`` without landmarks and count ``reason``: the dataset ships landmarks
        but this row's are unusable (a landmark failure, not a reason to drop the image or to
        switch the whole dataset to a detector: see ``landmarks.dataset.DatasetLandmarks``)."""
        sample.landmarks = None
        sample.meta["landmark_error"] = reason
        self.landmark_errors[reason] += 1

    def labelled_aus(self) -> tuple[int, ...]:
        """The AU numbers the dataset labels, sorted: every AU that any sample's ``aus`` names
        (CK+'s FACS codes, DISFA's 12 AUs, the synthetic faces' ground truth); empty when no
        sample carries AU labels. The cache keeps one intensity column per AU of this set."""
        return tuple(sorted({int(a) for s in self.samples if s.aus for a in s.aus}))

    def split(self, name: str) -> list[Sample]:
        """The rows of split ``name`` (``"all"``: every row)."""
        return list(self.samples) if name == ALL else [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, int]:
        c = Counter(s.split for s in self.samples)
        return {k: c.get(k, 0) for k in SPLITS}

    def content_hash(self) -> str:
        h = hashlib.sha256()
        h.update(self.dataset.encode())
        for s in self.samples:
            h.update(json.dumps(s.key(), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{self.dataset}: {c['train']} train / {c['val']} val / {c['test']} test"]
        if self.skipped:
            parts.append(
                "skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
            )
        if self.landmark_errors:
            parts.append("kept without shipped landmarks (landmark failures) "
                         + ", ".join(f"{n} {r}" for r, n in sorted(self.landmark_errors.items())))
        return "; ".join(parts)


def carve_validation(samples: Iterable[Sample], fraction: float, seed: int, by: str = "label") -> list[Sample]:
    """Move a seeded ``fraction`` of the train rows to split "val" (never a test row).

    ``by="label"``: stratified by label, each class keeping at least one training row.
    ``by="subject"``: whole identities move (in a seeded order) until about ``fraction`` of
    the train rows are in val, so no subject (and no CK+ sequence) straddles train and val;
    at least one identity stays in train; rows without identity count as their own subject.
    ``by="identity"``: stratified by identity (identity targets: every subject must be
    seen in training, so rows, not subjects, move).
    Validation always comes out of train, never test (paper 002 selects λ on validation).
    """
    samples = list(samples)
    if fraction <= 0:
        return samples
    if by not in ("label", "subject", "identity"):
        raise ValueError(f"carve_validation: by must be label, subject or identity, got {by!r}")
    rng = np.random.default_rng(seed)
    train = [i for i, s in enumerate(samples) if s.split == "train"]
    if by == "subject":
        groups: dict[str, list[int]] = {}
        for i in train:
            ident = samples[i].identity
            groups.setdefault(f"id:{ident}" if ident is not None else f"row:{i}", []).append(i)
        names = sorted(groups)
        target, moved = fraction * len(train), 0
        for k in rng.permutation(len(names))[: max(len(names) - 1, 0)]:
            if moved >= target or moved + len(groups[names[k]]) > 1.5 * target + 1:
                continue  # a subject that would overshoot by half is left in train
            for i in groups[names[k]]:
                samples[i].split = "val"
            moved += len(groups[names[k]])
        return samples
    key = (lambda s: s.label) if by == "label" else (lambda s: s.identity)
    by_key: dict = {}
    for i in train:
        by_key.setdefault(key(samples[i]), []).append(i)
    for k in (sorted(by_key) if by == "label" else sorted(by_key, key=str)):
        idx = by_key[k]
        n_val = min(len(idx) - 1, int(round(fraction * len(idx))))
        for i in rng.permutation(idx)[: max(n_val, 0)]:
            samples[i].split = "val"
    return samples


def check_test(manifest: Manifest) -> None:
    """Refuse to train on a dataset whose test split is empty (it trained, then reported
    ``nan``); ``build_loaders`` calls it on a manifest it read, before the cache is built
    (preprocessing does not: an analysis-only dataset, DISFA, has no test split)."""
    if manifest.split("test") or not manifest.samples:
        return
    counts = ", ".join(f"{n} {k}" for k, n in manifest.counts().items() if n)
    skipped = f"; skipped: {dict(manifest.skipped)}" if manifest.skipped else ""
    raise DatasetError(f"{manifest.dataset}: the test split is empty ({counts}{skipped}), so nothing could be "
                       f"evaluated; check the dataset's test images and labels under {manifest.root} (or its options)")


def check_validation(manifest: Manifest, fraction: float) -> None:
    """Refuse a validation split that came out empty although ``fraction`` > 0 (26
    training rows gave 0 validation rows at 0.1; training then printed ``val CL nan`` every
    epoch and kept the last epoch as "best"). One sentence: how many rows, and which
    ``val_fraction`` gives at least one validation row per class (per subject group with
    when the reader carves whole subjects). ``fraction == 0`` is the user's explicit choice:
    no check. Called by ``build_loaders`` and the orchestrator's preprocessing on a manifest
    they read, before the cache is built."""
    by = manifest.val_by
    train = manifest.split("train")
    if fraction <= 0 or manifest.split("val") or not train:
        return
    if by == "subject":
        groups = Counter(s.identity if s.identity is not None else f"row{i}" for i, s in enumerate(train))
        if len(groups) < 2:
            need = None
        else:
            need = math.ceil(100 * min(groups.values()) / len(train)) / 100
        unit = f"{len(groups)} subjects"
    else:
        sizes = Counter(s.label if by == "label" else s.identity for s in train)
        usable = [n for n in sizes.values() if n >= 2]  # a class of one row keeps it for training
        need = math.ceil(100 / min(usable)) / 100 if usable else None
        unit = f"{len(sizes)} {'classes' if by == 'label' else 'identities'}, the smallest with {min(sizes.values())}"
    fix = (f"pass --val-fraction {need:g} or more (at least one validation row per class)" if need is not None and need < 1
           else "add training data")
    raise DatasetError(
        f"{manifest.dataset}: the validation split is empty ({len(train)} training rows in {unit}) at "
        f"val_fraction {fraction:g}; {fix}, or pass --val-fraction 0 to train without validation (the last epoch is kept)"
    )
