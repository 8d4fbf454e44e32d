"""``synthetic-rafdb`` and ``synthetic-affectnet``: the embedded default datasets.

On first use each is generated (:mod:`fer_models.data.synth`) under
``fer_models.paths.synthetic_dir()/<name>`` in the official RAF-DB / AffectNet layout
(:mod:`fer_models.data.synth_io`), then read with the *real* ``rafdb`` / ``affectnet``
reader, and the side file's ground truth is attached to every sample: ``identity``,
``landmarks``, ``aus`` (intensity of every AU in ``au.AU_IDS``), ``valence``, ``arousal``,
``meta["synthetic"] = True`` and ``meta["intensity"]``.

Defaults suit a CPU grid: 1,400 train + 350 test faces at 64 px from 40 identities; the
AffectNet-like set uses another seed, hence other identities and images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from fer_models import paths
from fer_models.data import synth_io
from fer_models.data.manifest import Manifest
from fer_models.data.readers import read_dataset
from fer_models.errors import ConfigError
from fer_models.registry import DATASETS

GEN_OPTIONS = ("n_train", "n_test", "image_size", "n_identities", "gen_seed")


class _Synthetic:
    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    title: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    @property
    def default_root(self) -> Path:
        return paths.synthetic_dir() / self.name

    def ensure(self, root: Path, options: dict[str, Any], progress: bool = True) -> Path:
        """Generate the dataset at ``root`` unless the one there fits.

        A synthetic dataset already at ``root`` (same layout and generator version) is used
        as it is, unless an option passed explicitly differs from how it was made; missing
        options take the defaults when generating. Writes into a temporary sibling folder
        and renames it into place, so a concurrent reader (another Ray worker) never sees
        a half-written dataset.
        """
        unknown = sorted(set(options) - set(GEN_OPTIONS))
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(GEN_OPTIONS)}"
            )
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
            synth_io.write_dataset(
                tmp / "d", self.layout, want["n_train"], want["n_test"], want["image_size"],
                want["gen_seed"], want["n_identities"], progress=progress,
            )
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
        root_path = Path(root if root is not None else self.default_root).expanduser().resolve()
        self.ensure(root_path, options, progress=progress)
        manifest = read_dataset(self.layout, root_path, val_fraction=val_fraction, seed=seed, verify=verify)
        truth = synth_io.load_truth(root_path)
        kept = []
        for s in manifest.samples:
            t = truth.get(Path(s.path).resolve().relative_to(root_path).as_posix())
            if t is None:
                manifest.skip("no synthetic ground truth", s.path)
                continue
            s.identity = str(t.identity)
            s.landmarks = t.landmarks
            s.aus = t.aus
            s.valence, s.arousal = t.valence, t.arousal
            s.meta["synthetic"] = True
            s.meta["intensity"] = t.intensity
            kept.append(s)
        manifest.samples = kept
        manifest.dataset = self.name
        return manifest


@DATASETS.register("synthetic-rafdb", classes=7, synthetic=True)
class SyntheticRafDB(_Synthetic):
    """Synthetic faces in RAF-DB's layout (generated on first use; the offline default)."""

    name = "synthetic-rafdb"
    layout = "rafdb"
    title = "synthetic RAF-DB"
    defaults = dict(n_train=1400, n_test=350, image_size=64, n_identities=40, gen_seed=0)


@DATASETS.register("synthetic-affectnet", classes=7, synthetic=True)
class SyntheticAffectNet(_Synthetic):
    """Synthetic faces in AffectNet's official layout (generated on first use)."""

    name = "synthetic-affectnet"
    layout = "affectnet"
    title = "synthetic AffectNet"
    defaults = dict(n_train=1400, n_test=350, image_size=64, n_identities=40, gen_seed=1)
