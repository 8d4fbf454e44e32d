"""The synthetic stand-ins: ``synthetic-rafdb`` and ``synthetic-affectnet`` (the embedded
default datasets), ``synthetic-ckplus`` and ``synthetic-disfa`` (whole frames, for the
protocols of papers 001 and 004: face cropping, subject folds, sequences, AU intensities).

On first use each is generated (:mod:`fer_models.data.synth`) under
``fer_models.paths.synthetic_dir()/<name>`` in the official RAF-DB / AffectNet layout
(:mod:`fer_models.data.synth.io`), then read with the *real* ``rafdb`` / ``affectnet``
reader, and the side file's ground truth is attached to every sample: ``identity``,
``landmarks``, ``aus`` (intensity of every AU in ``au.AU_IDS``), ``valence``, ``arousal``,
``meta["synthetic"] = True`` and ``meta["intensity"]``.

Defaults suit a CPU grid: 1,400 train + 350 test faces at 64 px from 40 identities; the
AffectNet-like set uses another seed, hence other identities and images.
``synthetic-ckplus``: 12 subjects x 3 sequences x 5 grey 320x245 frames (CK+'s aspect at
half size) with a 64 px face off-centre, read by the real ``ckplus`` reader (its options
``classes``, ``fold``, ``n_folds``, ``peak_frames``, ``neutral_first`` pass through), so
folds by subject, subject-wise validation and the crop-by-landmarks path run offline.
``synthetic-disfa``: 6 subjects x 40 frames (256x192) with DISFA's AU files, read by the
real ``disfa`` reader (``every``, ``subjects``, ``split`` pass through).
``synthetic-rafd`` and ``synthetic-kdef``: portraits in RaFD's / KDEF's layout with the
official file names, subjects and camera angles (:mod:`fer_models.data.synth.portraits`),
read by the real ``rafd`` / ``kdef`` readers with all their options.
``synthetic-tfd`` (96 and 48 px grey faces in TFD's two .mat files, 5 subject folds, a tenth
unlabelled) and ``synthetic-fer2013`` (48 px grey faces in FER2013's csv) pack their pixels in
one file as the real datasets do (:mod:`fer_models.data.synth.packed`), read by the real
``tfd`` / ``fer2013`` readers.
Options are the generation options (``defaults``) plus those; a wrong one is one sentence.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from fer_models import paths
from fer_models.data.synth import frames as synth_frames, io as synth_io, packed as synth_packed, portraits as synth_portraits
from fer_models.data.manifest import Manifest
from fer_models.data.readers import DatasetReader, read_dataset, reader
from fer_models.errors import ConfigError
from fer_models.registry import DATASETS



class _Synthetic(DatasetReader):
    """Base of the synthetic stand-ins: generation options (``defaults``) plus the options
    of the real reader they are read with that make sense on them (``passthrough``)."""

    layout: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}  # generation options and their defaults
    passthrough: ClassVar[tuple[str, ...]] = ()  # options of the layout's reader accepted here
    #: passthrough options whose default differs from the real reader's (a smaller dataset)
    passthrough_defaults: ClassVar[dict[str, Any]] = {}

    @property
    def options(self) -> dict[str, Any]:  # type: ignore[override]
        layout_opts = reader(self.layout).options
        return {**self.defaults, **{k: layout_opts[k] for k in self.passthrough}, **self.passthrough_defaults}

    @property
    def choices(self) -> dict[str, tuple]:  # type: ignore[override]
        return {k: v for k, v in reader(self.layout).choices.items() if k in self.passthrough}

    @property
    def whole_frames(self) -> bool:  # type: ignore[override]
        return reader(self.layout).whole_frames

    def validate(self, opts: dict[str, Any]) -> None:
        lay = reader(self.layout)
        lay.validate({**lay.options, **{k: opts[k] for k in self.passthrough}})

    def val_by(self, opts: dict[str, Any]) -> str:
        lay = reader(self.layout)
        return lay.val_by({**lay.options, **{k: opts[k] for k in self.passthrough}})

    @property
    def fixed_folds(self) -> int | None:  # type: ignore[override]
        return reader(self.layout).fixed_folds

    def fold_count(self, opts: dict[str, Any]) -> int | None:
        if self.fixed_folds:
            return int(self.fixed_folds)
        return int(opts["n_folds"]) if "n_folds" in self.passthrough else None

    @property
    def default_root(self) -> Path:
        return paths.synthetic_dir() / self.name

    def _write(self, out: Path, gen: dict[str, Any], progress: bool) -> None:
        writers = {**synth_frames.WRITERS, **synth_portraits.WRITERS, **synth_packed.WRITERS}
        if self.layout in writers:
            kw = {("seed" if k == "gen_seed" else k): v for k, v in gen.items()}
            writers[self.layout](out, **kw, progress=progress)
        else:
            synth_io.write_dataset(out, self.layout, gen["n_train"], gen["n_test"], gen["image_size"],
                                   gen["gen_seed"], gen["n_identities"], progress=progress)

    def ensure(self, root: Path, options: dict[str, Any], progress: bool = True) -> Path:
        """Generate the dataset at ``root`` unless the one there fits.

        A synthetic dataset already at ``root`` (same layout and generator version) is used
        as it is, unless a generation option passed explicitly differs from how it was made;
        missing options take the defaults when generating. Writes into a temporary sibling
        folder and renames it into place, so a concurrent reader (another Ray worker) never
        sees a half-written dataset.
        """
        want = {**self.defaults, **options}
        info = synth_io.read_info(root)
        spec = dict(layout=self.layout, version=synth_io.SYNTH_VERSION)
        spec.update({("seed" if k == "gen_seed" else k): v for k, v in options.items()})

        def fits(info: dict | None) -> bool:
            return info is not None and all(info.get(k) == v for k, v in spec.items())

        if fits(info):
            return root
        if root.exists() and any(root.iterdir()) and info is None:
            raise ConfigError(
                f"{root} exists but holds no fer-orch synthetic dataset; remove it or pass another root"
            )
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            self._write(tmp / "d", want, progress)
            if fits(synth_io.read_info(root)):  # another process made it meanwhile
                return root
            if root.exists():
                shutil.rmtree(root)  # an outdated synthetic dataset (checked above)
            try:
                os.replace(tmp / "d", root)
            except OSError:  # another process won the race: use its copy
                if synth_io.read_info(root) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return root

    def read(
        self,
        root: str | os.PathLike | None = None,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        verify: bool = False,
        progress: bool = True,
        **options: Any,
    ) -> Manifest:
        opts = self.resolve_options(options)
        gen = {k: v for k, v in options.items() if k in self.defaults}
        passed = {k: opts[k] for k in self.passthrough if k in options or k in self.passthrough_defaults}
        root_path = Path(root if root is not None else self.default_root).expanduser().resolve()
        self.ensure(root_path, {k: opts[k] for k in gen}, progress=progress)
        manifest = read_dataset(self.layout, root_path, val_fraction=val_fraction, seed=seed, verify=verify,
                                **passed)
        truth = synth_io.load_truth(root_path)
        kept = []
        for s in manifest.samples:
            t = truth.get(self.truth_key(s, root_path, opts))
            if t is None:
                manifest.skip("no synthetic ground truth", s.path)
                continue
            s.identity = s.identity or str(t.identity)  # CK+/DISFA name their subjects
            s.landmarks = t.landmarks
            s.aus = t.aus
            s.valence, s.arousal = t.valence, t.arousal
            s.meta["synthetic"] = True
            s.meta["intensity"] = t.intensity
            self.attach(s, t)
            kept.append(s)
        manifest.samples = kept
        manifest.dataset = self.name
        manifest.options = {k: v for k, v in opts.items() if k in options and v != self.options[k]}
        return manifest

    def truth_key(self, sample: Any, root: Path, opts: dict[str, Any]) -> str:
        """The side file's key of ``sample``: its image's path under ``root`` (posix)."""
        return Path(sample.path).resolve().relative_to(root).as_posix()

    def attach(self, sample: Any, truth: Any) -> None:
        """Anything more the stand-in knows (the expression of a DISFA-like frame)."""


@DATASETS.register("synthetic-rafdb", classes=7, synthetic=True)
class SyntheticRafDB(_Synthetic):
    """Synthetic faces in RAF-DB's layout (generated on first use; the offline default)."""

    name = "synthetic-rafdb"
    layout = "rafdb"
    title = "synthetic RAF-DB"
    defaults = dict(n_train=1400, n_test=350, image_size=64, n_identities=40, gen_seed=0)


