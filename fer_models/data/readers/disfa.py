"""DISFA (Mavadati et al., 2013): AU intensities on video frames, for the filter<->AU analysis
(paper 001 Sec. 4.4 style statistics) and paper 004's probing.

Layout::

    <root>/ActionUnit_Labels/SN001/SN001_au1.txt      lines "frame,intensity" (0-5), one file per AU
    <root>/Frames_LeftCamera/SN001/00001.png          frames extracted by the user from
                                                      Videos_LeftCamera/LeftVideoSN001_comp.avi

DISFA ships videos, not frames: extract them first, e.g.
``ffmpeg -i LeftVideoSN001_comp.avi Frames_LeftCamera/SN001/%05d.png``. A frame file is
matched by the number at the end of its stem (``00001.png``, ``1.jpg`` and ``frame_1.png``
are all frame 1), with the label files' 1-based frame numbers. Option ``frames`` names the
frame folder (e.g. ``Frames_RightCamera``), ``every`` keeps every n-th labelled frame
(DISFA has ~4,845 per subject), ``subjects`` a comma list or ``"all"``.

DISFA has no expression labels, yet a Manifest row needs one: every row gets the
placeholder ``label = 6`` (neutral) with ``meta["no_expression_label"] = True``; do not
train expression classifiers on it. Sample.aus holds the AU intensities; identity = subject;
all rows are in ``split`` (default "test": an analysis set; nothing is carved); read them
all, whatever the split, as split ``"all"`` (``fer_models.data.manifest.ALL``). The frames
are whole 1024x768 video frames: preprocessing crops the face by its landmarks
(``whole_frames``). Options: ``frames``, ``every``, ``subjects``, ``split``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fer_models.data.manifest import Manifest, Sample
from fer_models.data.readers import DatasetReader
from fer_models.errors import ConfigError, DatasetError
from fer_models.labels import NEUTRAL
from fer_models.registry import DATASETS

LABELS = "ActionUnit_Labels"
AU_FILE = re.compile(r"^(SN\d+)_au(\d+)$", re.IGNORECASE)
TRAILING_INT = re.compile(r"(\d+)$")


@DATASETS.register("disfa", expression_labels=False)
class DISFA(DatasetReader):
    """DISFA: AU intensity labels joined to extracted video frames; no expression labels."""

    name = "disfa"
    title = "DISFA"
    folder = "DISFA"
    download_hint = "request DISFA (http://mohammadmahoor.com/disfa/), extract the frames and pass --root"
    options = {"frames": "Frames_LeftCamera", "every": 1, "subjects": "all", "split": "test"}
    choices = {"split": ("train", "val", "test")}
    whole_frames = True

    def validate(self, opts: dict[str, Any]) -> None:
        if int(opts["every"]) < 1:
            raise ConfigError(f"disfa: every={opts['every']} must be at least 1; valid options: {self.describe_options()}")

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        self.require(root, LABELS, what=f"{LABELS}/SN001/SN001_au1.txt")
        self.require(root, str(opts["frames"]), what=f"{opts['frames']}/SN001/00001.png (extracted frames)")

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        wanted = None
        if str(opts["subjects"]).lower() != "all":
            wanted = {s.strip().upper() for s in str(opts["subjects"]).split(",")}
        every = int(opts["every"])
        for subj_dir in sorted(p for p in (root / LABELS).iterdir() if p.is_dir()):
            subject = subj_dir.name.upper()
            if wanted is not None and subject not in wanted:
                continue
            aus_by_frame: dict[int, dict[int, float]] = {}
            for f in sorted(subj_dir.glob("*.txt")):
                m = AU_FILE.match(f.stem)
                if not m:
                    continue
                au = int(m.group(2))
                for lineno, line in enumerate(f.read_text().splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        frame, inten = (float(v) for v in line.replace(",", " ").split()[:2])
                    except ValueError as e:
                        raise DatasetError(
                            f"DISFA: line {lineno} of {f} is {line!r}, not 'frame,intensity'; "
                            "restore the original label file"
                        ) from e
                    aus_by_frame.setdefault(int(frame), {})[au] = inten
            frame_dir = root / str(opts["frames"]) / subj_dir.name
            files: dict[int, Path] = {}
            if frame_dir.is_dir():
                for p in frame_dir.iterdir():
                    m = TRAILING_INT.search(p.stem)
                    if m and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                        files[int(m.group(1))] = p
            for k, frame in enumerate(sorted(aus_by_frame)):
                if k % every:
                    continue
                path = files.get(frame)
                if path is None:
                    manifest.skip("missing frame", f"{frame_dir}/{frame:05d}")
                    continue
                s = Sample(path=str(path), split=str(opts["split"]), label=NEUTRAL, identity=subject,
                           aus=dict(aus_by_frame[frame]))
                s.meta.update(no_expression_label=True, frame=frame)
                manifest.samples.append(s)
