"""Extended Cohn-Kanade (CK+, Lucey et al. 2010): the first dataset of paper 001.

Layout::

    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png ... (one folder per sequence)
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt   one float: the sequence's label
    <root>/FACS/S005/001/S005_001_00000011_facs.txt          lines "AU intensity" (floats)

CK+ ids: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.
Protocol (paper 001, Sec. 4, after [15]): the last ``peak_frames`` (3) frames of each
labelled sequence get its emotion and its FACS AUs; the first frame is neutral with every
coded AU at 0. Sequences without an emotion file are counted as skips. ``classes``: 8
(default, paper 001's "8 classes" table: with neutral and contempt), 7 (drops contempt) or
6 (the six basic emotions: drops neutral and contempt, the paper's second table).
CK+ codes an AU intensity of 0 when the AU is present but its intensity was not scored;
we record such AUs as 1.0 (present, the lowest intensity A) so that 0 keeps meaning absent.
Identity = subject; test = the subjects of ``fold`` among ``n_folds`` subject-wise folds
(sorted subjects dealt round-robin, as the released code of paper 001 makes its folds);
validation is carved subject-wise from the other folds, so the frames of one sequence
never straddle train and validation. ``meta["sequence"]`` (``S005/001``) is stored per row
in the cache (its ``sequence`` column).
Frames are whole 640x490 images: preprocessing crops the face by its landmarks
(``whole_frames``).
Options: ``classes`` (6, 7, 8), ``fold``, ``n_folds`` (10), ``peak_frames`` (3),
``neutral_first`` (true).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader, add_if_exists, subject_folds
from fer_models.errors import ConfigError
from fer_models.labels import INDEX
from fer_models.registry import DATASETS

CK_TO_PROJECT = {
    0: INDEX["neutral"],
    1: INDEX["anger"],
    2: INDEX["contempt"],
    3: INDEX["disgust"],
    4: INDEX["fear"],
    5: INDEX["happiness"],
    6: INDEX["sadness"],
    7: INDEX["surprise"],
}
IMAGES, EMOTION, FACS = "cohn-kanade-images", "Emotion", "FACS"


def read_facs(path: Path) -> dict[int, float] | None:
    """``"AU intensity"`` lines -> {AU: intensity}, with unscored (0) intensities as 1.0."""
    if not path.is_file():
        return None
    aus: dict[int, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 1:
            au = int(float(parts[0]))
            inten = float(parts[1]) if len(parts) > 1 else 0.0
            aus[au] = inten if inten > 0 else 1.0
    return aus


@DATASETS.register("ckplus", classes=8)
class CKPlus(DatasetReader):
    """CK+: last 3 frames + first (neutral) frame per labelled sequence, subject-wise 10 folds."""

    name = "ckplus"
    title = "CK+"
    folder = "CK+"
    download_hint = "request CK+ (https://www.jeffcohn.net/resources/) and pass --root"
    options = {"classes": 8, "fold": 0, "n_folds": 10, "peak_frames": 3, "neutral_first": True}
    choices = {"classes": (6, 7, 8)}
    whole_frames = True

    def validate(self, opts: dict[str, Any]) -> None:
        super().validate(opts)
        if int(opts["peak_frames"]) < 1:
            raise ConfigError(f"ckplus: peak_frames={opts['peak_frames']} must be at least 1; "
                              f"valid options: {self.describe_options()}")

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        self.require(root, IMAGES)
        self.require(root, EMOTION, what=f"{EMOTION}/<subject>/<sequence>/*_emotion.txt")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        classes = int(opts["classes"])
        manifest.num_classes = classes
        kept: list[Sample] = []
        for seq_dir in sorted(p for p in (root / IMAGES).glob("*/*") if p.is_dir()):
            subject, seq = seq_dir.parent.name, seq_dir.name
            frames = sorted(seq_dir.glob("*.png"))
            if not frames:
                continue
            emo_files = sorted((root / EMOTION / subject / seq).glob("*_emotion.txt"))
            if not emo_files:
                manifest.skip("unlabelled sequence", str(seq_dir))
                continue
            try:
                ck_id = int(float(emo_files[-1].read_text().split()[0]))
            except (ValueError, IndexError):
                manifest.skip("malformed emotion file", str(emo_files[-1]))
                continue
            if ck_id not in CK_TO_PROJECT:
                manifest.skip("unknown emotion id", str(emo_files[-1]))
                continue
            label = CK_TO_PROJECT[ck_id]
            facs = sorted((root / FACS / subject / seq).glob("*_facs.txt"))
            aus = read_facs(facs[-1]) if facs else None
            peak = frames[-int(opts["peak_frames"]):]
            rows = [(f, label, aus, "peak") for f in peak]
            if opts["neutral_first"] and frames[0] not in peak:
                rows.insert(0, (frames[0], INDEX["neutral"], {a: 0.0 for a in aus} if aus else None, "onset"))
            for frame, lab, frame_aus, role in rows:
                if lab >= classes or (classes == 6 and lab == INDEX["neutral"]):
                    manifest.skip(f"{'contempt' if lab == INDEX['contempt'] else 'neutral'} "
                                  f"({classes}-class mode)", str(frame))
                    continue
                s = Sample(path=str(frame), split="train", label=lab, identity=subject,
                           aus=dict(frame_aus) if frame_aus is not None else None)
                s.meta.update(sequence=f"{subject}/{seq}", role=role)
                kept.append(s)
        folds = subject_folds((s.identity for s in kept), int(opts["n_folds"]))
        for s in kept:
            s.split = "test" if folds[s.identity] == int(opts["fold"]) else "train"
            s.meta["fold"] = folds[s.identity]
            add_if_exists(manifest, s)
