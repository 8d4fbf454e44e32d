"""The versioned preprocessing cache: stage functions, shard writer, serial path, reader.

DESIGN.md step 2. A manifest goes through two stages, each working on a *batch* of rows
(a dict of numpy arrays, the layout Ray Data hands to ``map_batches`` in "numpy" format):

1. :func:`landmark_stage`: load each image (``images.load_image``), run the landmark
   backend once on the whole batch, crop to the shipped face box when there is one, and
   resize to the stored size ``image_size`` (square) once, so that training never decodes
   a JPEG again. Landmarks are moved into the stored image's pixel coordinates.
2. :func:`au_stage`: the codebook map of each row (``au.expression_au_maps``, paper 002
   Sec. 3.2) and, where ``Sample.aus`` is known (synthetic data), the map of the AUs truly
   active (``au.render_au_maps`` weighted by the AU intensities, as au.py intends for
   ground-truth maps: a faint AU is drawn faint), both rendered over the whole stored image at ``map_size``.

The same two functions run in the Ray Data pipeline (``orchestrator.preprocess``) and in
the serial :func:`prepare` a notebook calls; :class:`CacheWriter` turns their output into
``<cache_root>/<dataset>/<key>/`` = ``<split>-NNNNN/<column>.npy`` shards + ``meta.json`` +
``failures.csv``, written in a temporary folder renamed into place at the end, so a killed
run never leaves a folder that looks complete.

Failures are never dropped silently. An *unreadable* image (missing/corrupt file) has no
pixels: the row is kept out of the shards and listed in ``failures.csv``. A *no-face* row
(the backend returned None) still has a valid image and label, so it is **kept for
classification** with ``au_valid=False`` / ``gt_valid=False`` (the alignment loss and the
localisation metrics skip it), and it is also listed in ``failures.csv`` and counted.

Size: images are stored as uint8, ``image_size**2 * 3`` bytes a row plus two float32
maps (``2 * 4 * map_size**2``). At 64 px / 32 px that is ~20 KB a row; AffectNet
(~290k rows) at 224 px is ~44 GB of shards, so put ``$FER_ORCH_HOME`` on a large disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from fer_models.errors import ConfigError, DatasetError
from fer_models.data.manifest import SPLITS, Manifest, Sample

CACHE_FORMAT = 1  # bump when the shard layout or a stage's maths changes
SHARD_ROWS = 1000
UNREADABLE = "unreadable"
NO_FACE = "no-face"
# Columns of a stored shard (all rows of a split concatenated by load_split).
SHARD_COLUMNS = (
    "row", "path", "image", "label", "identity", "landmarks", "au_map", "au_valid",
    "gt_au_map", "gt_valid", "valence", "arousal", "aus",
)  # fmt: skip


# ----------------------------------------------------------------------------- inputs
def _au():
    from fer_models.data import au

    return au


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
        from fer_models.data import landmarks

        chosen = landmarks.default_backend(manifest)
        if not isinstance(chosen, str):
            return chosen
        name = chosen
    return LANDMARKS.get(name)


def resolve_codebook(name_or_codebook: Any) -> Any:
    if not isinstance(name_or_codebook, str):
        return name_or_codebook
    _au()  # importing au fills CODEBOOKS
    from fer_models.registry import CODEBOOKS

    return CODEBOOKS.get(name_or_codebook)


def _codebook_content(codebook: Any) -> dict[str, Any]:
    per = getattr(codebook, "aus_per_label", {})
    return {
        "name": getattr(codebook, "name", str(codebook)),
        "aus_per_label": {str(k): [int(a) for a in v] for k, v in sorted(per.items())},
    }


def _targets_hash(manifest: Manifest) -> str:
    """Hash of what ``Sample.key()`` leaves out but the cache stores (AUs, valence, arousal)."""
    h = hashlib.sha256()
    for s in manifest.samples:
        aus = None if s.aus is None else sorted((int(k), round(float(v), 4)) for k, v in s.aus.items())
        h.update(json.dumps([aus, _jnum(s.valence), _jnum(s.arousal)]).encode())
    return h.hexdigest()[:16]


def _jnum(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def key_inputs(manifest: Manifest, backend: Any, codebook: Any, map_size: int, image_size: int) -> dict:
    """Everything the cache content depends on (stored in meta.json, hashed by cache_key).

    ``backend`` may be a class or an instance: only its ``name`` and ``version`` are read,
    so a cache hit never constructs a backend. Image *bytes* are not hashed (reading every
    file would cost as much as a cache miss): replace a dataset's images in place and you
    must delete its cache folder.
    """
    au = _au()
    return {
        "format": CACHE_FORMAT,
        "dataset": manifest.dataset,
        "manifest": manifest.content_hash(),
        "targets": _targets_hash(manifest),
        "backend": str(getattr(backend, "name", type(backend).__name__)),
        "backend_version": str(getattr(backend, "version", "0")),
        "codebook": _codebook_content(codebook),
        "au_ids": [int(a) for a in au.AU_IDS],
        # the AU location rules are part of the maths of the maps: hash them
        "au_rules": hashlib.sha256(repr(getattr(au, "AU_RULES", None)).encode()).hexdigest()[:16],
        "map_size": int(map_size),
        "image_size": int(image_size),
    }


def cache_key(manifest: Manifest, backend: Any, codebook: Any, map_size: int, image_size: int) -> str:
    """Content hash of (manifest, backend + version, codebook content, sizes, CACHE_FORMAT)."""
    inputs = key_inputs(manifest, backend, codebook, map_size, image_size)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cache_root: str | Path | None, dataset: str, key: str) -> Path:
    if cache_root is None:
        from fer_models import paths

        cache_root = paths.cache_dir()
    return Path(cache_root) / dataset / key


def cache_dir_for(data_cfg: Any, cache_root: str | Path | None = None, manifest=None, backend=None):
    """(manifest, backend, codebook, key, cache folder) the config resolves to.

    The orchestrator's Ray pipeline and :func:`build_loaders` both use this, so they
    agree on the key. Reads the dataset (cheap: a listing, no image decoding).
    ``manifest`` / ``backend`` (a class) override reading ``data_cfg.dataset`` and
    looking up ``data_cfg.landmarks`` (notebooks, tests with fakes).
    """
    if manifest is None:
        from fer_models.data.readers._base import read_dataset

        manifest = read_dataset(data_cfg.dataset, data_cfg.root,
                                val_fraction=data_cfg.val_fraction, seed=data_cfg.split_seed)
    backend = resolve_backend(backend if backend is not None else data_cfg.landmarks, manifest)
    codebook = resolve_codebook(data_cfg.codebook)
    key = cache_key(manifest, backend, codebook, data_cfg.map_size, data_cfg.image_size)
    return manifest, backend, codebook, key, cache_path(cache_root, manifest.dataset, key)


# ----------------------------------------------------------------------------- rows
def manifest_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One plain dict per sample (numpy + str only), the unit both pipelines stream.

    Absent values are NaN (landmarks, box, valence, arousal, AU intensities), so every
    row has the same columns and a batch stacks into fixed-shape arrays.
    """
    au = _au()
    rows = []
    for i, s in enumerate(manifest.samples):
        lm = np.full((68, 2), np.nan, np.float32)
        if s.landmarks is not None:
            lm[:] = np.asarray(s.landmarks, np.float32).reshape(68, 2)
        box = np.full(4, np.nan, np.float32) if s.box is None else np.asarray(s.box, np.float32)
        aus = au.aus_to_vector(s.aus)  # NaN everywhere when unknown
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
            }
        )
    return rows


