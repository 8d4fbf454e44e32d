"""The cache key: what a cache's content depends on, hashed, and the folder it names.

:func:`resolve` is the first step of every build (serial or Ray, see
:mod:`fer_models.data.cache.pipeline`) and of every lookup (``build_loaders``): names become
the backend class and the codebook, and the manifest, backend name + version, codebook
content, AU rules and sizes become a :class:`CacheTarget` (key and folder).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from fer_models.data import au
from fer_models.data.cache.layout import CACHE_FORMAT, cache_path
from fer_models.data.cache.rows import au_columns
from fer_models.data.manifest import Manifest
from fer_models.labels import output_names
from fer_models.errors import ConfigError


def resolve_backend(name_or_backend: Any, manifest: Manifest | None = None) -> Any:
    """A LANDMARKS name, "auto", a backend class or an instance -> class or instance.

    ``"auto"`` asks ``fer_models.data.landmarks.default_backend(manifest)`` (shipped or
    ground-truth landmarks when the dataset has them, else a detector).
    """
    if not isinstance(name_or_backend, str):
        return name_or_backend
    from fer_models.registry import LANDMARKS

    name = name_or_backend
    if name == "auto":
        if manifest is None:
            raise ConfigError("landmarks 'auto' needs the manifest; pass a backend name instead")
        from fer_models.data.landmarks import default_backend

        name = default_backend(manifest)
    return LANDMARKS.get(name)


def resolve_codebook(name_or_codebook: Any) -> Any:
    """A CODEBOOKS name -> the Codebook; anything else is returned as it is."""
    if not isinstance(name_or_codebook, str):
        return name_or_codebook
    from fer_models.registry import CODEBOOKS

    return CODEBOOKS.get(name_or_codebook)


def _codebook_content(codebook: Any) -> dict[str, Any]:
    from fer_models.data.au_released import RELEASED_DRAWING

    per = getattr(codebook, "aus_per_label", {})
    name = getattr(codebook, "name", str(codebook))
    out = {"name": name, "aus_per_label": {str(k): [int(a) for a in v] for k, v in sorted(per.items())}}
    if name in RELEASED_DRAWING:  # drawn the released way: another map, another cache
        out["drawing"] = "released-ellipses-v1"
    return out


def _targets_hash(manifest: Manifest) -> str:
    """Hash of what ``Sample.key()`` leaves out but the cache stores (AUs, valence, arousal)."""
    h = hashlib.sha256()
    for s in manifest.samples:
        aus = None if s.aus is None else sorted((int(k), round(float(v), 4)) for k, v in s.aus.items())
        h.update(json.dumps([aus, _jnum(s.valence), _jnum(s.arousal)]).encode())
    return h.hexdigest()[:16]


def _jnum(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def key_inputs(manifest: Manifest, backend: Any, codebook: Any, map_size: int, image_size: int,
               au_source: str = "codebook") -> dict:
    """Everything the cache content depends on (stored in meta.json, hashed by cache_key).

    ``backend`` may be a class or an instance: only its ``name`` and ``version`` are read,
    so a cache hit never constructs a backend. Image *bytes* are not hashed (reading every
    file would cost as much as a cache miss): replace a dataset's images in place and you
    must delete its cache folder.

    Two inputs appear only where they apply, so the caches of the datasets they do not
    concern keep their keys: ``options`` (the reader options that differ from the
    defaults; most already show in the manifest's rows, this also covers those that do not,
    e.g. the class count) and ``face_crop`` (whole-frame datasets: how the face is cropped,
    :func:`fer_models.data.cache.stages.face_box`). So does ``au_source`` (the training map's
    source, ``DataConfig.au_source``; ``detector:NAME`` adds the detector's name, version and
    weights hash, :func:`~fer_models.data.au_detectors.detector_fingerprint`): a ``codebook``
    cache keeps the key it had before sources existed. ``au_ids`` names the ``aus`` columns:
    every AU the dataset labels (:func:`~fer_models.data.cache.rows.au_columns`); a cache
    written when only the codebooks' AUs were kept has another key, so it is rebuilt, not
    misread (a dataset labelling exactly those AUs, or none, keeps its key).
    """
    from fer_models.data.cache.stages import FACE_BOX_SCALE

    extra: dict[str, Any] = {}
    if manifest.options:
        extra["options"] = {str(k): manifest.options[k] for k in sorted(manifest.options)}
    if manifest.output_classes() != tuple(range(manifest.num_classes)):  # a class subset: labels become outputs
        extra["classes"] = output_names(manifest.output_classes())
    if manifest.frames == "whole":
        extra["face_crop"] = {"box": "landmarks-square", "scale": FACE_BOX_SCALE}
    au_source = au.parse_au_source(au_source)
    if au_source != au.CODEBOOK:
        extra["au_source"] = au_source
        name = au.detector_name(au_source)
        if name is not None:
            from fer_models.data.au_detectors import detector_fingerprint

            extra["au_detector"] = detector_fingerprint(name)
    return {
        "format": CACHE_FORMAT,
        "dataset": manifest.dataset,
        "manifest": manifest.content_hash(),
        "targets": _targets_hash(manifest),
        "backend": str(getattr(backend, "name", type(backend).__name__)),
        "backend_version": str(getattr(backend, "version", "0")),
        "codebook": _codebook_content(codebook),
        # the AU columns of ``aus``: every AU the dataset labels (rows.au_columns)
        "au_ids": [int(a) for a in au_columns(manifest)],
        # the AU location rules are part of the maths of the maps: hash them
        "au_rules": hashlib.sha256(repr(getattr(au, "AU_RULES", None)).encode()).hexdigest()[:16],
        "map_size": int(map_size),
        "image_size": int(image_size),
        **extra,
    }


def hash_inputs(inputs: dict) -> str:
    """The key of :func:`key_inputs`' dict (16 hex digits of its sorted-JSON SHA-256)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cache_key(manifest: Manifest, backend: Any, codebook: Any, map_size: int, image_size: int,
              au_source: str = "codebook") -> str:
    """Content hash of (manifest, backend + version, codebook content, sizes, AU source, CACHE_FORMAT)."""
    return hash_inputs(key_inputs(manifest, backend, codebook, map_size, image_size, au_source))


