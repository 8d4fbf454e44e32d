"""Base class of the dataset readers and the ``read_dataset`` factory (docs/contracts.md).

A reader turns a dataset as the user has it on disk (its official layout) into a
:class:`~fer_models.data.manifest.Manifest`. The common steps live here:

1. resolve the root (``root`` argument, else ``default_root``) and check the layout with
   :meth:`DatasetReader.check`, which raises :class:`DatasetError` in one sentence naming the
   file that was expected and where, *before* any long work;
2. :meth:`DatasetReader.collect` fills the manifest, counting every row it cannot use with
   ``manifest.skip(reason, item)`` (a listed image missing on disk is such a skip);
3. ``verify=True`` decodes every image and counts undecodable ones as skips (off by default:
   decoding 280k AffectNet JPEGs is slow, and preprocessing counts them anyway through
   :class:`fer_models.data.images.UnreadableImage`);
4. unless the dataset defines its own validation split (FER2013, TFD), validation is carved
   from train with :func:`carve_validation` (stratified, seeded), never from test.

Subject-wise datasets (CK+, KDEF, RaFD) put whole identities in test with
:func:`subject_folds`, and their validation is carved subject-wise too (whole identities
move from train to val, so the frames of one CK+ sequence never straddle the two; paper
001's released code holds out one of the ten subject folds as validation): a reader says
so with :meth:`DatasetReader.val_by`.

Reader options. ``options`` holds each option's default and ``choices`` the allowed values
where they are few; :meth:`DatasetReader.resolve_options` casts a value to its default's
type (``--data-opt fold=3`` arrives as an int, ``classes=happiness,sadness`` as a string)
and rejects an unknown name or a bad value in one sentence listing every valid option,
before the dataset is touched (:func:`check_options`, used by the CLI). The options that
differ from the defaults are recorded in ``Manifest.options`` (part of the cache key).
Cross-validation: :func:`fold_options` gives each fold's options for ``--folds``.

Whole frames. A reader of a dataset that ships whole frames (CK+, KDEF, RaFD, DISFA) sets
``whole_frames = True``: preprocessing then crops each face to a square box built from its
landmarks before resizing (:mod:`fer_models.data.cache.stages`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

from fer_models import paths
from fer_models.data.manifest import Manifest, Sample, carve_validation
from fer_models.errors import ConfigError, DatasetError
from fer_models.registry import DATASETS

DATA_ENV = "FER_ORCH_DATA"


class DatasetReader:
    """Common behaviour of the readers; subclasses set the class attributes and implement
    :meth:`check` and :meth:`collect`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # the dataset's usual spelling, for messages ("RAF-DB")
    folder: ClassVar[str] = ""  # sub-folder of $FER_ORCH_DATA used as the default root
    download_hint: ClassVar[str] = "download it and pass --root"
    options: ClassVar[dict[str, Any]] = {}  # accepted reader options and their defaults
    choices: ClassVar[dict[str, tuple]] = {}  # allowed values of the options that have few
    has_val_split: ClassVar[bool] = False  # the dataset ships its own validation split
    whole_frames: ClassVar[bool] = False  # images are whole frames: crop the face (landmarks)
    fixed_folds: ClassVar[int | None] = None  # official folds (TFD: 5); else the n_folds option

    @property
    def default_root(self) -> Path:
        """``$FER_ORCH_DATA/<folder>``, else ``<FER_ORCH_HOME>/datasets/<folder>``."""
        base = os.environ.get(DATA_ENV)
        base_path = Path(base) if base else paths.home() / "datasets"
        return base_path / (self.folder or self.name)

    # -- the template -------------------------------------------------------------------
    def read(
        self,
        root: str | os.PathLike | None = None,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        verify: bool = False,
        **options: Any,
    ) -> Manifest:
        opts = self.resolve_options(options)
        root_path = Path(root if root is not None else self.default_root).expanduser().resolve()
        if not root_path.is_dir():
            raise DatasetError(
                f"{self.title}: dataset root {root_path} does not exist; {self.download_hint}"
            )
        self.check(root_path, opts)
        manifest = Manifest(dataset=self.name, root=root_path, samples=[],
                            options={k: v for k, v in opts.items() if v != self.options[k]},
                            frames=self.frames(opts))
        self.collect(root_path, manifest, opts)
        check_inside(manifest, root_path, self.title)
        drop_duplicates(manifest)
        if verify:
            verify_images(manifest)
        if not manifest.samples:
            raise DatasetError(
                f"{self.title}: no usable image was found under {root_path} "
                f"(skipped: {dict(manifest.skipped) or 'none'}); check the layout and options"
            )
        bad = [s for s in manifest.samples if not 0 <= s.label < manifest.num_classes]
        if bad:  # a reader bug, not a user mistake
            raise AssertionError(f"{self.name}: label {bad[0].label} outside 0..{manifest.num_classes - 1}")
        if not (self.has_val_split and manifest.split("val")):
            manifest.val_by = self.val_by(opts)
            carve_validation(manifest.samples, val_fraction, seed, by=manifest.val_by)
        return manifest

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in and values cast to the defaults' types;
        an unknown name or a bad value is one ConfigError listing the valid options."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(f"{self.name}: unknown reader option(s) {', '.join(unknown)}; "
                              f"valid options: {self.describe_options()}")
        opts = dict(self.options)
        for key, value in options.items():
            opts[key] = self._cast(key, value)
        self.validate(opts)
        return opts

    def _cast(self, key: str, value: Any) -> Any:
        default = self.options[key]
        try:
            if isinstance(default, bool):
                text = str(value).strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = text in ("true", "1", "yes")
            elif isinstance(default, int):
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            elif isinstance(default, str):
                value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        except (TypeError, ValueError):
            self.bad_option(key, value)
        if key in self.choices and value not in self.choices[key]:
            self.bad_option(key, value)
        return value

    def bad_option(self, key: str, value: Any) -> None:
        """Raise the one-sentence error for ``key=value``."""
        raise ConfigError(f"{self.name}: option {key}={value!r} is not valid; "
                          f"valid options: {self.describe_options()}")

    def describe_options(self) -> str:
        """``classes (6, 7 or 8; default 8), fold (default 0), ...`` for messages."""
        if not self.options:
            return "none (this reader takes no option)"
        parts = []
        for key in sorted(self.options):
            allowed = self.choices.get(key)
            spec = f"{', '.join(map(str, allowed[:-1]))} or {allowed[-1]}; " if allowed and len(allowed) > 1 else ""
            parts.append(f"{key} ({spec}default {self.options[key]!r})")
        return ", ".join(parts)

    def frames(self, opts: dict[str, Any]) -> str:
        """"whole" when the images are whole frames whose face preprocessing must crop
        (``whole_frames``), else "face" (the images are face crops, left as they are)."""
        return "whole" if self.whole_frames else "face"

    def val_by(self, opts: dict[str, Any]) -> str:
        """How validation is carved from train (:func:`carve_validation`'s ``by``): "subject"
        when the test split is subject-wise (the reader has ``n_folds``), else "label"."""
        return "subject" if "n_folds" in self.options else "label"

    def fold_count(self, opts: dict[str, Any]) -> int | None:
        """How many folds ``fold`` ranges over (None: the dataset has no folds)."""
        if self.fixed_folds:
            return int(self.fixed_folds)
        return int(opts["n_folds"]) if "n_folds" in opts else None

    # -- to implement -------------------------------------------------------------------
    def validate(self, opts: dict[str, Any]) -> None:
        """Check the options together (e.g. fold < n_folds) without touching the disk;
        the default checks ``fold`` against :meth:`fold_count`."""
        if "fold" in opts:
            n = self.fold_count(opts)
            if n is not None and n < 2:
                raise ConfigError(f"{self.name}: n_folds must be at least 2, got {n}; pass a larger n_folds")
            if n is not None and not 0 <= int(opts["fold"]) < n:
                raise ConfigError(f"{self.name}: fold {opts['fold']} is outside 0..{n - 1}; pass a fold in that range")

    def check(self, root: Path, opts: dict[str, Any]) -> None:
        """Raise DatasetError when the layout is not there (fast: no per-image work)."""

    def collect(self, root: Path, manifest: Manifest, opts: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------
    def require(self, root: Path, *candidates: str, what: str | None = None) -> Path:
        """The first of ``candidates`` (relative paths) present under ``root``, else DatasetError."""
        for rel in candidates:
            p = root / rel
            if p.exists():
                return p
        alts = " (or " + ", ".join(candidates[1:]) + ")" if len(candidates) > 1 else ""
        raise DatasetError(
            f"{self.title}: expected {what or candidates[0]}{alts} under {root}; {self.download_hint}"
        )



def _inside(path: str, folders: tuple[str, ...]) -> bool:
    """``path`` lies (lexically: ``..`` resolved, links kept) under one of ``folders``."""
    p = os.path.normpath(os.path.abspath(path))
    return any(p == f or p.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _allowed_folders(root: Path) -> tuple[str, ...]:
    """The dataset root, and the PNG cache where FER2013 / TFD write their pixels."""
    return tuple(os.path.normpath(os.path.abspath(f)) for f in (root, paths.cache_dir()))


def check_inside(manifest: Manifest, root: Path, title: str) -> None:
    """Refuse a manifest naming an image outside the dataset root (a label file line such as
    ``../../../etc/x.jpg 1``): a reader opens only files of the dataset it was pointed at.
    The check is lexical, so a symbolic link the user placed inside the root still works."""
    folders = _allowed_folders(root)
    for s in manifest.samples:
        if not _inside(s.path, folders):
            _outside(s.path, root, title)


def _outside(path: str, root: Path, title: str) -> None:
    raise DatasetError(f"{title}: the image path {path!r} built from the dataset's label file lies outside "
                       f"the dataset root {root}; fix the label file (names are relative to the root)")


#: the skip reasons of :func:`drop_duplicates`
DUPLICATE_KEPT_ONCE = "duplicate line (kept once)"
DUPLICATE_CONFLICT = "duplicate image with conflicting labels or splits (dropped)"


def drop_duplicates(manifest: Manifest) -> None:
    """One row per image file. Rows naming the same image with the same label and split are
    kept once; an image listed with different labels (or in two splits) is dropped: which
    label is right cannot be known, and keeping both trains on contradictions (or leaks a
    test image into training). Both are counted by reason in ``manifest.skipped``."""
    first: dict[str, int] = {}
    conflict: set[str] = set()
    keep: list[Sample] = []
    for s in manifest.samples:
        key = os.path.normpath(s.path)
        i = first.get(key)
        if i is None:
            first[key] = len(keep)
            keep.append(s)
        elif (keep[i].label, keep[i].split) == (s.label, s.split):
            manifest.skip(DUPLICATE_KEPT_ONCE, s.path)
        else:
            conflict.add(key)
            manifest.skip(DUPLICATE_CONFLICT, s.path)
    if conflict:
        for s in keep:
            if os.path.normpath(s.path) in conflict:
                manifest.skip(DUPLICATE_CONFLICT, s.path)
        keep = [s for s in keep if os.path.normpath(s.path) not in conflict]
    manifest.samples = keep


def read_label_text(path: Path, title: str) -> str:
    """A label file's text: UTF-8 (with or without the byte-order mark Windows editors
    write) or UTF-16 with its byte-order mark (Notepad's "Unicode"); other bytes are one
    sentence naming the file."""
    data = path.read_bytes()
    try:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{title}: the label file {path} is not UTF-8 text (byte {e.start} cannot be decoded); "
                           "save it as UTF-8 or restore the original file") from None


def require_inside(manifest: Manifest, path: str) -> None:
    """:func:`check_inside` of one path, before a reader looks at the file."""
    if not _inside(path, _allowed_folders(manifest.root)):
        _outside(path, manifest.root, manifest.dataset)


def add_if_exists(manifest: Manifest, sample: Sample) -> bool:
    """Append ``sample`` when its image is on disk, else count a "missing image" skip. A path
    outside the dataset root is refused before the file is looked at (:func:`check_inside`)."""
    require_inside(manifest, sample.path)
    if os.path.isfile(sample.path):
        manifest.samples.append(sample)
        return True
    manifest.skip("missing image", sample.path)
    return False


def verify_images(manifest: Manifest) -> None:
    """Decode every image; undecodable ones leave the manifest as "unreadable image" skips."""
    from tqdm import tqdm

    from fer_models.data.images import is_readable

    kept = []
    for s in tqdm(manifest.samples, desc=f"verifying {manifest.dataset}", unit="img", leave=False, delay=1.0):
        if is_readable(s.path):
            kept.append(s)
        else:
            manifest.skip("unreadable image", s.path)
    manifest.samples = kept


def subject_folds(identities: Iterable[str], n_folds: int) -> dict[str, int]:
    """Identity -> fold in ``0..n_folds-1``, round-robin over the sorted identities.

    Deterministic and independent of the seed, so that ``fold`` alone names a split (the
    10-fold subject-independent CK+ protocol of paper 001 follows [15] without publishing the
    subject lists; sorted round-robin is the usual reconstruction).
    """
    ids = sorted(set(identities))
    if n_folds < 2:
        raise ConfigError(f"n_folds must be at least 2, got {n_folds}; pass a larger n_folds")
    return {ident: i % n_folds for i, ident in enumerate(ids)}


def reader(name: str) -> Any:
    """The reader registered as ``name`` (an instance)."""
    reader_cls = DATASETS.get(name)
    return reader_cls() if isinstance(reader_cls, type) else reader_cls


def read_dataset(name: str, root: str | os.PathLike | None = None, **kw: Any) -> Manifest:
    """Look ``name`` up in ``DATASETS`` and read it: ``read_dataset("rafdb", "/data/RAF-DB")``."""
    return reader(name).read(root, **kw)


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Resolve ``options`` for dataset ``name`` without reading it (the CLI's early check):
    the options with defaults, or one ConfigError listing the valid ones."""
    return reader(name).resolve_options(dict(options or {}))


def fold_options(name: str, options: dict[str, Any], folds: int | str) -> list[dict[str, Any]]:
    """The data options of each fold of a ``--folds`` cross-validation of dataset ``name``.

    ``folds``: ``"all"`` (every fold: ``n_folds`` as configured, or the official count) or a
    count N (N subject-wise folds; a dataset with official folds accepts only their count).
    Each item holds ``fold`` (and ``n_folds`` where the reader takes it), merged by the grid
    into the trial's data options.
    """
    r = reader(name)
    opts = r.resolve_options(dict(options or {}))
    n = r.fold_count(opts)
    if n is None:
        raise ConfigError(f"{name} has no folds (it ships one train/test split); drop --folds for it "
                          "or pick a dataset with folds (ckplus, tfd, kdef, rafd)")
    if folds != "all":
        if r.fixed_folds and int(folds) != r.fixed_folds:
            raise ConfigError(f"{name} has {r.fixed_folds} official folds; pass --folds {r.fixed_folds} or --folds all")
        n = int(folds)
    out = [{"fold": k, "n_folds": n} if "n_folds" in r.options else {"fold": k} for k in range(n)]
    for o in out:
        r.resolve_options({**opts, **o})  # e.g. a fold beyond what the reader allows
    return out