def batch_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """List of row dicts -> dict of stacked arrays (what Ray Data's numpy format gives)."""
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def _samples_from_batch(batch: dict[str, np.ndarray]) -> list[Sample]:
    out = []
    au_ids = [int(a) for a in _au().AU_IDS]
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
                aus=None if np.isnan(aus).any() else dict(zip(au_ids, map(float, aus))),
                meta=json.loads(str(batch["meta"][j])),
            )
        )
    return out


# ----------------------------------------------------------------------------- stages
def _crop_resize(img: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    """Crop to ``box`` (x, y, w, h; NaN = whole image), resize to ``size``², one PIL call.

    The region is resized as-is (no aspect-preserving padding): RAF-DB's aligned faces
    and face boxes are square or nearly so, which is what FER pipelines commonly assume.
    """
    from PIL import Image

    h, w = img.shape[:2]
    if np.isnan(box).any():
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    else:
        x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x1, y1 = min(float(w), float(box[0] + box[2])), min(float(h), float(box[1] + box[3]))
        if x1 - x0 < 2 or y1 - y0 < 2:  # a degenerate box: fall back to the whole image
            x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    pil = Image.fromarray(img).resize((size, size), Image.BILINEAR, box=(x0, y0, x1, y1))
    return np.asarray(pil, np.uint8), (x0, y0, x1, y1)


def _to_stored(lm: np.ndarray, region: tuple, size: int) -> np.ndarray:
    """Image-pixel landmarks -> stored-image pixels (pixel centres at integers, as PIL)."""
    x0, y0, x1, y1 = region
    out = np.empty_like(lm, dtype=np.float32)
    out[:, 0] = (lm[:, 0] + 0.5 - x0) * size / (x1 - x0) - 0.5
    out[:, 1] = (lm[:, 1] + 0.5 - y0) * size / (y1 - y0) - 0.5
    return out


def landmark_stage(batch: dict[str, np.ndarray], backend: Any, image_size: int) -> dict[str, np.ndarray]:
    """Load, detect landmarks, crop/resize: adds ``image`` (B,S,S,3) uint8, ``landmarks``
    (B,68,2) float32 in stored-image pixels (NaN on failure), ``status`` ("ok",
    "unreadable", "no-face"), ``t_landmarks`` (seconds per row, for meta.json timings)."""
    from fer_models.data.images import UnreadableImage, load_image

    t0 = time.perf_counter()
    n = len(batch["row"])
    samples = _samples_from_batch(batch)
    images: list[np.ndarray | None] = []
    for s in samples:
        try:
            images.append(load_image(s.path))
        except UnreadableImage:
            images.append(None)
    ok = [j for j in range(n) if images[j] is not None]
    found = backend.detect([images[j] for j in ok], [samples[j] for j in ok]) if ok else []
    if len(found) != len(ok):
        raise RuntimeError(f"landmark backend {getattr(backend, 'name', backend)} returned "
                           f"{len(found)} results for {len(ok)} images")
    out_img = np.zeros((n, image_size, image_size, 3), np.uint8)
    out_lm = np.full((n, 68, 2), np.nan, np.float32)
    status = np.array([UNREADABLE] * n, dtype=object)
    for j, lm in zip(ok, found):
        out_img[j], region = _crop_resize(images[j], batch["box"][j], image_size)
        if lm is None or np.asarray(lm).shape != (68, 2) or not np.isfinite(lm).all():
            status[j] = NO_FACE
        else:
            status[j] = "ok"
            out_lm[j] = _to_stored(np.asarray(lm, np.float32), region, image_size)
    out = dict(batch)
    out.update(image=out_img, landmarks=out_lm, status=status.astype(str))
    out["t_landmarks"] = np.full(n, (time.perf_counter() - t0) / max(n, 1), np.float64)
    return out


def au_stage(batch: dict[str, np.ndarray], codebook: Any, map_size: int) -> dict[str, np.ndarray]:
    """Adds ``au_map``/``au_valid`` (codebook) and ``gt_au_map``/``gt_valid`` (active AUs).

    ``gt_valid`` needs known AU intensities, landmarks, and at least one active AU (a
    neutral face with no active AU has no map to align to, like the codebook's neutral).
    """
    au = _au()
    t0 = time.perf_counter()
    lm = batch["landmarks"].astype(np.float32)
    size = int(batch["image"].shape[1])
    hw = (size, size)
    maps, valid = au.expression_au_maps(lm, batch["label"].astype(np.int64), codebook, hw, map_size)
    maps = np.asarray(maps, np.float32)
    valid = np.asarray(valid, bool) & np.isfinite(lm).all(axis=(1, 2))
    maps[~valid] = 0.0
    aus = batch["aus"].astype(np.float32)
    known = ~np.isnan(aus).any(axis=1)
    weights = np.where(known[:, None], np.clip(np.nan_to_num(aus), 0, None), 0.0).astype(np.float32)
    gt_valid = known & (weights.sum(1) > 0) & np.isfinite(lm).all(axis=(1, 2))
    gt = np.zeros((len(lm), map_size, map_size), np.float32)
    if gt_valid.any():
        gt[gt_valid] = au.render_au_maps(lm[gt_valid], weights[gt_valid], hw, map_size)
    out = dict(batch)
    out.update(au_map=maps, au_valid=valid, gt_au_map=gt, gt_valid=gt_valid)
    out["t_au"] = np.full(len(lm), (time.perf_counter() - t0) / max(len(lm), 1), np.float64)
    return out


# ----------------------------------------------------------------------------- writer
@dataclass
class CacheInfo:
    """What a preprocessing call produced or found (``hit``) and its summary."""

    dir: Path
    key: str
    dataset: str
    hit: bool
    counts: dict[str, int]  # rows stored per split
    failures: dict[str, int]  # reason -> rows
    failure_examples: dict[str, list[str]]
    failures_csv: Path
    reader_skipped: dict[str, int]
    rows_in: int
    build_seconds: float  # time the cache took to build
    seconds: float = 0.0  # time of this call (tiny on a hit)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.build_seconds if self.build_seconds > 0 else float("nan")

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"{self.dataset}: {'cache hit' if self.hit else 'cache built'} at {self.dir}",
            f"  rows in {self.rows_in}; stored {c.get('train', 0)} train / {c.get('val', 0)} val / "
            f"{c.get('test', 0)} test",
        ]
        if self.failures:
            fails = ", ".join(f"{n} {r}" for r, n in sorted(self.failures.items()))
            lines.append(f"  failures: {fails} (every row listed in {self.failures_csv}); "
                         f"'{NO_FACE}' rows are kept for classification without an AU map")
        else:
            lines.append("  failures: none")
        if self.reader_skipped:
            sk = ", ".join(f"{n} {r}" for r, n in sorted(self.reader_skipped.items()))
            lines.append(f"  skipped by the reader before preprocessing: {sk}")
        if self.hit:
            lines.append(f"  nothing recomputed ({self.seconds:.2f} s); built in {self.build_seconds:.1f} s")
        else:
            lines.append(f"  time {self.build_seconds:.1f} s, {self.rows_per_s:.1f} rows/s")
        return "\n".join(lines)