class CacheTarget(NamedTuple):
    """Where the cache of (manifest, backend, codebook, sizes, AU source) lives: its key and folder.

    ``backend`` is a class (or the instance a caller passed), ``codebook`` a Codebook,
    ``au_source`` the canonical source name (:func:`fer_models.data.au.parse_au_source`).
    """

    manifest: Manifest
    backend: Any
    codebook: Any
    key: str
    dir: Path
    au_source: str = "codebook"


def resolve(manifest: Manifest, backend: Any, codebook: Any, map_size: int, image_size: int,
            cache_root: str | Path | None = None, au_source: str = "codebook") -> CacheTarget:
    """Resolve names (backend, "auto", codebook, AU source) and compute the key and folder.
    Cheap: no image is read and no backend is constructed (a ``detector:NAME`` source hashes
    its weights files, or says in one sentence which are missing)."""
    backend = resolve_backend(backend, manifest)
    codebook = resolve_codebook(codebook)
    au_source = au.parse_au_source(au_source)
    key = cache_key(manifest, backend, codebook, map_size, image_size, au_source)
    return CacheTarget(manifest, backend, codebook, key, cache_path(cache_root, manifest.dataset, key), au_source)


def cache_dir_for(data_cfg: Any, cache_root: str | Path | None = None, manifest=None,
                  backend=None) -> CacheTarget:
    """The :class:`CacheTarget` ``data_cfg`` (a DataConfig) resolves to.

    The orchestrator's Ray pipeline and ``build_loaders`` both use this, so they agree on
    the key. Reads the dataset (cheap: a listing, no image decoding). ``manifest`` /
    ``backend`` (a class) override reading ``data_cfg.dataset`` and looking up
    ``data_cfg.landmarks`` (notebooks, tests with fakes). Unpacks as
    ``manifest, backend, codebook, key, folder, au_source``.
    """
    if manifest is None:
        from fer_models.data.readers import read_dataset

        manifest = read_dataset(data_cfg.dataset, data_cfg.root, val_fraction=data_cfg.val_fraction,
                                seed=data_cfg.split_seed, **data_cfg.options)
    return resolve(manifest, backend if backend is not None else data_cfg.landmarks,
                   data_cfg.codebook, data_cfg.map_size,
                   data_cfg.cache_image_size, cache_root, data_cfg.au_source)