@DATASETS.register("synthetic-rafdb-shortcut", classes=7, synthetic=True)
class SyntheticRafDBShortcut(_Synthetic):
    """synthetic-rafdb's faces with a planted shortcut: corner colours predict the expression in train, random in test."""

    name = "synthetic-rafdb-shortcut"
    layout = "rafdb"
    title = "synthetic RAF-DB with a planted shortcut"
    # the faces of synthetic-rafdb (same generator seed); ``shortcut``: the cue's strength
    # (fer_models.data.synth.shortcut: the share of train rows whose cue is their expression)
    defaults = dict(SyntheticRafDB.defaults, shortcut=0.9)

    def _write(self, out: Path, gen: dict[str, Any], progress: bool) -> None:
        from fer_models.data.synth.shortcut import plant_shortcut

        super()._write(out, {k: v for k, v in gen.items() if k != "shortcut"}, progress)
        plant_shortcut(out, float(gen["shortcut"]), seed=int(gen["gen_seed"]))


@DATASETS.register("synthetic-affectnet", classes=7, synthetic=True)
class SyntheticAffectNet(_Synthetic):
    """Synthetic faces in AffectNet's official layout (generated on first use)."""

    name = "synthetic-affectnet"
    layout = "affectnet"
    title = "synthetic AffectNet"
    defaults = dict(n_train=1400, n_test=350, image_size=64, n_identities=40, gen_seed=1)


