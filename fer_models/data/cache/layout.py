"""What a cache folder is, as the writer and the reader both see it.

``<cache_root>/<dataset>/<key>/`` holds ``<split>-NNNNN/<column>.npy`` shards (one file a
column of :data:`SHARD_COLUMNS`, memory-mappable), ``meta.json`` and ``failures.csv``.
"""

from __future__ import annotations

from pathlib import Path

CACHE_FORMAT = 1  # bump when the shard layout or a stage's maths changes
# Row statuses the landmark stage sets (anything but "ok" is listed in failures.csv).
OK = "ok"
UNREADABLE = "unreadable"
NO_FACE = "no-face"
# Columns of a stored shard (all rows of a split concatenated by load_split).
SHARD_COLUMNS = (
    "row", "path", "image", "label", "identity", "landmarks", "au_map", "au_valid",
    "gt_au_map", "gt_valid", "valence", "arousal", "aus", "sequence",
    "src_au_map", "src_valid", "src_origin",
)  # fmt: skip
# The AU source's map (``DataConfig.au_source`` other than "codebook"): float32 (M, M), bool,
# int8 origin (``fer_models.data.au.SRC_ORIGINS``). Written only by such caches.
SOURCE_COLUMNS = ("src_au_map", "src_valid", "src_origin")
# Columns a cache written before they existed lacks (read as absent, the cache stays valid):
# ``sequence`` (int64 index into meta.json's "sequences", -1 none; CK+ sequences), and the
# source columns, which only a cache of another AU source than the codebook has.
OPTIONAL_COLUMNS = ("sequence", *SOURCE_COLUMNS)


def cache_path(cache_root: str | Path | None, dataset: str, key: str) -> Path:
    """``<cache_root>/<dataset>/<key>``; ``cache_root`` None means ``$FER_ORCH_HOME/cache``."""
    if cache_root is None:
        from fer_models import paths

        cache_root = paths.cache_dir()
    return Path(cache_root) / dataset / key