class CacheWriter:
    """Streams stage output into shards in a temporary folder; ``close()`` renames it.

    Rows are written in arrival order; both pipelines deliver manifest order (Ray Data
    with ``preserve_order``), and each shard keeps the global ``row`` index anyway.
    """

    def __init__(self, final_dir: Path, inputs: dict, manifest: Manifest, shard_rows: int | None = None):
        self.final_dir = Path(final_dir)
        self.inputs = inputs
        self.manifest = manifest
        self.shard_rows = int(shard_rows or SHARD_ROWS)
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final_dir.parent / f".{self.final_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.t0 = time.perf_counter()
        self.pending: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        self.pending_n = Counter()
        self.shards: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.counts = Counter()
        self.failures: list[tuple[str, str, str]] = []  # path, split, reason
        self.rows_in = 0
        self.stage_s = Counter()
        self.first_batch_s: float | None = None
        self.first_batch_rows = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        n = len(batch["row"])
        if self.first_batch_s is None:  # start-up latency (Ray: workers starting), for benchmarks
            self.first_batch_s, self.first_batch_rows = time.perf_counter() - self.t0, n
        self.rows_in += n
        self.stage_s["landmarks"] += float(np.sum(batch.get("t_landmarks", 0.0)))
        self.stage_s["au_maps"] += float(np.sum(batch.get("t_au", 0.0)))
        status = np.asarray(batch["status"]).astype(str)
        for j in np.flatnonzero(status != "ok"):
            self.failures.append((str(batch["path"][j]), str(batch["split"][j]), str(status[j])))
        keep = status != UNREADABLE
        splits = np.asarray(batch["split"]).astype(str)
        for split in SPLITS:
            sel = keep & (splits == split)
            if not sel.any():
                continue
            part = {k: np.asarray(batch[k])[sel] for k in SHARD_COLUMNS}
            part["path"] = part["path"].astype(str)
            part["identity"] = part["identity"].astype(str)
            self.pending[split].append(part)
            self.pending_n[split] += int(sel.sum())
            while self.pending_n[split] >= self.shard_rows:
                self._flush(split, self.shard_rows)

    def _flush(self, split: str, n: int | None = None) -> None:
        parts = self.pending[split]
        if not parts:
            return
        cat = {k: np.concatenate([p[k] for p in parts]) for k in SHARD_COLUMNS}
        n = len(cat["row"]) if n is None else n
        head = {k: v[:n] for k, v in cat.items()}
        rest = {k: v[n:] for k, v in cat.items()}
        name = f"{split}-{len(self.shards[split]):05d}"
        (self.tmp / name).mkdir()
        for k, v in head.items():  # one .npy a column: memory-mappable by the dataset
            np.save(self.tmp / name / f"{k}.npy", np.ascontiguousarray(v), allow_pickle=False)
        self.shards[split].append(name)
        self.counts[split] += n
        self.pending[split] = [rest] if len(rest["row"]) else []
        self.pending_n[split] = len(rest["row"])

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def close(self, extra_meta: dict | None = None) -> CacheInfo:
        for split in SPLITS:
            self._flush(split)
        seconds = time.perf_counter() - self.t0
        with open(self.tmp / "failures.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "split", "reason"])
            w.writerows(self.failures)
        fails = Counter(r for _, _, r in self.failures)
        examples: dict[str, list[str]] = {}
        for p, _, r in self.failures:
            if len(examples.setdefault(r, [])) < 5:
                examples[r].append(p)
        m = self.manifest
        meta = {
            "format": CACHE_FORMAT,
            "key": self.final_dir.name,
            "dataset": m.dataset,
            "root": str(m.root),
            "num_classes": int(m.num_classes),
            "inputs": self.inputs,
            "rows_in": self.rows_in,
            "counts": {s: int(self.counts.get(s, 0)) for s in SPLITS},
            "shards": self.shards,
            "failures": dict(sorted(fails.items())),
            "failure_examples": examples,
            "reader_skipped": dict(m.skipped),
            "reader_skipped_examples": {k: list(v) for k, v in m.skipped_examples.items()},
            "timings": {"total_s": round(seconds, 3),
                        "first_batch_s": round(self.first_batch_s or 0.0, 3),
                        "first_batch_rows": self.first_batch_rows,
                        **{f"{k}_s": round(v, 3) for k, v in self.stage_s.items()}},
            "rows_per_s": round(self.rows_in / seconds, 2) if seconds > 0 else None,
            "identities": sorted({s.identity for s in m.samples if s.identity is not None}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_meta or {}),
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        try:
            os.rename(self.tmp, self.final_dir)  # atomic: the folder appears complete or not at all
        except OSError:
            if not (self.final_dir / "meta.json").exists():
                raise
            self.abort()  # another run finished the same cache first: keep theirs
        info = open_cache(self.final_dir)
        info.hit = False
        info.seconds = seconds
        return info


# ----------------------------------------------------------------------------- read
def open_cache(cache_dir: str | Path) -> CacheInfo:
    """Read a finished cache's meta.json (raises DatasetError if it is not a finished cache)."""
    d = Path(cache_dir)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(
            f"{d} is not a finished fer-orch cache (no meta.json); run `fer-orch preprocess` "
            f"for its dataset, or delete the folder"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise DatasetError(
            f"cache {d} has format {meta.get('format')} but this fer-orch reads format "
            f"{CACHE_FORMAT}; delete the folder and preprocess again"
        )
    return CacheInfo(
        dir=d,
        key=meta["key"],
        dataset=meta["dataset"],
        hit=True,
        counts=meta["counts"],
        failures=meta["failures"],
        failure_examples=meta["failure_examples"],
        failures_csv=d / "failures.csv",
        reader_skipped=meta.get("reader_skipped", {}),
        rows_in=meta["rows_in"],
        build_seconds=meta["timings"]["total_s"],
        meta=meta,
    )


def find_cache(cache_root: str | Path | None, dataset: str, key: str) -> CacheInfo | None:
    d = cache_path(cache_root, dataset, key)
    if not (d / "meta.json").is_file():
        return None
    t0 = time.perf_counter()
    info = open_cache(d)
    info.seconds = time.perf_counter() - t0
    return info


def iter_shards(cache_dir: str | Path, split: str, mmap: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Each shard of ``split`` as {column: array}; ``mmap=True`` maps instead of reading."""
    info = open_cache(cache_dir)
    for name in info.meta["shards"].get(split, []):
        d = Path(cache_dir) / name
        yield {k: np.load(d / f"{k}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
               for k in SHARD_COLUMNS}


def load_split(cache_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """All rows of ``split`` as arrays (columns of SHARD_COLUMNS); empty arrays if none."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    parts = list(iter_shards(cache_dir, split))
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------- serial path
def _device_for(backend_cls: Any) -> str:
    if getattr(backend_cls, "uses_gpu", False):
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def instantiate_backend(backend: Any) -> Any:
    """A backend class -> an instance on the GPU when it uses one and one exists."""
    return backend(device=_device_for(backend)) if isinstance(backend, type) else backend


def _batches(rows: list[dict], size: int) -> Iterable[dict[str, np.ndarray]]:
    for i in range(0, len(rows), size):
        yield batch_rows(rows[i : i + size])


def prepare(
    manifest: Manifest,
    backend: Any,
    codebook: Any,
    map_size: int,
    image_size: int,
    cache_root: str | Path | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> CacheInfo:
    """Serial (no Ray) preprocessing into the same cache the Ray pipeline writes.

    ``backend``: LANDMARKS name, "auto", class or instance; ``codebook``: CODEBOOKS name
    or a Codebook. Returns at once on a cache hit without constructing the backend.
    """
    from tqdm.auto import tqdm

    backend = resolve_backend(backend, manifest)
    codebook = resolve_codebook(codebook)
    if not manifest.samples:
        raise DatasetError(f"dataset '{manifest.dataset}' has no readable rows to preprocess; "
                           f"check its root {manifest.root}")
    key = cache_key(manifest, backend, codebook, map_size, image_size)
    found = find_cache(cache_root, manifest.dataset, key)
    if found is not None:
        return found
    inputs = key_inputs(manifest, backend, codebook, map_size, image_size)
    writer = CacheWriter(cache_path(cache_root, manifest.dataset, key), inputs, manifest)
    try:
        inst = instantiate_backend(backend)
        rows = manifest_rows(manifest)
        with tqdm(total=len(rows), desc=f"preprocess {manifest.dataset}", unit="img",
                  disable=not progress) as bar:
            for b in _batches(rows, batch_size):
                out = au_stage(landmark_stage(b, inst, image_size), codebook, map_size)
                writer.add(out)
                bar.update(len(b["row"]))
        return writer.close({"pipeline": "serial"})
    except BaseException:
        writer.abort()
        raise


def write_preview(
    cache_dir: str | Path, split: str = "train", n: int = 8, out: str | Path | None = None
) -> Path:
    """PNG of ``n`` stored faces with their landmarks, codebook map and ground-truth map,
    so a person can check that the maps sit on the face (default ``<cache>/preview.png``)."""
    from fer_models.data.overlay import overlay_grid
    from fer_models.labels import EXPRESSIONS

    d = load_split(cache_dir, split)
    if not d:
        raise DatasetError(f"cache {cache_dir} has no '{split}' rows to preview; pick another split")
    # one face per label first, so every expression's map shows up
    firsts = [int(np.flatnonzero(d["label"] == k)[0]) for k in np.unique(d["label"])]
    order = firsts + [i for i in range(len(d["row"])) if i not in firsts]
    idx = order[:n]
    lms = [lm if np.isfinite(lm).all() else None for lm in d["landmarks"][idx]]
    return overlay_grid(
        d["image"][idx],
        {"codebook AU map": [m if v else None for m, v in zip(d["au_map"][idx], d["au_valid"][idx])],
         "active-AU map": [m if v else None for m, v in zip(d["gt_au_map"][idx], d["gt_valid"][idx])]},
        [EXPRESSIONS[int(k)] for k in d["label"][idx]],
        out or Path(cache_dir) / "preview.png",
        landmarks=lms,
        ncols=2,
    )
