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
:func:`subject_folds`; the validation rows carved from the remaining train rows are
stratified by label, not by subject (the papers select hyper-parameters on such a split).
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
    has_val_split: ClassVar[bool] = False  # the dataset ships its own validation split

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
        manifest = Manifest(dataset=self.name, root=root_path, samples=[])
        self.collect(root_path, manifest, opts)
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
            carve_validation(manifest.samples, val_fraction, seed)
        return manifest

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"{self.name}: unknown reader option(s) {', '.join(unknown)}; known options: {known}"
            )
        return {**self.options, **options}

    # -- to implement -------------------------------------------------------------------
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

    def choice(self, opts: dict[str, Any], key: str, allowed: Iterable[Any]) -> Any:
        allowed = list(allowed)
        value = opts[key]
        if value not in allowed:
            raise ConfigError(
                f"{self.name}: option {key}={value!r} is not one of {', '.join(map(repr, allowed))}; pick one"
            )
        return value


def add_if_exists(manifest: Manifest, sample: Sample) -> bool:
    """Append ``sample`` when its image is on disk, else count a "missing image" skip."""
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


def check_fold(name: str, fold: int, n_folds: int) -> None:
    if not 0 <= int(fold) < int(n_folds):
        raise ConfigError(f"{name}: fold {fold} is outside 0..{n_folds - 1}; pass a fold in that range")


def read_dataset(name: str, root: str | os.PathLike | None = None, **kw: Any) -> Manifest:
    """Look ``name`` up in ``DATASETS`` and read it: ``read_dataset("rafdb", "/data/RAF-DB")``."""
    reader_cls = DATASETS.get(name)
    reader = reader_cls() if isinstance(reader_cls, type) else reader_cls
    return reader.read(root, **kw)