@DATASETS.register("synthetic-ckplus", classes=8, synthetic=True)
class SyntheticCKPlus(_Synthetic):
    """Synthetic whole grey frames in CK+'s layout: subjects, sequences, off-centre faces, FACS, folds."""

    name = "synthetic-ckplus"
    layout = "ckplus"
    title = "synthetic CK+"
    defaults = dict(n_identities=12, n_sequences=3, image_size=64, frame="320x245", gen_seed=2)
    passthrough = ("classes", "fold", "n_folds", "peak_frames", "neutral_first")


@DATASETS.register("synthetic-rafd", classes=7, synthetic=True)
class SyntheticRaFD(_Synthetic):
    """Synthetic portraits in RaFD's layout: subjects, 8 expressions, 3 gazes, 5 camera angles (paper 003)."""

    name = "synthetic-rafd"
    layout = "rafd"
    title = "synthetic RaFD"
    defaults = dict(n_identities=8, image_size=64, frame="170x256", gen_seed=4)
    passthrough = ("classes", "angles", "gazes", "fold", "n_folds", "split", "test_per_group", "seed")
    # paper 003 tests 101 of 201 images per (angle, expression) and 12 of 24 per (angle,
    # subject): about half of each group. With 8 subjects both groups hold 24 images, so 12
    # keeps that share for either split (the real reader's 0 = the paper's counts).
    passthrough_defaults = {"test_per_group": 12}


@DATASETS.register("synthetic-kdef", classes=7, synthetic=True)
class SyntheticKDEF(_Synthetic):
    """Synthetic portraits in KDEF's layout: subjects, sessions A/B, 7 expressions, 5 camera angles (paper 004)."""

    name = "synthetic-kdef"
    layout = "kdef"
    title = "synthetic KDEF"
    defaults = dict(n_identities=10, image_size=64, frame="140x190", gen_seed=5)
    passthrough = ("angles", "fold", "n_folds")


@DATASETS.register("synthetic-disfa", expression_labels=False, synthetic=True)
class SyntheticDISFA(_Synthetic):
    """Synthetic whole video frames in DISFA's layout: subjects, AU intensity files (analysis set)."""

    name = "synthetic-disfa"
    layout = "disfa"
    title = "synthetic DISFA"
    defaults = dict(n_identities=6, n_frames=40, image_size=64, frame="256x192", gen_seed=3)
    passthrough = ("every", "subjects", "split")

    def attach(self, sample: Any, truth: Any) -> None:
        """The expression drawn for the frame replaces DISFA's placeholder (paper 004 had its
        DISFA frames labelled by a classifier; the stand-in knows the truth)."""
        sample.label = int(truth.label)
        sample.meta["no_expression_label"] = False


@DATASETS.register("synthetic-tfd", classes=7, synthetic=True)
class SyntheticTFD(_Synthetic):
    """Synthetic grey faces in TFD's layout: 96 and 48 px .mat files, 5 subject folds, unlabelled rows (paper 001)."""

    name = "synthetic-tfd"
    layout = "tfd"
    title = "synthetic TFD"
    defaults = dict(n_faces=420, n_identities=30, gen_seed=6)
    passthrough = ("resolution", "fold")
    passthrough_defaults = {"resolution": 96}  # paper 001's faces (the real reader's default is 48)

    def truth_key(self, sample: Any, root: Path, opts: dict[str, Any]) -> str:
        """The reader unpacks the .mat into PNG files elsewhere: the key names the matrix row."""
        from fer_models.data.readers.tfd import TFD

        return f"{TFD._mat({**reader('tfd').options, 'resolution': opts['resolution']})}#index={sample.meta['index']}"


@DATASETS.register("synthetic-fer2013", classes=7, synthetic=True)
class SyntheticFER2013(_Synthetic):
    """Synthetic 48 px grey faces in FER2013's csv: Training / PublicTest / PrivateTest rows (paper 004)."""

    name = "synthetic-fer2013"
    layout = "fer2013"
    title = "synthetic FER2013"
    defaults = dict(n_train=350, n_val=70, n_test=70, n_identities=30, gen_seed=7)
    passthrough = ("classes",)

    def truth_key(self, sample: Any, root: Path, opts: dict[str, Any]) -> str:
        """The reader unpacks the csv into PNG files elsewhere: the key names the csv row."""
        return f"{reader('fer2013').options['csv']}#row={sample.meta['row']}"
