"""Reading a finished cache: :class:`CacheInfo` (meta.json), shards, whole splits."""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fer_models.data.cache.layout import CACHE_FORMAT, NO_FACE, OPTIONAL_COLUMNS, SHARD_COLUMNS, cache_path
from fer_models.data.manifest import ALL, READ_SPLITS, SPLITS
from fer_models.errors import ConfigError, DatasetError


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

    def landmark_failure_rates(self) -> dict[str, float]:
        """Class name -> fraction of its stored rows without landmarks ("no-face"), for the
        summary and MLflow (empty for a cache made before this was recorded)."""
        from fer_models.labels import EXPRESSIONS

        by = self.meta.get("landmark_failures_by_class", {})
        return {EXPRESSIONS[int(k)] if int(k) < len(EXPRESSIONS) else k: float(v["rate"]) for k, v in by.items()}

    @property
    def au_source(self) -> str:
        """The training map's source this cache was built with (``DataConfig.au_source``)."""
        return str(self.meta.get("inputs", {}).get("au_source", "codebook"))

    def au_source_counts(self, split: str = "train") -> dict[str, int]:
        """Rows of ``split`` by where their training map came from (``map``: the source;
        ``fallback``: no AU labels, the codebook map; ``empty``: no active AU, no map). Empty
        for a codebook cache."""
        return dict(self.meta.get("au_source", {}).get("rows", {}).get(split, {}))

    def au_source_rates(self) -> dict[str, float]:
        """MLflow metrics of a non-codebook cache's train split: ``data_au_fallback_rate`` (rows
        without AU labels, trained on the codebook map instead), ``data_au_empty_rate`` (rows
        whose labels show no active AU: no map) and the row counts."""
        c = self.au_source_counts("train")
        n = sum(c.values())
        if not n:
            return {}
        out = {f"data_au_{k}_rate": c.get(k, 0) / n for k in ("fallback", "empty")}
        out.update({f"data_au_{k}_rows": float(c.get(k, 0)) for k in ("map", "fallback", "empty")})
        return out

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
        rates = self.landmark_failure_rates()
        if any(rates.values()):
            lines.append("  landmark failure rate per class: "
                         + ", ".join(f"{k} {100 * v:.1f}%" for k, v in rates.items()))
        if self.meta.get("landmark_fallback_rows"):
            lines.append(f"  {self.meta['landmark_fallback_rows']} face crops needed the whole image as "
                         "their face box to find landmarks")
        for split in ("train", "val", "test"):
            c = self.au_source_counts(split)
            if c:
                lines.append(f"  AU source {self.au_source}, {split}: {c.get('map', 0)} rows with its map, "
                             f"{c.get('fallback', 0)} without AU labels (codebook map instead), "
                             f"{c.get('empty', 0)} without an active AU (no map)")
        if self.reader_skipped:
            sk = ", ".join(f"{n} {r}" for r, n in sorted(self.reader_skipped.items()))
            lines.append(f"  skipped by the reader before preprocessing: {sk}")
        if self.meta.get("reader_landmark_errors"):
            bad = ", ".join(f"{n} {r}" for r, n in sorted(self.meta["reader_landmark_errors"].items()))
            lines.append(f"  shipped landmarks unusable (counted among the '{NO_FACE}' rows): {bad}")
        if self.hit:
            lines.append(f"  nothing recomputed ({self.seconds:.2f} s); built in {self.build_seconds:.1f} s")
        else:
            lines.append(f"  time {self.build_seconds:.1f} s, {self.rows_per_s:.1f} rows/s")
        return "\n".join(lines)


def open_cache(cache_dir: str | Path) -> CacheInfo:
    """Read a finished cache's meta.json (raises DatasetError if it is not a finished cache)."""
    d = Path(cache_dir)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(
            f"{d} is not a finished fer-orch cache (no meta.json); run `fer-orch preprocess` "
            f"for its dataset, or delete the folder"
        )
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"holds a {type(meta).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"cache {d} is damaged (meta.json: {str(e).splitlines()[0]}); delete the folder and run "
                           "again (it is rebuilt)") from None
    if meta.get("format") != CACHE_FORMAT:
        raise DatasetError(
            f"cache {d} has format {meta.get('format')} but this fer-orch reads format "
            f"{CACHE_FORMAT}; delete the folder and preprocess again"
        )
    missing = [k for k in ("key", "dataset", "counts", "failures", "failure_examples", "rows_in", "timings", "shards",
                           "inputs") if k not in meta]
    if missing:
        raise DatasetError(f"cache {d} is damaged (meta.json lacks {', '.join(missing)}); delete the folder and run "
                           "again (it is rebuilt)")
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


def find_at(cache_dir: str | Path) -> CacheInfo | None:
    """The finished cache in ``cache_dir`` (a hit, timed), or None when there is none."""
    d = Path(cache_dir)
    if not (d / "meta.json").is_file():
        return None
    t0 = time.perf_counter()
    info = open_cache(d)
    info.seconds = time.perf_counter() - t0
    return info


def find_cache(cache_root: str | Path | None, dataset: str, key: str) -> CacheInfo | None:
    """The finished cache ``<cache_root>/<dataset>/<key>``, or None."""
    return find_at(cache_path(cache_root, dataset, key))


def iter_shards(cache_dir: str | Path, split: str, mmap: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Each shard of ``split`` as {column: array}; ``mmap=True`` maps instead of reading.
    ``split="all"``: the shards of every split. A column of ``OPTIONAL_COLUMNS`` that a
    cache written before it existed lacks is left out."""
    info = open_cache(cache_dir)
    for part in SPLITS if split == ALL else (split,):
        for name in info.meta["shards"].get(part, []):
            d = Path(cache_dir) / name
            yield {k: _load_column(d / f"{k}.npy", mmap, cache_dir)
                   for k in SHARD_COLUMNS if k not in OPTIONAL_COLUMNS or (d / f"{k}.npy").is_file()}


def _load_column(path: Path, mmap: bool, cache_dir: str | Path) -> np.ndarray:
    """One shard column; a missing, truncated or corrupt file is one sentence naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, OSError) and e.errno not in (None, errno.ENOENT):
            raise  # permissions, a full disk: the machine's state (the CLI says so)
        raise DatasetError(f"cache {cache_dir} is damaged ({path.name} of {path.parent.name}: "
                           f"{str(e).splitlines()[0] or type(e).__name__}); delete the folder and run again "
                           "(it is rebuilt)") from None


def load_split(cache_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """All rows of ``split`` as arrays (columns of SHARD_COLUMNS); empty arrays if none.
    ``split="all"``: every row (analysis-only datasets: DISFA, KDEF for paper 004)."""
    if split not in READ_SPLITS:
        raise ConfigError(f"unknown split '{split}'; use one of {', '.join(READ_SPLITS)}")
    parts = list(iter_shards(cache_dir, split))
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
